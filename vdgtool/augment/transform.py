"""Frame-consistent video transforms: store frames -> normalised network input."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

from vdgtool.augment.ops import TRANSFORMS, parse_policy
from vdgtool.data.spec import spec_get, spec_modality, spec_size
from vdgtool.errors import ConfigError, ConventionMismatch

DEFAULT_FLOW_BOUND = 20.0  # mmaction2 / denseflow convention


def flow_to_unit(frames: np.ndarray | torch.Tensor, conventions: dict | None) -> torch.Tensor:
    """Stored flow (T, H, W, 2) -> float32 tensor (T, 2, H, W) in [-1, 1] (u, v order kept).

    uint8 flow (``quantisation="linear_uint8"``: clip(flow, -B, B) mapped linearly to 0..255) becomes
    ``x / 127.5 - 1``; float16/float32 flow in pixels becomes ``clip(flow / B, -1, 1)`` with the
    store's ``bound`` B (20 when the store records none).
    """
    conv = conventions or {}
    t = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if t.ndim != 4 or t.shape[-1] != 2:
        raise ConventionMismatch(f"flow frames must be (T, H, W, 2), got shape {tuple(t.shape)}",
                                 "pass a flow store (vdgtool flow) for a flow model")
    t = t.permute(0, 3, 1, 2)
    quant = conv.get("quantisation", conv.get("quantization"))
    if t.dtype == torch.uint8:
        if quant not in (None, "linear_uint8", "uint8"):  # "linear_uint8": what `vdgtool flow` writes
            raise ConventionMismatch(f"flow stored as uint8 but the store records quantisation={quant!r}",
                                     "re-create the flow store")
        return t.float().div_(127.5).sub_(1.0)
    bound = float(conv.get("bound", DEFAULT_FLOW_BOUND) or DEFAULT_FLOW_BOUND)
    return t.float().div_(bound).clamp_(-1.0, 1.0)


def rrc_params(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
               rng: np.random.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop parameters (torchvision's algorithm) drawn from a numpy generator."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _jitter_strengths(color_jitter) -> tuple[float, float, float, float]:
    if color_jitter is None or color_jitter is False:
        return (0.0, 0.0, 0.0, 0.0)
    if isinstance(color_jitter, (int, float)):
        s = float(color_jitter)
        return (s, s, s, 0.0)  # hue only when asked for: torchvision's HSV round trip costs ~5x the rest
    vals = tuple(float(v) for v in color_jitter)
    if len(vals) == 3:
        vals = vals + (0.0,)
    if len(vals) != 4:
        raise ConfigError(f"color_jitter {color_jitter!r} is neither a number nor (brightness, contrast, "
                          "saturation[, hue])", "fix the option")
    return vals  # type: ignore[return-value]


class VideoTransform:
    """``transform(frames, rng, conventions=None) -> tensor``; see :func:`build_transform`."""

    def __init__(self, spec: Any, train: bool, *, scale=(0.25, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True,
                 color_jitter=0.0, num_crops: int = 1, policy=None, normalize: bool = True):
        self.spec = spec
        self.train = bool(train)
        self.modality = spec_modality(spec)
        self.size = spec_size(spec)
        self.num_frames = int(spec_get(spec, "num_frames"))
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ConfigError(f"crop scale {scale} is not 0 < min <= max <= 1", "fix --crop-scale")
        self.flip = bool(flip)
        self.jitter = _jitter_strengths(color_jitter)
        self.num_crops = int(num_crops)
        if self.num_crops not in (1, 3):
            raise ConfigError(f"num_crops={num_crops}: only 1 (centre) or 3 (three-crop) test views exist",
                              "use --num-crops 1 or 3")
        self.policy = parse_policy(policy)
        self.normalize = bool(normalize)
        if self.modality == "flow":
            if any(self.jitter):
                raise ConfigError("colour jitter does not apply to optical flow", "drop --color-jitter for flow")
            for name, _, _ in self.policy:
                if not TRANSFORMS[name].flow_ok:
                    raise ConfigError(f"augmentation '{name}' does not apply to optical flow",
                                      f"use one of {', '.join(n for n, o in TRANSFORMS.items() if o.flow_ok)}")
        channels = 2 if self.modality == "flow" else 3
        default = (0.5,) * 2 if self.modality == "flow" else ...  # flow: [-1, 1] unless the spec says otherwise
        self.mean = [float(v) for v in spec_get(spec, "mean", default)]
        self.std = [float(v) for v in spec_get(spec, "std", default)]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ConfigError(f"a {self.modality} input spec needs {channels} mean/std values, got mean={self.mean} "
                              f"std={self.std}", "fix the model's input spec")
        # flow is handled in [-1, 1] (= mean = std = 0.5 on the [0, 1] scale): nothing left to do then
        self._flow_identity = self.modality == "flow" and self.mean == [0.5, 0.5] and self.std == [0.5, 0.5]

    # -- pieces (public so views / adversarial methods can reuse them) -----------------------------
    def to_tensor(self, frames, conventions: dict | None = None) -> torch.Tensor:
        """Stored frames (T, H, W, C) -> (T, C, H, W): uint8 for RGB, float [-1, 1] for flow."""
        if self.modality == "flow":
            return flow_to_unit(frames, conventions)
        t = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if t.ndim != 4:
            raise ConventionMismatch(f"frames must be (T, H, W, C), got shape {tuple(t.shape)}", "this is a bug")
        if t.shape[-1] == 2:
            raise ConventionMismatch("an rgb model was given 2-channel frames (optical flow)",
                                     "use a flow model for a flow store, or an rgb clip store")
        t = t.permute(0, 3, 1, 2)
        if t.shape[1] == 1:
            t = t.expand(-1, 3, -1, -1)
        return t

    def geometry(self, x: torch.Tensor, rng: np.random.Generator) -> list[torch.Tensor]:
        """Crop/resize (+ flip in train) on the whole clip; a list of num_crops views (T, C, h, w)."""
        h, w = self.size
        H, W = x.shape[-2:]
        if self.train:
            top, left, ch, cw = rrc_params(H, W, self.scale, self.ratio, rng)
            x = F.resized_crop(x, top, left, ch, cw, [h, w], antialias=True)
            if self.flip and rng.random() < 0.5:
                x = self.hflip(x)
            return [x]
        short = min(h, w)
        if min(H, W) != short:
            x = F.resize(x, short, antialias=True)
        H, W = x.shape[-2:]
        if self.num_crops == 1 or (H == h and W == w):
            return [F.center_crop(x, [h, w])] * (1 if self.num_crops == 1 else self.num_crops)
        if W - w >= H - h:  # three crops along the long side
            offs = [0, (W - w) // 2, W - w]
            top = (H - h) // 2
            return [F.crop(x, top, o, h, w) for o in offs]
        offs = [0, (H - h) // 2, H - h]
        left = (W - w) // 2
        return [F.crop(x, o, left, h, w) for o in offs]

    def hflip(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hflip(x)
        if self.modality == "flow":  # mirrored motion: u -> -u
            x = x.clone()
            x[:, 0].neg_()
        return x

    def photometric(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Colour jitter (train) and the policy ops; x is float (T, C, h, w)."""
        if self.train and any(self.jitter):
            b, c, s, hue = self.jitter
            ops = []
            if b:
                ops.append((F.adjust_brightness, rng.uniform(max(0.0, 1 - b), 1 + b)))
            if c:
                ops.append((F.adjust_contrast, rng.uniform(max(0.0, 1 - c), 1 + c)))
            if s:
                ops.append((F.adjust_saturation, rng.uniform(max(0.0, 1 - s), 1 + s)))
            if hue:
                ops.append((F.adjust_hue, rng.uniform(-hue, hue)))
            for j in rng.permutation(len(ops)):
                fn, factor = ops[j]
                x = fn(x, float(factor))
        for name, p, m in self.policy:
            if p >= 1.0 or rng.random() < p:
                x = TRANSFORMS[name](x, m, flow=self.modality == "flow")
        return x

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise with the spec's mean/std and lay out as (C, T, h, w).

        RGB: ``(x - mean) / std`` on [0, 1] values. Flow lives in [-1, 1]; on the [0, 1] scale
        ``(x + 1) / 2`` the spec's mean/std apply the same way (0.5/0.5, the usual, keeps [-1, 1]).
        """
        if self.modality == "rgb":
            x = x.clamp_(0.0, 1.0)
            if self.normalize:
                x = F.normalize(x, self.mean, self.std)
        elif self.normalize and not self._flow_identity:
            x = F.normalize(x.add(1.0).mul_(0.5), self.mean, self.std)
        return x.permute(1, 0, 2, 3)  # a view; callers make it contiguous once (stack / contiguous)

    def __call__(self, frames, rng: np.random.Generator | None = None, conventions: dict | None = None
                 ) -> torch.Tensor:
        if rng is None:
            if self.train:
                raise ConfigError("a training transform needs a random generator", "pass rng=")
            rng = np.random.default_rng(0)
        outs = self._views(frames, rng, conventions)
        return outs[0].contiguous() if self.num_crops == 1 else torch.stack(outs)

    def _views(self, frames, rng, conventions) -> list[torch.Tensor]:
        x = self.to_tensor(frames, conventions)
        outs = []
        for v in self.geometry(x, rng):
            if v.dtype == torch.uint8:
                v = F.to_dtype(v, torch.float32, scale=True)
            v = v.contiguous()  # crops of (T, H, W, C) memory come out channels-last: 10x slower colour ops
            outs.append(self.finish(self.photometric(v, rng)))
        return outs

    def many(self, clips, rng: np.random.Generator, conventions: dict | None = None) -> torch.Tensor:
        """Several clips (each (T, H, W, C)) -> (num_clips * num_crops, C, T, h, w), clip-major, one copy.

        Each clip draws its own random parameters, in order, from ``rng`` (as repeated calls would).
        """
        outs = []
        for frames in clips:
            outs += self._views(frames, rng, conventions)
        return torch.stack(outs)

    def __repr__(self) -> str:
        return (f"VideoTransform({self.modality}, train={self.train}, size={self.size}, scale={self.scale}, "
                f"flip={self.flip}, jitter={self.jitter}, num_crops={self.num_crops}, policy={self.policy})")


def build_transform(spec: Any, train: bool, *, scale=(0.25, 1.0), flip: bool = True, color_jitter=0.0,
                    num_crops: int = 1, policy=None, **kw) -> VideoTransform:
    """Frame-consistent transform for a model input spec.

    ``transform(frames, rng, conventions=None)``: uint8 frames (T, H, W, C) (or stored flow
    (T, H, W, 2) with the store's conventions) -> float tensor (C, T, h, w), or
    (num_crops, C, T, h, w) for the three-crop test view. Train: random resized crop, flip, colour
    jitter; test: resize the short side, centre (or three) crop. ``policy``: augmentation ops
    applied in train and test (see vdgtool.augment.ops).
    """
    if train and num_crops != 1:
        raise ConfigError(f"num_crops={num_crops} is a test-time view", "use num_crops=1 for training")
    return VideoTransform(spec, train, scale=scale, flip=flip, color_jitter=color_jitter, num_crops=num_crops,
                          policy=policy, **kw)
