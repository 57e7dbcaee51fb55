"""Middlebury ``.flo`` files and flow accuracy measures.

A ``.flo`` file is: the float32 tag 202021.25 ("PIEH" in ASCII), int32 width, int32 height, then
height x width x 2 little-endian float32 values, u and v interleaved per pixel (row-major).
Arrays here are (H, W, 2) with ``[..., 0]`` = u (horizontal) and ``[..., 1]`` = v (vertical).
"""

from __future__ import annotations

import os

import numpy as np

from vdgtool.errors import InputError

FLO_TAG = 202021.25
FLO_MAGIC = b"PIEH"
#: Middlebury marks unknown flow with values above this.
UNKNOWN_FLOW = 1e9


def read_flo(path: str) -> np.ndarray:
    """Read a Middlebury ``.flo`` file into a float32 (H, W, 2) array (u, v)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise InputError(f"cannot read flow file {path} ({exc.strerror or exc})", "check the path") from None
    if len(data) < 12 or data[:4] != FLO_MAGIC:
        raise InputError(f"{path} is not a Middlebury .flo file (bad magic number)",
                         "pass a .flo file written by a flow tool")
    w, h = (int(x) for x in np.frombuffer(data, "<i4", count=2, offset=4))
    if w <= 0 or h <= 0 or w * h > 1 << 30:
        raise InputError(f"{path} declares an invalid size {w}x{h}", "the file is damaged")
    need = 12 + w * h * 2 * 4
    if len(data) < need:
        raise InputError(f"{path} is truncated ({len(data)} bytes, {need} expected for {w}x{h})",
                         "the file is damaged; re-create it")
    return np.frombuffer(data, "<f4", count=w * h * 2, offset=12).reshape(h, w, 2).astype(np.float32)


def write_flo(path: str, flow: np.ndarray) -> str:
    """Write a (H, W, 2) flow array (u, v) as a Middlebury ``.flo`` file."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise InputError(f"a .flo file holds a (H, W, 2) flow, got shape {flow.shape}", "pass one flow field")
    h, w = flow.shape[:2]
    path = os.fspath(path)
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        f.write(FLO_MAGIC)
        f.write(np.asarray([w, h], dtype="<i4").tobytes())
        f.write(np.ascontiguousarray(flow, dtype="<f4").tobytes())
    os.replace(tmp, path)
    return path


def valid_mask(gt: np.ndarray) -> np.ndarray:
    gt = np.asarray(gt)
    return np.isfinite(gt).all(-1) & (np.abs(gt) < UNKNOWN_FLOW).all(-1)


def endpoint_error(flow: np.ndarray, gt: np.ndarray) -> float:
    """Mean end-point error ||flow - gt|| over pixels with known ground truth."""
    flow = np.asarray(flow, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if flow.shape != gt.shape:
        raise InputError(f"flow shape {flow.shape} differs from ground truth shape {gt.shape}",
                         "compare flow and ground truth of the same frame size")
    m = valid_mask(gt)
    if not m.any():
        raise InputError("the ground truth has no valid pixels", "check the .flo file")
    return float(np.sqrt(((flow - gt) ** 2).sum(-1))[m].mean())
