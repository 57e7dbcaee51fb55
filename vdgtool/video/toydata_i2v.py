"""An image-to-video toy (``vdgtool toydata --kind image-to-video``): labelled stills -> unlabelled videos.

A class is a *shape* and a *motion* together (``disc_rise``: a disc that moves up). The two domains:

* **source** ``images/<class>/<class>_NNN.png``: photo-like still images (smooth random textures, a
  textured object of the class's shape at a random place, size and tilt, sensor noise). A still shows
  the shape and no motion; it is the input of ``vdgtool synth-video``, whose camera motion is the same
  for every class.
* **target** ``target_train/`` (the unlabelled pool of a transductive method) and ``target_test/`` (a
  held-out split): cartoon-style GIFs (flat colours, a dark outline, a static camera) in which the
  object performs its class's motion. With probability ``1 - bias`` a video is *ambiguous*: the object
  is a low-contrast, heavily blurred blob whose shape cannot be read, so only its motion tells the
  class. An RGB model trained on synthetic videos of the stills therefore reaches at most about
  ``bias + (1 - bias) / C`` on the target, and a flow model of the target motion can do much better:
  the situation the category-aware flow bank of MM 2024 is built for (docs/cfb.md).

The motions (``speed`` pixels per frame; periodic or stationary, so every window of a video looks
alike and no pace up to 5 aliases a motion to stillness): ``rise`` / ``fall`` (vertical translation,
wrapping around), ``shake`` (horizontal sine, period 7 frames), ``pulse`` (radius sine, period 9
frames), ``orbit`` (a circle in 11 frames, either direction). A horizontal flip maps each motion to
itself, so flip augmentation is safe. No class is static: a GIF writer merges identical frames.

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
from vdgtool.video.toydata import _hsv_to_rgb, _texture, write_gif

#: class name -> (shape, motion)
I2V_CLASSES: dict[str, tuple[str, str]] = {
    "cross_pulse": ("cross", "pulse"),
    "disc_rise": ("disc", "rise"),
    "ring_orbit": ("ring", "orbit"),
    "bar_fall": ("bar", "fall"),
    "triangle_shake": ("triangle", "shake"),
}
SPLITS = {"images": 0, "target_train": 1, "target_test": 2}
_SS = 4  # supersampling factor of the shape masks (anti-aliased edges, sub-pixel motion)


def shape_mask(shape: str, size: int, cy: float, cx: float, r: float, tilt: float = 0.0) -> np.ndarray:
    """Anti-aliased mask (size, size) float32 in [0, 1] of ``shape`` with centre (cy, cx), radius r.

    The shape is drawn again one frame height above and below, so vertical motion wraps around.
    """
    import cv2

    big = np.zeros((size * _SS, size * _SS), np.uint8)
    for dy in (-size, 0, size):
        y, x, rr = (cy + dy + 0.5) * _SS, (cx + 0.5) * _SS, r * _SS
        if shape in ("disc", "ring"):
            cv2.circle(big, (int(round(x)), int(round(y))), int(round(rr)), 255, -1)
            if shape == "ring":
                cv2.circle(big, (int(round(x)), int(round(y))), int(round(rr * 0.55)), 0, -1)
            continue
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
    r = rng.uniform(0.24, 0.3) * size
    margin = r + 0.08 * size  # inside the 80 % window of synth-video --mode crop2d
    cy, cx = rng.uniform(margin, size - margin, size=2)
    m = shape_mask(shape, size, cy, cx, r, tilt=rng.uniform(-0.25, 0.25))
    img = _composite(bg, obj, m) + rng.normal(0, 5.0, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def motion_path(motion: str, frames: int, size: int, speed: float, phase: float) -> tuple[np.ndarray, ...]:
    """Per-frame (dy, dx, radius scale) of ``motion``; ``phase`` in [0, 1) shifts periodic motions."""
    t = np.arange(frames, dtype=np.float64)
    zero, one = np.zeros(frames), np.ones(frames)
    if motion == "rise":
        return -speed * t, zero, one
    if motion == "fall":
        return speed * t, zero, one
    if motion == "shake":
        return zero, 2.0 * speed * np.sin(2 * np.pi * (t / 7.0 + phase)), one
    if motion == "pulse":
        return zero, zero, 1.0 + 0.35 * np.sin(2 * np.pi * (t / 9.0 + phase))
    if motion == "orbit":  # a circle of radius 1.5 speed in 11 frames, clockwise or not (phase >= 0.5)
        a = 2 * np.pi * (t / 11.0) * (1 if phase < 0.5 else -1) + 4 * np.pi * phase
        return 1.5 * speed * np.sin(a), 1.5 * speed * np.cos(a), one
    raise ValueError(f"unknown motion {motion!r}")


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
    r = rng.uniform(0.22, 0.28) * size
    cy, cx = rng.uniform(0, size), rng.uniform(r + 2 * speed, size - r - 2 * speed)  # shake/orbit fit in x
    if motion == "pulse":
        cy = rng.uniform(1.35 * r, size - 1.35 * r)
    elif motion not in ("rise", "fall"):
        cy = rng.uniform(r, size - r)
    dy, dx, scale = motion_path(motion, frames, size, speed, rng.random())
    tilt = rng.uniform(-0.25, 0.25)
    out = np.empty((frames, size, size, 3), np.uint8)
    for k in range(frames):
        m = shape_mask(shape, size, (cy + dy[k]) % size, cx + dx[k], r * scale[k], tilt)
        o = np.roll(obj, (int(round(dy[k])), int(round(dx[k]))), axis=(0, 1))  # the object's shading moves with it
        if not clear:  # a faint blurred blob: it moves like its class, but its shape is gone
            m = _smooth(m, 0.5 * r)
            m = 0.8 * m / max(float(m.max()), 1e-6)
        out[k] = np.clip(_composite(bg, o, m), 0, 255).astype(np.uint8)
    return out


def _item_rng(seed: int, split: str, cls_index: int, k: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS[split], cls_index, k]))


def make_i2v_toy(out_dir: str, *, size: int = 32, frames: int = 16, videos_per_class: int = 30,
                 bias: float = 0.7, seed: int = 0, fps: int = 8, speed: int | None = None,
                 overwrite: bool = False) -> dict:
    """Write the image-to-video toy to ``out_dir``; return a summary (classes, domains, counts).

    ``videos_per_class`` stills, pool videos and test videos per class; ``bias`` = probability that a
    target video shows its shape clearly (the rest are ambiguous blobs); ``speed`` pixels per frame
    (default ``max(1, size // 16)``, as the motion toy).
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
    speed = speed or max(1, size // 16)
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
                    write_gif(os.path.join(out_dir, rel), render_video(rng, c, size, frames, speed, clear), fps)
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
