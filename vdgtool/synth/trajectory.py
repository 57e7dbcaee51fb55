"""Camera trajectories for ``synth-video``: presets, per-step random motion, constant velocity.

A trajectory is an array ``(T, 4, 4)`` of *per-step* rigid transforms: entry 0 is the identity (the
source image is frame 0) and entry ``t`` maps 3-D points in the camera of frame ``t-1`` to the camera
of frame ``t`` (``X_t = R X_{t-1} + t``), the convention of the Depthstillation / monodepth2 code.
The pose of frame ``t`` relative to frame 0 is the product ``M_t @ ... @ M_1``.

Rotations are drawn as an axis-angle vector whose three components each have a magnitude in
``rot_deg`` and a random sign (the reference code calls them Euler angles, but feeds them to an
axis-angle conversion; we do the same so the motion statistics match). Translations: each axis a
magnitude in ``trans`` with a random sign, in units of the (normalised) scene depth.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vdgtool.errors import InputError


@dataclass(frozen=True)
class MotionPreset:
    name: str
    frames: int
    rot_deg: tuple[float, float]      # per-axis |angle| range in degrees, per step
    trans: tuple[float, float]        # per-axis |translation| range, per step
    size: tuple[int, int] | None      # (W, H) output size; None keeps the source size
    focal: float = 0.58               # fx = focal * W, fy = focal * H (Depthstillation's K)
    description: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, MotionPreset] = {
    "mm2024": MotionPreset(
        "mm2024", 16, (1.0, 2.0), (0.01, 0.02), (384, 384),
        description="MM 2024 image-to-video adaptation (CFB): 16 frames, each warped from the previous one, "
                    "rotations 1-2 deg and translations 0.01-0.02 per axis with random signs, 384x384"),
    "depthstillation": MotionPreset(
        "depthstillation", 2, (5.0, 10.0), (0.1, 0.2), None,
        description="Depthstillation (CVPR 2021) ranges: rotations 5-10 deg, translations 0.1-0.2 per axis; "
                    "--frames 2 gives its image pairs"),
}

TRAJECTORIES = ("random", "constant")


def get_preset(name: str) -> MotionPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown motion preset '{name}'", f"use one of: {', '.join(PRESETS)}") from None


def _axis_angle_to_matrix(vec: np.ndarray) -> np.ndarray:
    import cv2

    R, _ = cv2.Rodrigues(np.asarray(vec, dtype=np.float64).reshape(3, 1))
    return R


def _random_step(rng: np.random.Generator, rot_deg, trans) -> np.ndarray:
    signs = rng.choice([-1.0, 1.0], size=6)
    mags = rng.uniform(0.0, 1.0, size=6)
    ang = np.deg2rad(rot_deg[0] + mags[:3] * (rot_deg[1] - rot_deg[0])) * signs[:3]
    t = (trans[0] + mags[3:] * (trans[1] - trans[0])) * signs[3:]
    M = np.eye(4)
    M[:3, :3] = _axis_angle_to_matrix(ang)
    M[:3, 3] = t
    return M


def sample_trajectory(frames: int, rng: np.random.Generator, rot_deg=(1.0, 2.0), trans=(0.01, 0.02),
                      kind: str = "random") -> np.ndarray:
    """Per-step poses ``(frames, 4, 4)`` float32; ``[0]`` is the identity.

    ``kind="random"``: a new random motion every step (the paper); ``"constant"``: one random motion
    repeated every step (constant velocity).
    """
    if frames < 1:
        raise InputError(f"--frames must be at least 1 (got {frames})", "pass --frames 2 or more")
    if kind not in TRAJECTORIES:
        raise InputError(f"unknown trajectory '{kind}'", f"use one of: {', '.join(TRAJECTORIES)}")
    out = np.tile(np.eye(4), (frames, 1, 1))
    step = None
    for t in range(1, frames):
        if step is None or kind == "random":
            step = _random_step(rng, rot_deg, trans)
        out[t] = step
    return out.astype(np.float32)


def cumulative(steps: np.ndarray) -> np.ndarray:
    """Absolute poses (frame 0 -> frame t) from per-step poses."""
    out = np.empty_like(steps)
    acc = np.eye(4, dtype=steps.dtype)
    for t, M in enumerate(steps):
        acc = M @ acc
        out[t] = acc
    return out


def sample_crop_trajectory(frames: int, rng: np.random.Generator, src_hw: tuple[int, int],
                           out_hw: tuple[int, int], pan=(0.01, 0.02), zoom=(0.01, 0.02), start_scale: float = 0.8,
                           kind: str = "random") -> np.ndarray:
    """Crop windows for the 2-D baseline: ``(frames, 4)`` boxes ``x0, y0, x1, y1`` in source pixels.

    The first window covers ``start_scale`` of the image (at the output aspect ratio) around the
    centre; each step pans by ``pan`` of the window size per axis and zooms by ``zoom`` (random
    signs), and the window is kept inside the image.
    """
    if frames < 1:
        raise InputError(f"--frames must be at least 1 (got {frames})", "pass --frames 2 or more")
    H, W = src_hw
    oh, ow = out_hw
    aspect = ow / oh
    bw = min(W, H * aspect) * start_scale
    bh = bw / aspect
    cx, cy = W / 2.0, H / 2.0
    boxes = np.zeros((frames, 4), np.float64)
    step = None
    for t in range(frames):
        if t > 0:
            if step is None or kind == "random":
                s = rng.choice([-1.0, 1.0], size=3)
                m = rng.uniform(0.0, 1.0, size=3)
                dx = (pan[0] + m[0] * (pan[1] - pan[0])) * s[0]
                dy = (pan[0] + m[1] * (pan[1] - pan[0])) * s[1]
                dz = (zoom[0] + m[2] * (zoom[1] - zoom[0])) * s[2]
                step = (dx, dy, dz)
            dx, dy, dz = step
            cx += dx * bw
            cy += dy * bh
            bw *= 1.0 - dz  # zoom in = smaller window
            bh = bw / aspect
        bw = min(bw, W, H * aspect)
        bh = bw / aspect
        cx = float(np.clip(cx, bw / 2, W - bw / 2))
        cy = float(np.clip(cy, bh / 2, H - bh / 2))
        boxes[t] = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
    return boxes


def crop_boxes_to_matrices(boxes: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """``(T, 4, 4)`` matrices mapping output pixel ``(u, v, 0, 1)`` to source pixel ``(x, y, 0, 1)``."""
    oh, ow = out_hw
    T = len(boxes)
    M = np.tile(np.eye(4), (T, 1, 1))
    sx = (boxes[:, 2] - boxes[:, 0]) / ow
    sy = (boxes[:, 3] - boxes[:, 1]) / oh
    # pixel centres: x = x0 + (u + 0.5) * sx - 0.5
    M[:, 0, 0] = sx
    M[:, 1, 1] = sy
    M[:, 0, 3] = boxes[:, 0] + 0.5 * sx - 0.5
    M[:, 1, 3] = boxes[:, 1] + 0.5 * sy - 0.5
    return M.astype(np.float32)


__all__ = ["MotionPreset", "PRESETS", "TRAJECTORIES", "get_preset", "sample_trajectory", "cumulative",
           "sample_crop_trajectory", "crop_boxes_to_matrices"]
