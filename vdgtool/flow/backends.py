"""Flow backends behind one interface.

``get_backend(name, **options)`` returns an object with ``.name``, ``.params()`` (a JSON-able dict
recorded in the store's conventions) and ``.compute(im0, im1)``: batches of frames (N, H, W) or
(N, H, W, 3) RGB -> float32 (N, H, W, 2) forward flow (u, v) in pixels.

| name      | what                                                        | speed / accuracy           |
|-----------|-------------------------------------------------------------|----------------------------|
| torch     | batched TV-L1 (vdgtool.flow.tvl1), CUDA when present        | default; reference quality |
| opencv    | cv2.optflow.DualTVL1OpticalFlow with the same parameters     | reference implementation   |
| farneback | cv2.calcOpticalFlowFarneback (polynomial expansion)          | fast, coarse               |
| dis       | cv2.DISOpticalFlow (dense inverse search), preset medium    | fastest, good              |
"""

from __future__ import annotations

import numpy as np

from vdgtool.errors import ConfigError, InputError, require
from vdgtool.flow.tvl1 import TVL1Params, pyramid_sizes

BACKENDS = ("torch", "opencv", "farneback", "dis")


def to_grey_u8(frames: np.ndarray) -> np.ndarray:
    """(N, H, W[, C]) -> (N, H, W) uint8 grey (ITU-R 601 luma, as cv2.cvtColor RGB2GRAY)."""
    frames = np.asarray(frames)
    if frames.ndim == 4:
        if frames.shape[-1] == 1:
            frames = frames[..., 0]
        elif frames.shape[-1] == 3:
            import cv2

            if frames.dtype != np.uint8:
                frames = np.clip(frames, 0, 255).astype(np.uint8)
            return np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames])
        else:
            raise InputError(f"frames with {frames.shape[-1]} channels cannot be used for optical flow",
                             "pass grey or RGB frames")
    if frames.ndim != 3:
        raise InputError(f"expected frames of shape (N, H, W) or (N, H, W, C), got {frames.shape}",
                         "pass a batch of frames")
    if frames.dtype != np.uint8:
        frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    return frames


def _check_pair(im0: np.ndarray, im1: np.ndarray) -> None:
    if im0.shape != im1.shape:
        raise InputError(f"frame pair shapes differ: {im0.shape} vs {im1.shape}",
                         "both frames of a pair must have the same size")


class FlowBackend:
    name = ""

    def params(self) -> dict:  # pragma: no cover - overridden
        return {}

    def compute(self, im0, im1) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def describe(self) -> dict:
        return {"backend": self.name, "params": self.params()}


class TorchTVL1(FlowBackend):
    """The batched torch TV-L1 solver; ``batch_size`` pairs are solved at once."""

    name = "torch"

    def __init__(self, params: TVL1Params | None = None, device=None, batch_size: int = 16,
                 compile: bool = False, compile_cache: str | None = None):
        import torch

        self.tv = (params or TVL1Params()).validate()
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        if batch_size < 1:
            raise InputError(f"batch size {batch_size} must be >= 1", "pass --batch-size 1 or more")
        self.batch_size = int(batch_size)
        self.compile = bool(compile)
        self.compile_cache = None
        if self.compile:
            from vdgtool.flow.tvl1 import use_compile_cache

            self.compile_cache = use_compile_cache(compile_cache)

    def params(self) -> dict:
        # device, batch size and compilation do not change the result beyond float rounding
        return self.tv.to_dict()

    def compute(self, im0, im1) -> np.ndarray:
        from vdgtool.flow.tvl1 import padded_batch, tvl1_flow

        im0, im1 = np.asarray(im0), np.asarray(im1)
        _check_pair(im0, im1)
        out = []
        for s in range(0, len(im0), self.batch_size):
            a = to_grey_u8(im0[s:s + self.batch_size])
            b = to_grey_u8(im1[s:s + self.batch_size])
            n = len(a)
            if self.compile and n < self.batch_size:
                # a few fixed shapes, so a run compiles once per size (a pair's result does not depend on its batch
                # mates: converged pairs are frozen); the padding repeats the last pair
                k = padded_batch(n, self.batch_size) - n
                a = np.concatenate([a, np.repeat(a[-1:], k, 0)])
                b = np.concatenate([b, np.repeat(b[-1:], k, 0)])
            fl = tvl1_flow(a, b, self.tv, device=self.device, compile=self.compile)
            out.append(fl[:n].cpu().numpy())
        return np.concatenate(out) if out else np.zeros(im0.shape[:3] + (2,), np.float32)


class OpenCVTVL1(FlowBackend):
    """cv2.optflow.DualTVL1OpticalFlow with the torch solver's parameters (same pyramid depth)."""

    name = "opencv"

    def __init__(self, params: TVL1Params | None = None):
        self.tv = (params or TVL1Params()).validate()
        cv2 = require("cv2", "opencv", "the opencv flow backend")
        if not hasattr(cv2, "optflow"):
            raise ConfigError("this OpenCV build has no cv2.optflow (DualTVL1 lives in opencv-contrib)",
                              "pip install opencv-contrib-python-headless, or use --backend torch")
        self.cv2 = cv2
        self._algs = {}

    def params(self) -> dict:
        return self.tv.to_dict()

    def _alg(self, h: int, w: int):
        n = len(pyramid_sizes(h, w, self.tv.scales, self.tv.zoom))
        if n not in self._algs:
            t = self.tv
            self._algs[n] = self.cv2.optflow.DualTVL1OpticalFlow_create(
                tau=t.tau, lambda_=t.lambda_, theta=t.theta, nscales=n, warps=t.warps, epsilon=t.epsilon,
                innnerIterations=t.iterations, outerIterations=t.outer_iterations, scaleStep=t.zoom,
                gamma=0.0, medianFiltering=max(1, t.median), useInitialFlow=False)
        return self._algs[n]

    def compute(self, im0, im1) -> np.ndarray:
        a, b = to_grey_u8(im0), to_grey_u8(im1)
        _check_pair(a, b)
        alg = self._alg(*a.shape[1:3])
        return np.stack([alg.calc(x, y, None) for x, y in zip(a, b)]).astype(np.float32) if len(a) else \
            np.zeros(a.shape + (2,), np.float32)


class Farneback(FlowBackend):
    name = "farneback"
    DEFAULTS = {"pyr_scale": 0.5, "levels": 5, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2}

    def __init__(self, **kw):
        unknown = set(kw) - set(self.DEFAULTS)
        if unknown:
            raise InputError(f"unknown Farneback parameter(s) {sorted(unknown)}", f"use {sorted(self.DEFAULTS)}")
        self.p = {**self.DEFAULTS, **kw}
        import cv2

        self.cv2 = cv2

    def params(self) -> dict:
        return dict(self.p)

    def compute(self, im0, im1) -> np.ndarray:
        a, b = to_grey_u8(im0), to_grey_u8(im1)
        _check_pair(a, b)
        p = self.p
        return np.stack([self.cv2.calcOpticalFlowFarneback(
            x, y, None, p["pyr_scale"], p["levels"], p["winsize"], p["iterations"], p["poly_n"],
            p["poly_sigma"], 0) for x, y in zip(a, b)]).astype(np.float32) if len(a) else \
            np.zeros(a.shape + (2,), np.float32)


class DIS(FlowBackend):
    name = "dis"
    PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}

    def __init__(self, preset: str = "medium"):
        if preset not in self.PRESETS:
            raise InputError(f"unknown DIS preset '{preset}'", f"use one of {', '.join(self.PRESETS)}")
        import cv2

        self.preset = preset
        self.alg = cv2.DISOpticalFlow_create(self.PRESETS[preset])

    def params(self) -> dict:
        return {"preset": self.preset}

    def compute(self, im0, im1) -> np.ndarray:
        a, b = to_grey_u8(im0), to_grey_u8(im1)
        _check_pair(a, b)
        return np.stack([self.alg.calc(x, y, None) for x, y in zip(a, b)]).astype(np.float32) if len(a) else \
            np.zeros(a.shape + (2,), np.float32)


def get_backend(name: str = "torch", *, params: TVL1Params | None = None, device=None, batch_size: int = 16,
                compile: bool = False, preset: str = "medium", compile_cache: str | None = None) -> FlowBackend:
    """Create a flow backend by name (see module doc). TV-L1 ``params`` apply to torch and opencv."""
    if name == "torch":
        return TorchTVL1(params, device=device, batch_size=batch_size, compile=compile, compile_cache=compile_cache)
    if name == "opencv":
        return OpenCVTVL1(params)
    if name == "farneback":
        return Farneback()
    if name == "dis":
        return DIS(preset)
    raise ConfigError(f"unknown flow backend '{name}'", f"use one of {', '.join(BACKENDS)}")
