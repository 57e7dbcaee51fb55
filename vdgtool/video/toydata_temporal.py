"""A toy with temporal domain shift (``vdgtool toydata --kind temporal``), for APN-style experiments.

Each clip shows two *sub-motions* one after the other: a shape of its own colour crossing the frame in
its own direction (a red circle moves right, a green square down, a blue triangle left, a yellow cross
up), so a single frame names the sub-motion it shows and the task is about their order and timing. A class is an ordered pair of sub-motions,
and both orders of every pair are classes (``circle_then_square`` and ``square_then_circle``...). A clip
and the clip of the reversed class rendered from the same seed hold exactly the same frames in another
order, so a bag of frames (TSN) can at best name the pair, not the class: its ceiling is 50 %.

Domains (the class grammar is the same everywhere; only *when* things happen, and the look, change):

* ``source``: the canonical layout, textured "real" style with camera shake and sensor noise. Sub-motion 1 starts at about
  5 % of the clip, each sub-motion lasts 35 % of it, a blank tail follows.
* ``control``: the canonical layout in a flat cartoon style (flat colours, dark outlines, a still
  camera): the no-shift control, which measures the style shift alone.
* ``onset`` (cartoon style): the same pair starts 25 % of the clip later (onset shift).
* ``tempo`` (cartoon style): both sub-motions play twice as fast (half the frames, twice the speed),
  from the canonical onset.
* ``absence`` (cartoon style): one of the two sub-motions (at random) is missing; the class is still
  named by the other one and its position.

Splits: ``source_train`` and ``source_val`` (model selection), and for every target a ``val`` split
(for ``--select oracle``, as the released APN code selects) and a ``test`` split. Each is a CSV
manifest ``OUT/<domain>_<split>.csv`` (``path,label,domain``) over ``OUT/<domain>/<split>/<class>/``
(H.264 mp4 clips).
Every clip has its own seed derived from ``(seed, domain, split, class, index)``, so the data are
deterministic per seed and a clip does not change when another split grows.
"""

from __future__ import annotations

import csv
import math
import os
import shutil

import numpy as np

from vdgtool.errors import InputError
from vdgtool.video.toydata import _hsv_to_rgb, _texture, write_mp4

#: sub-motion -> direction of travel (dy, dx)
SUBMOTIONS = {"circle": (0, 1), "square": (1, 0), "triangle": (0, -1), "cross": (-1, 0)}
#: sub-motion -> hue of its object (degrees); backgrounds are pale, of a random hue
HUES = {"circle": 0.0, "square": 120.0, "triangle": 230.0, "cross": 55.0}
#: the unordered pairs; each gives two classes (both orders)
PAIRS = (("circle", "square"), ("triangle", "cross"))
CLASSES = sorted(f"{a}_then_{b}" for p in PAIRS for a, b in (p, p[::-1]))
#: domain -> (layout, style, file format); the first is the source
#: (every domain is H.264 mp4: a GIF writer merges identical consecutive frames, e.g. blank ones, into
#: one longer frame, which would change the timing for any reader that does not resample by timestamps)
DOMAINS = {"source": ("canonical", "real", "mp4"), "control": ("canonical", "animated", "mp4"),
           "onset": ("onset", "animated", "mp4"), "tempo": ("tempo", "animated", "mp4"),
           "absence": ("absence", "animated", "mp4")}
SPLITS = {"source": ("train", "val"), "control": ("val", "test"), "onset": ("val", "test"),
          "tempo": ("val", "test"), "absence": ("val", "test")}
LAYOUTS = ("canonical", "onset", "tempo", "absence")


def parse_class(cls: str) -> tuple[str, str]:
    a, _, b = cls.partition("_then_")
    if a not in SUBMOTIONS or b not in SUBMOTIONS:
        raise InputError(f"unknown temporal toy class {cls!r}", f"use one of {', '.join(CLASSES)}")
    return a, b


def slot_layout(layout: str, frames: int, jitter: int = 0, drop: int = 0) -> dict:
    """Frame slots of a clip: ``{"slots": [(start, length) or None, (start, length) or None], "tempo": r}``.

    ``jitter`` (0 or 1) delays everything by that many frames; ``drop`` (0 or 1) is the sub-motion the
    ``absence`` layout leaves out. Both slots always have the same length, so reversed classes hold the
    same frames.
    """
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}", f"use one of {', '.join(LAYOUTS)}")
    s0 = max(1, int(round(0.05 * frames)))
    length = int(math.floor(0.35 * frames))
    start = s0 + int(jitter)
    tempo = 1
    if layout == "onset":
        start = frames - 2 * length - s0 + int(jitter)  # about 0.25 T later; still inside the clip
    elif layout == "tempo":
        tempo, length = 2, max(1, length // 2)
    slots: list = [(start, length), (start + length, length)]
    if layout == "absence":
        slots[int(drop)] = None
    return {"slots": slots, "tempo": tempo}


def _shape_mask(shape: str, size: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    c = size // 2
    dy, dx = yy - c, xx - c
    if shape == "circle":
        return dy * dy + dx * dx <= r * r
    if shape == "square":
        return (np.abs(dy) <= r * 0.8) & (np.abs(dx) <= r * 0.8)
    if shape == "triangle":  # apex up
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.55)
    w = max(1, r // 3)  # cross (plus sign)
    return ((np.abs(dy) <= w) & (np.abs(dx) <= r)) | ((np.abs(dx) <= w) & (np.abs(dy) <= r))


class _Style:
    """Per-clip appearance: background, object textures or colours, camera noise (style ``real``)."""

    def __init__(self, rng: np.random.Generator, style: str, size: int):
        self.style, self.size = style, size
        bg_hue = rng.uniform(0, 360)
        if style == "real":
            self.bg = _texture(rng, size, size, bg_hue, 0.2)
            self.obj = {n: _texture(rng, size, size, h, 0.85) for n, h in HUES.items()}
        else:
            self.bg = np.broadcast_to(_hsv_to_rgb(bg_hue, 0.3, 0.95), (size, size, 3)).astype(np.float32)
            self.obj = {n: np.broadcast_to(_hsv_to_rgb(h, 0.9, 0.85), (size, size, 3)).astype(np.float32)
                        for n, h in HUES.items()}

    def frame(self, rng: np.random.Generator, name: str | None, mask: np.ndarray | None,
              edge: np.ndarray | None) -> np.ndarray:
        out = self.bg.copy()
        if mask is not None:
            out[mask] = self.obj[name][mask]
            if edge is not None:
                out[edge] = 20.0
        if self.style == "real":
            out = np.roll(out, tuple(rng.integers(-1, 2, size=2)), axis=(0, 1))  # hand-held camera shake
            out = out + rng.normal(0, 4.0, out.shape)
        return np.clip(out, 0, 255).astype(np.uint8)


def render_clip(seed, cls: str, layout: str, style: str, size: int, frames: int, speed: int) -> np.ndarray:
    """One clip ``(T, H, W, 3)`` uint8. ``seed`` is anything ``np.random.default_rng`` takes.

    Every sub-motion, and the blank frames, are drawn from their own streams keyed by the sub-motion's
    name, so the clip of the reversed class from the same seed holds the same frames in another order.
    """
    import cv2

    a, b = parse_class(cls)
    base = [int(v) for v in seed] if isinstance(seed, (list, tuple)) else [int(seed)]
    clip_rng = np.random.default_rng([*base, 0])
    jitter, drop = (int(v) for v in clip_rng.integers(0, 2, size=2))
    lay = slot_layout(layout, frames, jitter, drop)
    style_obj = _Style(clip_rng, style, size)
    r = max(3, size // 6)
    blocks = {}
    for name in sorted({a, b}):  # canonical order: independent of the class's order
        key = list(SUBMOTIONS).index(name)
        brng = np.random.default_rng([*base, 1, key])
        mask0 = _shape_mask(name, size, r)
        edge0 = None
        if style == "animated":
            edge0 = cv2.dilate(mask0.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~mask0
        start = brng.integers(0, size, size=2)
        dy, dx = SUBMOTIONS[name]
        length = lay["slots"][0][1] if lay["slots"][0] else lay["slots"][1][1]
        step = speed * lay["tempo"]
        seq = []
        for t in range(length):
            shift = (int(start[0] + t * step * dy), int(start[1] + t * step * dx))
            m = np.roll(mask0, shift, axis=(0, 1))
            e = np.roll(edge0, shift, axis=(0, 1)) if edge0 is not None else None
            seq.append(style_obj.frame(brng, name, m, e))
        blocks[name] = seq
    occupied = np.zeros(frames, bool)
    for slot in lay["slots"]:
        if slot is not None:
            occupied[slot[0]:slot[0] + slot[1]] = True
    blank_rng = np.random.default_rng([*base, 2])
    blanks = [style_obj.frame(blank_rng, None, None, None) for _ in range(int((~occupied).sum()))]
    out = np.empty((frames, size, size, 3), np.uint8)
    k = 0
    for t in range(frames):
        if not occupied[t]:
            out[t] = blanks[k]
            k += 1
    for name, slot in zip((a, b), lay["slots"]):
        if slot is not None:
            out[slot[0]:slot[0] + slot[1]] = np.stack(blocks[name])
    return out


def _clip_seed(seed: int, domain: str, split: str, cls: str, index: int) -> list[int]:
    return [int(seed), list(DOMAINS).index(domain), SPLITS[domain].index(split), CLASSES.index(cls), int(index)]


def split_sizes(videos_per_class: int) -> dict[str, int]:
    """Clips per class of each split: source train = ``videos_per_class``; source val and every
    target val = a quarter of it; every target test = half of it (at least 2 each)."""
    q = max(2, videos_per_class // 4)
    return {"train": videos_per_class, "val": q, "test": max(2, videos_per_class // 2)}


def make_temporal_toy(out_dir: str, *, size: int = 64, frames: int = 16, videos_per_class: int = 32, seed: int = 0,
                      fps: int = 8, speed: int | None = None, overwrite: bool = False) -> dict:
    """Write the temporal-shift toy to ``out_dir``; return a summary (domains, splits, manifests, layouts)."""
    if size % 2 or size < 16:
        raise InputError(f"--size {size} must be even and at least 16", "use e.g. 32 or 64")
    if frames < 10:
        raise InputError(f"--frames {frames} is too short for two sub-motions and a temporal shift",
                         "use at least 10 frames (default 16)")
    if videos_per_class < 1:
        raise InputError("need at least 1 video per class", "raise --videos-per-class")
    if fps < 1 or (speed is not None and speed < 1):
        raise InputError(f"--fps {fps} and --speed {speed} must be at least 1", "use e.g. --fps 8")
    names = [f"{d}_{s}" for d in DOMAINS for s in SPLITS[d]]
    if any(os.path.exists(os.path.join(out_dir, f"{n}.csv")) for n in names) and not overwrite:
        raise InputError(f"{out_dir} already holds a temporal toy dataset", "pass --overwrite or choose another folder")
    speed = speed or max(1, size // 16)
    counts = split_sizes(videos_per_class)
    summary = {"root": out_dir, "kind": "temporal", "classes": CLASSES, "seed": seed, "frames": frames,
               "size": size, "domains": {}, "layouts": {}}
    manifests = {}
    for domain, (layout, style, ext) in DOMAINS.items():
        summary["layouts"][domain] = {"layout": layout, "style": style, **slot_layout(layout, frames)}
        if overwrite and os.path.isdir(os.path.join(out_dir, domain)):
            shutil.rmtree(os.path.join(out_dir, domain))  # clips of an earlier, larger run must not linger
        for split in SPLITS[domain]:
            rows = []
            for c in CLASSES:
                cdir = os.path.join(out_dir, domain, split, c)
                os.makedirs(cdir, exist_ok=True)
                for v in range(counts[split]):
                    clip = render_clip(_clip_seed(seed, domain, split, c, v), c, layout, style, size, frames, speed)
                    rel = f"{domain}/{split}/{c}/{c}_{v:03d}.{ext}"
                    write_mp4(os.path.join(out_dir, rel), clip, fps)
                    rows.append((rel, c, domain))
            manifest = os.path.join(out_dir, f"{domain}_{split}.csv")
            manifests[manifest] = rows
            summary["domains"][f"{domain}_{split}"] = {"videos": len(rows), "manifest": manifest, "format": ext}
    # the manifests mark a finished dataset: written last, so a failed run never blocks a re-run
    for manifest, rows in manifests.items():
        with open(manifest + ".partial", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "domain"])
            w.writerows(rows)
        os.replace(manifest + ".partial", manifest)
    return summary
