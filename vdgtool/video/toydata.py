"""A small built-in two-domain action dataset (``vdgtool toydata``).

* ``real``: H.264 mp4 clips with textured, photo-like frames (smooth random textures, sensor noise).
* ``animated``: GIFs with flat cartoon colours and outlines.

The action (class) is the motion direction of a textured object; a single frame carries no motion
information. In the real domain the background hue equals the class's hue with probability ``bias``
(a spatial shortcut, like scene bias in Kinetics); the animated domain has no such cue, so a model
that learnt the shortcut drops there. Everything is deterministic for a seed.
"""

from __future__ import annotations

import csv
import os
import re

import numpy as np

from vdgtool.errors import InputError

DIRECTIONS = {"move_down": (1, 0), "move_left": (0, -1), "move_right": (0, 1), "move_up": (-1, 0)}


def _hsv_to_rgb(h, s, v):
    import cv2

    hsv = np.stack(np.broadcast_arrays(np.asarray(h, np.float32), np.asarray(s, np.float32),
                                       np.asarray(v, np.float32)), -1)
    shape = hsv.shape
    rgb = cv2.cvtColor(hsv.reshape(-1, 1, 3).astype(np.float32), cv2.COLOR_HSV2RGB)  # H in degrees, S,V in [0,1]
    return np.clip(rgb.reshape(shape) * 255.0, 0, 255)


def _texture(rng, h, w, hue, sat):
    import cv2

    coarse = cv2.resize(rng.random((max(2, h // 8), max(2, w // 8))).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.random((max(2, h // 2), max(2, w // 2))).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_LINEAR)
    lum = np.clip(0.35 + 0.4 * coarse + 0.25 * fine, 0, 1)
    hue_map = (hue + 12.0 * (coarse - 0.5)) % 360.0
    return _hsv_to_rgb(hue_map, np.full((h, w), sat, np.float32), lum)


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r


def render_clip(rng, cls: str, domain: str, size: int, frames: int, bg_hue: float, speed: int) -> np.ndarray:
    """One clip (T, H, W, 3) uint8 of class ``cls`` in ``domain`` with background hue ``bg_hue`` (degrees)."""
    import cv2

    h = w = size
    dy, dx = DIRECTIONS[cls]
    r = max(3, size // 6)
    cy, cx = size // 2, size // 2
    mask0 = _disc(h, w, cy, cx, r)
    obj_hue = rng.uniform(0, 360)
    start = rng.integers(0, size, size=2)
    if domain == "real":
        bg = _texture(rng, h, w, bg_hue, 0.55)
        obj = _texture(rng, h, w, obj_hue, 0.3)
        # a clearly brighter or darker textured object: the motion must be visible, not the colour
        obj = obj * 0.35 + (160.0 if rng.random() < 0.5 else 0.0)
        jitter = rng.integers(-1, 2, size=(frames, 2))  # hand-held camera shake
    else:
        bg = np.broadcast_to(_hsv_to_rgb(bg_hue, 0.75, 0.95), (h, w, 3)).astype(np.float32)
        obj = np.broadcast_to(_hsv_to_rgb(obj_hue, 0.9, 0.85), (h, w, 3)).astype(np.float32)
        jitter = np.zeros((frames, 2), int)
        edge = cv2.dilate(mask0.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~mask0
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        sy = int(start[0] + t * speed * dy)
        sx = int(start[1] + t * speed * dx)
        m = np.roll(mask0, (sy, sx), axis=(0, 1))
        frame = bg.copy()
        if domain == "real":
            o = np.roll(obj, (sy, sx), axis=(0, 1))
            frame[m] = o[m]
            frame = np.roll(frame, tuple(jitter[t]), axis=(0, 1))
            frame = frame + rng.normal(0, 4.0, frame.shape)
        else:
            frame[m] = obj[m]
            frame[np.roll(edge, (sy, sx), axis=(0, 1))] = 20.0
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def write_mp4(path: str, frames: np.ndarray, fps: int) -> None:
    import av

    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=int(fps))
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = "yuv420p"
        # one encoder thread: x264's multi-threaded output depends on timing, and the dataset must be
        # byte-for-byte reproducible for a seed
        s.options = {"crf": "12", "preset": "veryfast", "threads": "1"}
        for fr in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(fr, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def write_gif(path: str, frames: np.ndarray, fps: int) -> None:
    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(round(1000 / fps)), loop=0,
                 optimize=False, disposal=1)


def make_toy_dataset(out_dir: str, *, size: int = 64, frames: int = 16, videos_per_class: int = 32,
                     bias: float = 0.7, seed: int = 0, fps: int = 8, speed: int | None = None,
                     overwrite: bool = False) -> dict:
    """Write the dataset to ``out_dir`` and return a summary (paths, counts)."""
    if size % 2 or size < 16:
        raise InputError(f"--size {size} must be even and at least 16", "use e.g. 64")
    if not 0.0 <= bias <= 1.0:
        raise InputError(f"--bias {bias} is outside [0, 1]", "use a probability, e.g. 0.7")
    if frames < 2 or videos_per_class < 1:
        raise InputError("need at least 2 frames and 1 video per class", "raise --frames / --videos-per-class")
    if fps < 1 or (speed is not None and speed < 1):
        raise InputError(f"--fps {fps} and --speed {speed} must be at least 1", "use e.g. --fps 8")
    if any(os.path.exists(os.path.join(out_dir, f"{d}.csv")) for d in ("real", "animated")) and not overwrite:
        raise InputError(f"{out_dir} already holds a toy dataset", "pass --overwrite or choose another folder")
    speed = speed or max(1, size // 16)
    classes = sorted(DIRECTIONS)
    hues = {c: 360.0 * k / len(classes) + 15.0 for k, c in enumerate(classes)}
    rng = np.random.default_rng(seed)
    summary = {"root": out_dir, "classes": classes, "domains": {}, "bias": bias, "seed": seed}
    manifests = {}
    for domain, ext in (("real", "mp4"), ("animated", "gif")):
        rows = []
        for c in classes:
            os.makedirs(os.path.join(out_dir, domain, c), exist_ok=True)
            if overwrite:  # clips of an earlier, larger run would otherwise stay in the class folders
                for name in os.listdir(os.path.join(out_dir, domain, c)):
                    if re.fullmatch(rf"{c}_\d{{3}}\.{ext}", name):
                        os.remove(os.path.join(out_dir, domain, c, name))
            for v in range(videos_per_class):
                vrng = np.random.default_rng(rng.integers(2**63))
                if domain == "real" and vrng.random() < bias:
                    bg_hue = hues[c] + vrng.uniform(-8, 8)
                else:
                    others = [hues[o] for o in classes if o != c] if domain == "real" else list(hues.values())
                    bg_hue = others[vrng.integers(len(others))] + vrng.uniform(-8, 8)
                clip = render_clip(vrng, c, domain, size, frames, bg_hue, speed)
                rel = f"{domain}/{c}/{c}_{v:03d}.{ext}"
                (write_mp4 if ext == "mp4" else write_gif)(os.path.join(out_dir, rel), clip, fps)
                rows.append((rel, c, domain))
        manifests[domain] = rows
        summary["domains"][domain] = {"videos": len(rows), "manifest": os.path.join(out_dir, f"{domain}.csv"),
                                      "format": ext}
    # the manifests mark a finished dataset: written last, so a failed run never blocks a re-run
    for domain, rows in manifests.items():
        tmp = os.path.join(out_dir, f"{domain}.csv.partial")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "domain"])
            w.writerows(rows)
        os.replace(tmp, os.path.join(out_dir, f"{domain}.csv"))
    return summary
