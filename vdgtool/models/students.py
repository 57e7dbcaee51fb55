"""Purely spatial students of video models: a 2D network applied to every frame, predictions averaged
over frames. The dynamic score (``score --method distill``) and the DRL methods train them; a student
sees the video model's normalised input and re-normalises it to its own convention when they differ.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from vdgtool.errors import ConfigError
from vdgtool.utils.log import get_logger

log = get_logger("models")


class PerFrame2D(nn.Module):
    """A timm 2D network applied to every frame; logits averaged over frames (a purely spatial model).

    Used for ``student="timm:NAME"``; registry models (``frame2d:BACKBONE``, ``test_frame2d``) are
    used as they are.
    """

    def __init__(self, timm_name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False):
        super().__init__()
        import timm

        try:
            self.net = timm.create_model(timm_name, pretrained=pretrained, num_classes=num_classes,
                                         in_chans=in_chans)
        except RuntimeError as exc:  # unknown timm model
            raise ConfigError(f"timm has no model {timm_name!r} ({' '.join(str(exc).split())[:80]})",
                              "pick one of timm.list_models()") from None
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        return self.net(frames).view(b, t, -1).mean(1)


class SpatialStudent(nn.Module):
    """Wraps a per-frame model; re-normalises the video model's input to the student's convention."""

    def __init__(self, net: nn.Module, in_mean=None, in_std=None, own_mean=None, own_std=None):
        super().__init__()
        self.net = net
        renorm = (in_mean is not None and own_mean is not None
                  and (tuple(in_mean) != tuple(own_mean) or tuple(in_std) != tuple(own_std)))
        self.renorm = bool(renorm)
        if self.renorm:
            shape = (1, -1, 1, 1, 1)
            self.register_buffer("in_mean", torch.tensor(in_mean, dtype=torch.float32).view(shape), persistent=False)
            self.register_buffer("in_std", torch.tensor(in_std, dtype=torch.float32).view(shape), persistent=False)
            self.register_buffer("own_mean", torch.tensor(own_mean, dtype=torch.float32).view(shape), persistent=False)
            self.register_buffer("own_std", torch.tensor(own_std, dtype=torch.float32).view(shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.renorm:
            x = ((x * self.in_std + self.in_mean) - self.own_mean) / self.own_std
        return self.net(x)


def default_student() -> str:
    """``frame2d:resnet18`` when the registry has ``frame2d``, else ``timm:resnet18``."""
    from vdgtool.models import list_models

    return "frame2d:resnet18" if "frame2d" in list_models() else "timm:resnet18"


def build_spatial_student(name: str | None, num_classes: int, spec: Any, pretrained: bool = False) -> SpatialStudent:
    """A purely spatial student for a video model with input spec ``spec`` (InputSpec or dict).

    ``name``: a registry model (``frame2d:resnet50``, ``test_frame2d``) or ``timm:NAME`` (any timm 2D
    network per frame, logits averaged). ``None`` picks :func:`default_student`.
    """
    from vdgtool.data.spec import spec_get

    name = name or default_student()
    mean, std = tuple(spec_get(spec, "mean")), tuple(spec_get(spec, "std"))
    if name.startswith("timm:"):
        net = PerFrame2D(name.split(":", 1)[1], num_classes, in_chans=len(mean), pretrained=pretrained)
        return SpatialStudent(net)
    from vdgtool.models import create_model, model_info

    base = name.split(":", 1)[0]
    fam = model_info(base).get("family", "")
    if fam not in ("frame2d", "2d", "image") and not base.startswith(("frame2d", "test_frame2d")):
        log.warning("student %s (family %s) is not a per-frame 2D model: its score is not a spatial baseline",
                    name, fam)
    net = create_model(name, num_classes=num_classes, pretrained=pretrained, in_channels=len(mean),
                       num_frames=int(spec_get(spec, "num_frames")), size=int(spec_get(spec, "size")))
    own = getattr(net, "input_spec", None)
    if own is not None:
        return SpatialStudent(net, mean, std, tuple(own.mean), tuple(own.std))
    return SpatialStudent(net)


__all__ = ["PerFrame2D", "SpatialStudent", "build_spatial_student", "default_student"]
