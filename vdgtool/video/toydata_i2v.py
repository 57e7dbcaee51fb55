"""An image-to-video toy (``vdgtool toydata --kind image-to-video``): labelled stills -> unlabelled videos.

A class is a *shape* and a *motion* together (``disc_nod``: a disc that bobs up and down). The two
domains:

* **source** ``images/<class>/<class>_NNN.png``: photo-like still images (smooth random textures, a
  textured object of the class's shape at a random place, size and tilt, sensor noise). A still shows
  the shape and no motion; it is the input of ``vdgtool synth-video``, whose camera motion is the same
  for every class.
* **target** ``target_train/`` (the unlabelled pool of a transductive method) and ``target_test/`` (a
  held-out split): GIFs in another style (smooth saturated shading without grain, a static camera, a
  GIF palette) in which the object performs its class's motion, always fully inside the frame. With
  probability ``1 - bias`` a video is *ambiguous*: the object is a faint blurred blob that keeps only
  a trace of its shape, so mostly its motion tells the class. An RGB model trained on synthetic
  videos of the stills therefore stays well below the ceiling on the target, and a flow model of the
  target motion can do much better: the situation the category-aware flow bank of MM 2024 is built
  for (docs/cfb.md, with measured numbers).

The motions keep the object inside the frame and move it in every frame (``speed`` pixels a
frame; a GIF writer would merge two identical frames): ``shake`` (left-right), ``nod`` (up-down) and
``pulse`` (growing and shrinking by 10 % of the radius a frame) at constant speed with a turn every
6 frames (turns fall on whole frames, so no two consecutive frames match), ``orbit`` (a circle in 13
frames) and ``spin`` (15 degrees a frame); orbit and spin turn either way at random, so a
horizontal flip maps every motion to itself and flip augmentation is safe. A video whose GIF would
still lose a frame is drawn again from its generator.

Every item is drawn from its own generator (seed, split, class, index), so a run with more items per
class contains the smaller run's items unchanged, and a seed reproduces the files byte for byte.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re

import numpy as np

from vdgtool.errors import InputError
from vdgtool.video.toydata import _texture, write_gif

#: class name -> (shape, motion)
I2V_CLASSES: dict[str, tuple[str, str]] = {
    "bar_pulse": ("bar", "pulse"),
    "cross_spin": ("cross", "spin"),
    "disc_nod": ("disc", "nod"),
    "ring_orbit": ("ring", "orbit"),
    "triangle_shake": ("triangle", "shake"),
}
SPLITS = {"images": 0, "target_train": 1, "target_test": 2}
_SS = 4  # supersampling factor of the shape masks (anti-aliased edges, sub-pixel motion)


def shape_mask(shape: str, size: int, cy: float, cx: float, r: float, tilt: float = 0.0) -> np.ndarray:
    """Anti-aliased mask (size, size) float32 in [0, 1] of ``shape`` with centre (cy, cx), radius r."""
    import cv2

    big = np.zeros((size * _SS, size * _SS), np.uint8)
    y, x, rr = (cy + 0.5) * _SS, (cx + 0.5) * _SS, r * _SS
    if shape in ("disc", "ring"):
        cv2.circle(big, (int(round(x)), int(round(y))), int(round(rr)), 255, -1)
        if shape == "ring":
            cv2.circle(big, (int(round(x)), int(round(y))), int(round(rr * 0.55)), 0, -1)
    else:
        if shape == "bar":
            pts = [(-1.0, -0.45), (1.0, -0.45), (1.0, 0.45), (-1.0, 0.45)]
        elif shape == "triangle":
            pts = [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)]
        elif shape == "cross":
            a, b = 0.3, 1.0
            pts = [(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a), (-b, a),
                   (-b, -a), (-a, -a)]
        else:
            raise ValueError(f"unknown shape {shape!r}")
        c, s = math.cos(tilt), math.sin(tilt)
        poly = np.array([[x + rr * (c * px - s * py), y + rr * (s * px + c * py)] for px, py in pts])
        cv2.fillPoly(big, [np.round(poly).astype(np.int32)], 255)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _composite(bg: np.ndarray, obj: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return bg * (1.0 - mask[..., None]) + obj * mask[..., None]


def render_still(rng: np.random.Generator, cls: str, size: int) -> np.ndarray:
    """A photo-like still (H, W, 3) uint8 of class ``cls``: textured object on a textured background."""
    shape = I2V_CLASSES[cls][0]
    bg = _texture(rng, size, size, rng.uniform(0, 360), rng.uniform(0.3, 0.7)) * 0.4 + 75.0
    obj = _texture(rng, size, size, rng.uniform(0, 360), rng.uniform(0.3, 0.8))
    # a clearly brighter or darker object than the mid-grey background (the colour carries no class)
    obj = obj * 0.3 + (175.0 if rng.random() < 0.5 else 0.0)
    r = rng.uniform(0.26, 0.32) * size
    margin = r + 0.08 * size  # inside the 80 % window of synth-video --mode crop2d
    cy, cx = rng.uniform(margin, size - margin, size=2)
    m = shape_mask(shape, size, cy, cx, r, tilt=rng.uniform(-0.25, 0.25))
    img = _composite(bg, obj, m) + rng.normal(0, 5.0, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _triangle(t: np.ndarray, half: int, offset: int) -> np.ndarray:
    """A triangle wave in [-1, 1]: ``half`` frames up, ``half`` frames down, turning on whole frames."""
    u = np.mod(t + offset, 2 * half)
    return (np.where(u <= half, u, 2 * half - u) - half / 2) / (half / 2)


def motion_path(motion: str, frames: int, speed: float, phase: float) -> np.ndarray:
    """Per-frame (dy, dx, radius scale, rotation) of ``motion``, shape (frames, 4).

    ``phase`` in [0, 1) shifts the cycle; orbit and spin turn the other way when ``phase >= 0.5``.
    """
    t = np.arange(frames, dtype=np.float64)
    half = 6
    offset = int(phase * 2 * half)
    out = np.zeros((frames, 4))
    out[:, 2] = 1.0
    turn = 1.0 if phase < 0.5 else -1.0
    if motion == "shake":
        out[:, 1] = speed * half / 2 * _triangle(t, half, offset)
    elif motion == "nod":
        out[:, 0] = speed * half / 2 * _triangle(t, half, offset)
    elif motion == "pulse":
        out[:, 2] = 1.0 + 0.1 * half / 2 * _triangle(t, half, offset)
    elif motion == "orbit":
        a = turn * 2 * np.pi * (t / 13.0 + phase)
        out[:, 0], out[:, 1] = 1.5 * speed * np.sin(a), 1.5 * speed * np.cos(a)
    elif motion == "spin":
        out[:, 3] = turn * np.deg2rad(15.0) * t + 2 * np.pi * phase
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return out


def _smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigma)


def render_video(rng: np.random.Generator, cls: str, size: int, frames: int, speed: float,
                 clear: bool) -> np.ndarray:
    """A clip (T, H, W, 3) uint8 of class ``cls`` in the target style; ``clear=False`` hides the shape.

    Target style: smooth, saturated shading (no grain, no fine texture), a static camera, GIF palette.
    """
    shape, motion = I2V_CLASSES[cls]
    blur = max(1.0, size / 24)
    bg = _smooth(_texture(rng, size, size, rng.uniform(0, 360), rng.uniform(0.6, 0.9)), blur) * 0.4 + 75.0
    obj = _smooth(_texture(rng, size, size, rng.uniform(0, 360), rng.uniform(0.6, 0.9)), blur)
    obj = obj * 0.3 + (175.0 if rng.random() < 0.5 else 0.0)
    r = rng.uniform(0.26, 0.32) * size
    path = motion_path(motion, frames, speed, rng.random())
    tilt = rng.uniform(-0.25, 0.25)
    # a centre that keeps the object inside the frame in every frame (bar corners reach 1.1 r)
    ext = np.abs(path[:, :2]).max(axis=0) + 1.1 * r * path[:, 2].max() + 1.0
    cy, cx = (rng.uniform(e, size - e) if e < size / 2 else size / 2 for e in ext)
    out = np.empty((frames, size, size, 3), np.uint8)
    for k in range(frames):
        dy, dx, scale, angle = path[k]
        m = shape_mask(shape, size, cy + dy, cx + dx, r * scale, tilt + angle)
        o = np.roll(obj, (int(round(dy)), int(round(dx))), axis=(0, 1))  # the object's shading moves with it
        if not clear:  # a faint blurred blob: it moves like its class, but its shape is gone
            m = _smooth(m, 0.5 * r)
            m = 0.8 * m / max(float(m.max()), 1e-6)
        out[k] = np.clip(_composite(bg, o, m), 0, 255).astype(np.uint8)
    return out


def _write_target(path: str, rng, cls: str, size: int, frames: int, speed: float, clear: bool, fps: int) -> None:
    from PIL import Image

    for _ in range(4):
        write_gif(path, render_video(rng, cls, size, frames, speed, clear), fps)
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) == frames:
                return
    raise InputError(f"{path}: the GIF writer merged identical frames in 4 draws",  # pragma: no cover
                     "use another --seed or a larger --size")


def _item_rng(seed: int, split: str, cls_index: int, k: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], cls_index, k]))


def make_i2v_toy(out_dir: str, *, size: int = 32, frames: int = 16, videos_per_class: int = 30,
                 bias: float = 0.7, seed: int = 0, fps: int = 8, speed: int | None = None,
                 overwrite: bool = False) -> dict:
    """Write the image-to-video toy to ``out_dir``; return a summary (classes, domains, counts).

    ``videos_per_class`` stills, pool videos and test videos per class; ``bias`` = probability that a
    target video shows its shape clearly (the rest are ambiguous blobs); ``speed`` pixels per frame
    (default ``max(1, size // 32)``).
    """
    if size % 2 or size < 16:
        raise InputError(f"--size {size} must be even and at least 16", "use e.g. 32")
    if not 0.0 <= bias <= 1.0:
        raise InputError(f"--bias {bias} is outside [0, 1]",
                         "use the probability that a target video shows its shape, e.g. 0.7")
    if frames < 2 or videos_per_class < 1:
        raise InputError("need at least 2 frames and 1 video per class", "raise --frames / --videos-per-class")
    if speed is not None and speed < 1:
        raise InputError(f"--speed {speed} must be at least 1 pixel per frame", "use e.g. 1")
    if os.path.exists(os.path.join(out_dir, "images.csv")) and not overwrite:
        raise InputError(f"{out_dir} already holds a toy dataset", "pass --overwrite or choose another folder")
    speed = speed or max(1, size // 32)
    classes = sorted(I2V_CLASSES)
    summary = {"root": out_dir, "kind": "image-to-video", "classes": classes,
               "class_cues": {c: {"shape": s, "motion": m} for c, (s, m) in I2V_CLASSES.items()},
               "domains": {}, "bias": bias, "seed": seed, "speed": speed, "frames": frames, "size": size}
    cues: dict[str, bool] = {}  # target video path -> shape shown clearly (diagnostics only)
    for split, ext in (("images", "png"), ("target_train", "gif"), ("target_test", "gif")):
        rows, clear_count = [], 0
        for ci, c in enumerate(classes):
            cdir = os.path.join(out_dir, split, c)
            os.makedirs(cdir, exist_ok=True)
            if overwrite:  # files of an earlier, larger run would otherwise stay in the class folders
                for name in os.listdir(cdir):
                    if re.fullmatch(rf"{c}_\d{{3,}}\.{ext}", name):
                        os.remove(os.path.join(cdir, name))
            for k in range(videos_per_class):
                rng = _item_rng(seed, split, ci, k)
                rel = f"{split}/{c}/{c}_{k:03d}.{ext}"
                if split == "images":
                    from PIL import Image

                    Image.fromarray(render_still(rng, c, size)).save(os.path.join(out_dir, rel))
                else:
                    clear = bool(rng.random() < bias)
                    clear_count += clear
                    cues[rel] = clear
                    _write_target(os.path.join(out_dir, rel), rng, c, size, frames, speed, clear, fps)
                rows.append((rel, c, "source" if split == "images" else "target"))
        manifest = os.path.join(out_dir, f"{split}.csv")
        with open(manifest, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "domain"])
            w.writerows(rows)
        summary["domains"][split] = {"videos": len(rows), "format": ext, "manifest": manifest}
        if split != "images":
            summary["domains"][split]["clear"] = clear_count
    summary["cues"] = os.path.join(out_dir, "toy.json")
    with open(summary["cues"], "w") as f:
        json.dump({**{k: v for k, v in summary.items() if k != "cues"}, "clear": cues}, f, indent=1, sort_keys=True)
    return summary
