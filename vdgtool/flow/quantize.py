"""Flow storage conventions: uint8 quantisation (mmaction2 / denseflow) or float16, and the reader
conversion to network input.

uint8 (default, what two-stream / I3D flow models pretrained with mmaction2 or denseflow expect)::

    q = round(255 * (clip(f, -bound, bound) + bound) / (2 * bound))      # 0..255, bound 20 by default
    f ~ q * (2 * bound) / 255 - bound                                       # error <= bound / 255 (half a bucket)

Network input in [-1, 1] (the I3D flow convention, flow / bound)::

    x = q / 127.5 - 1          (uint8)        x = clip(f, -bound, bound) / bound   (float16)

(mmaction2's Normalize(mean=128, std=128) on the uint8 values gives (q - 128) / 128, which differs
from q / 127.5 - 1 by at most 1/128; use whichever your pretrained weights were trained with.)
"""

from __future__ import annotations

import numpy as np

from vdgtool.errors import InputError

DTYPES = ("uint8", "float16")
DEFAULT_BOUND = 20.0


def _check(bound: float, dtype: str) -> None:
    if not bound > 0:
        raise InputError(f"flow bound {bound} must be > 0", "use e.g. --bound 20")
    if dtype not in DTYPES:
        raise InputError(f"unknown flow storage dtype '{dtype}'", f"use one of {', '.join(DTYPES)}")


def quantize_flow(flow, bound: float = DEFAULT_BOUND, dtype: str = "uint8") -> np.ndarray:
    """Float flow (..., 2) -> stored array: uint8 (clipped to +-bound, linear to 0..255) or float16."""
    _check(bound, dtype)
    flow = np.asarray(flow, dtype=np.float32)
    if dtype == "float16":
        return flow.astype(np.float16)
    q = np.rint((np.clip(flow, -bound, bound) + bound) * (255.0 / (2.0 * bound)))
    return q.astype(np.uint8)


def dequantize_flow(stored, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Stored flow -> float32 flow in pixels (uint8 values are mapped back to bucket centres)."""
    stored = np.asarray(stored)
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) * np.float32(2.0 * bound / 255.0) - np.float32(bound)
    return stored.astype(np.float32)


def to_network_input(stored, bound: float = DEFAULT_BOUND) -> np.ndarray:
    """Stored flow -> float32 in [-1, 1] (flow / bound, clipped), the I3D flow-stream input."""
    stored = np.asarray(stored)
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return np.clip(stored.astype(np.float32), -bound, bound) / np.float32(bound)


def store_to_network_input(store, row: int, frames=None) -> np.ndarray:
    """Read flow of video ``row`` from a flow store and convert it with the store's own bound."""
    conv = store.conventions
    return to_network_input(store.read(row, frames), float(conv.get("bound", DEFAULT_BOUND)))
