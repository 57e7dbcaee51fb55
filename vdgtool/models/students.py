"""Purely spatial students of video models: a 2D network applied to every frame, features (hence logits,
the head being linear) averaged over frames. The dynamic score (``score --method distill``) and the DRL
methods train them; a student sees the video model's normalised input and re-normalises it to its own
convention when they differ.

The default student is the release's: an ImageNet-pretrained ResNet-18 per frame
(``frame2d:resnet18.tv_in1k``: timm's copy of torchvision's ImageNet weights). ``pretrained=True``
downloads them through timm (or finds them in its cache); ``weights=PATH`` loads a local timm or
torchvision state dict of the 2D backbone instead (offline machines); from scratch only when asked.
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

    def __init__(self, timm_name: str, num_classes: int, in_chans: int = 3, pretrained: bool = False, **timm_kw):
        super().__init__()
        import timm

        try:
            self.net = timm.create_model(timm_name, pretrained=pretrained, num_classes=num_classes,
                                         in_chans=in_chans, **timm_kw)
        except RuntimeError as exc:  # unknown timm model
            if "unknown model" not in str(exc).lower():
                raise
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
    """``frame2d:resnet18.tv_in1k`` (the release's ImageNet ResNet-18 per frame) when the registry has
    ``frame2d``, else ``timm:resnet18.tv_in1k``."""
    from vdgtool.models import list_models

    return "frame2d:resnet18.tv_in1k" if "frame2d" in list_models() else "timm:resnet18.tv_in1k"


def student_init(pretrained: bool, weights: str | None) -> str:
    """How a student starts, as recorded in outputs: ``imagenet (file PATH)``, ``imagenet (timm)`` or ``scratch``."""
    if weights:
        return f"imagenet (file {weights})"
    return "imagenet (timm)" if pretrained else "scratch"


def _weights_overlay(weights: str | None) -> dict:
    """timm keyword arguments loading the 2D backbone's ImageNet weights from a local file (weights_only)."""
    if not weights:
        return {}
    import os

    if not os.path.isfile(weights):
        raise ConfigError(f"student weights file {weights} does not exist",
                          "pass the path of a timm/torchvision ImageNet state dict of the student's backbone")
    return {"pretrained_cfg_overlay": {"file": os.path.abspath(weights)}}


def build_spatial_student(name: str | None, num_classes: int, spec: Any, pretrained: bool = False,
                          weights: str | None = None) -> SpatialStudent:
    """A purely spatial student for a video model with input spec ``spec`` (InputSpec or dict).

    ``name``: a registry model (``frame2d:resnet18``, ``test_frame2d``) or ``timm:NAME`` (any timm 2D
    network per frame, logits averaged). ``None`` picks :func:`default_student`. ``pretrained``: ImageNet
    weights of the 2D backbone through timm (download or cache); ``weights``: from a local file instead.
    """
    from vdgtool.data.spec import spec_get

    name = name or default_student()
    mean, std = tuple(spec_get(spec, "mean")), tuple(spec_get(spec, "std"))
    base = name.split(":", 1)[0]
    if (pretrained or weights) and base.startswith("test_"):
        raise ConfigError(f"student {name} has no ImageNet weights",
                          "train it from scratch: --hp student_pretrained=false (score: --student-scratch)")
    overlay = _weights_overlay(weights)
    load = bool(pretrained or weights)
    try:
        if name.startswith("timm:"):
            net = PerFrame2D(name.split(":", 1)[1], num_classes, in_chans=len(mean), pretrained=load, **overlay)
            return SpatialStudent(net)
        from vdgtool.models import create_model, model_info

        fam = model_info(base).get("family", "")
        if fam not in ("frame2d", "2d", "image") and not base.startswith(("frame2d", "test_frame2d")):
            log.warning("student %s (family %s) is not a per-frame 2D model: its score is not a spatial baseline",
                        name, fam)
        extra = {"backbone_kwargs": overlay} if overlay else {}
        net = create_model(name, num_classes=num_classes, pretrained=load, in_channels=len(mean),
                           num_frames=int(spec_get(spec, "num_frames")), size=int(spec_get(spec, "size")), **extra)
    except ConfigError:
        raise
    except Exception as exc:  # a download that failed (offline), a damaged weights file, ...
        if not load:
            raise
        where = f"from {weights}" if weights else "through timm (download or cache)"
        raise ConfigError(f"could not load ImageNet weights for student {name} {where} "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]})",
                          "pass a local file (--hp student_weights=PATH; score: --student-weights PATH) or "
                          "train the student from scratch (--hp student_pretrained=false; score: --student-scratch)"
                          ) from None
    own = getattr(net, "input_spec", None)
    if own is not None:
        return SpatialStudent(net, mean, std, tuple(own.mean), tuple(own.std))
    return SpatialStudent(net)


__all__ = ["PerFrame2D", "SpatialStudent", "build_spatial_student", "default_student", "student_init"]
