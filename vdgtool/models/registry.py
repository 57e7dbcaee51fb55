"""Model registry: ``register_model``, ``list_models``, ``model_info``, ``create_model``.

Factories are registered with a default :class:`InputSpec` (what the data pipeline must feed). Heavy
imports (torchvision, timm) happen inside the factories, so listing models is instant.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

from vdgtool.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)  # torchvision's VideoResNet / S3D weights
KINETICS_STD = (0.22803, 0.22145, 0.216989)
HALF = (0.5, 0.5, 0.5)  # maps [0, 1] to [-1, 1]

MODALITY_CHANNELS = {"rgb": 3, "flow": 2}
SAMPLERS = ("dense", "uniform")


@dataclass(frozen=True)
class InputSpec:
    """What the data pipeline must feed a model: ``x`` float ``(B, C, T, H, W)``, already normalised.

    ``mean``/``std`` are per channel in [0, 1] units: the pipeline computes ``(x/255 - mean) / std``.
    ``(0.5,)*C`` for both means inputs in [-1, 1] (I3D, optical flow).
    """

    num_frames: int  # T (for TSN-style models: number of segments)
    size: int  # square crop side
    mean: tuple[float, ...]
    std: tuple[float, ...]
    modality: str = "rgb"  # "rgb" (3 channels) or "flow" (2 channels)
    sampler: str = "dense"  # "dense" (consecutive frames, frame_interval) or "uniform" (TSN segments)
    frame_interval: int = 1

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != len(self.std):
            raise ConfigError(f"input spec has {len(self.mean)} mean values but {len(self.std)} std values",
                              "give one mean and one std per channel")
        if self.modality not in MODALITY_CHANNELS:
            raise ConfigError(f"unknown modality {self.modality!r}", "use 'rgb' or 'flow'")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {self.sampler!r}", "use 'dense' or 'uniform'")
        if int(self.num_frames) < 1 or int(self.size) < 1 or int(self.frame_interval) < 1:
            raise ConfigError(
                f"invalid input spec: num_frames={self.num_frames}, size={self.size}, "
                f"frame_interval={self.frame_interval}", "all three must be positive integers")

    @property
    def in_channels(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "InputSpec":
        return cls(**{k: (tuple(v) if k in ("mean", "std") else v) for k, v in d.items()
                      if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., Any]
    family: str
    input_spec: InputSpec
    description: str
    takes_backbone: bool = False
    default_backbone: str | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str | None = None, *, family: str, input_spec: InputSpec, description: str = "",
                   default_backbone: str | None = None):
    """Decorator registering ``factory(num_classes, *, pretrained, in_channels, input_spec, dropout, **kw)``.

    The factory receives the *resolved* :class:`InputSpec` (defaults overridden by the caller's
    ``num_frames``/``size``/``in_channels``) and returns a :class:`~vdgtool.models.base.VideoModel`.
    Models taking a 2D backbone set ``default_backbone``; ``create_model("NAME:BACKBONE")`` then works.
    """

    def deco(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ConfigError(f"model {key!r} is registered twice", "choose another name")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelEntry(key, fn, family, input_spec, description or (doc[0] if doc else ""),
                                    takes_backbone=default_backbone is not None,
                                    default_backbone=default_backbone)
        return fn

    return deco


def _ensure_builtin():
    # Importing the modules registers the built-in models (cheap: no torchvision/timm import).
    from vdgtool.models import apn, c3d, i3d, torchvision_video, tsn  # noqa: F401


def list_models(pattern: str | list[str] = "*") -> list[str]:
    """Sorted registered model names matching an fnmatch pattern (or any of several patterns)."""
    _ensure_builtin()
    pats = [pattern] if isinstance(pattern, str) else list(pattern)
    return sorted(n for n in _REGISTRY if any(fnmatch.fnmatchcase(n, p) for p in pats))


def _entry(name: str) -> ModelEntry:
    _ensure_builtin()
    base = name.split(":", 1)[0]
    if base not in _REGISTRY:
        close = difflib.get_close_matches(base, list(_REGISTRY), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"unknown model {name!r}",
                          f"{hint}list the models with: vdgtool train --list-models")
    return _REGISTRY[base]


def model_info(name: str) -> dict:
    """Family, default input spec (as a dict) and description of a registered model."""
    e = _entry(name)
    info = {"name": e.name, "family": e.family, "description": e.description,
            "input_spec": e.input_spec.to_dict()}
    if e.takes_backbone:
        backbone = name.split(":", 1)[1] if ":" in name else e.default_backbone
        info["backbone"] = backbone
    return info


def resolve_input_spec(spec: InputSpec, *, in_channels: int | None = None, num_frames: int | None = None,
                       size: int | None = None) -> InputSpec:
    """Override the default spec; 2 input channels means optical flow normalised to [-1, 1]."""
    changes: dict[str, Any] = {}
    if num_frames is not None:
        changes["num_frames"] = int(num_frames)
    if size is not None:
        changes["size"] = int(size)
    if in_channels is not None and int(in_channels) != spec.in_channels:
        c = int(in_channels)
        if c < 1:
            raise ConfigError(f"in_channels={c} is not a channel count", "use 3 for RGB or 2 for flow")
        symmetric = all(m == 0.5 for m in spec.mean) and all(s == 0.5 for s in spec.std)  # [-1, 1] models
        if c == 2:
            changes.update(modality="flow", mean=(0.5, 0.5), std=(0.5, 0.5))
        elif c == 3:
            changes.update(modality="rgb", mean=HALF if symmetric else IMAGENET_MEAN,
                           std=HALF if symmetric else IMAGENET_STD)
        else:
            raise ConfigError(f"in_channels={c} is not supported",
                              "use 3 for RGB or 2 for optical flow (x, y)")
    return replace(spec, **changes) if changes else spec


def create_model(name: str, num_classes: int, *, pretrained: bool = False, weights: str | None = None,
                 in_channels: int | None = None, num_frames: int | None = None, size: int | None = None,
                 dropout: float = 0.0, **kwargs):
    """Build a registered video model.

    ``name`` may carry a 2D backbone (``"tsm:resnet18"``, same as ``backbone="resnet18"``).
    ``pretrained`` downloads the upstream weights (torchvision / timm); ``weights=PATH`` loads a local
    state dict or checkpoint safely (``weights_only=True``), re-initialising the classifier when its
    class count differs. ``num_frames``/``size``/``in_channels`` override the default input spec.
    """
    e = _entry(name)
    if ":" in name:
        if not e.takes_backbone:
            raise ConfigError(f"model {e.name!r} takes no backbone (got {name!r})",
                              f"use plain {e.name!r}; NAME:BACKBONE is for tsn, tsm, trn, frame2d and apn")
        bb = name.split(":", 1)[1]
        if kwargs.get("backbone") not in (None, bb):
            raise ConfigError(f"two backbones given: {name!r} and backbone={kwargs['backbone']!r}",
                              "give the backbone once")
        kwargs["backbone"] = bb
    if e.takes_backbone:
        kwargs.setdefault("backbone", e.default_backbone)
    try:
        num_classes = int(num_classes)
    except (TypeError, ValueError):
        raise ConfigError(f"num_classes={num_classes!r} is not an integer", "pass the number of classes")
    if num_classes < 1:
        raise ConfigError(f"num_classes={num_classes} must be at least 1", "pass the number of classes")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout={dropout} is outside [0, 1)", "pass a probability such as 0.5")
    if pretrained and weights is not None:
        raise ConfigError("both pretrained=True and weights=PATH were given",
                          "use one: --pretrained downloads upstream weights, --weights loads a local file")
    spec = resolve_input_spec(e.input_spec, in_channels=in_channels, num_frames=num_frames, size=size)
    try:
        model = e.factory(num_classes, pretrained=bool(pretrained),
                          input_spec=spec, dropout=float(dropout), **kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ConfigError(f"model {e.name!r} does not accept an option: {exc}",
                              f"see model_info({e.name!r}) / docs/models.md for its options") from exc
        raise
    bb = kwargs.get("backbone")
    model.model_name = e.name + (f":{bb}" if e.takes_backbone and bb != e.default_backbone else "")
    if getattr(model, "input_spec", None) is None:
        model.input_spec = spec
    create_kwargs = {"in_channels": spec.in_channels, "num_frames": spec.num_frames, "size": spec.size,
                     "dropout": float(dropout)}
    # a model may record its resolved options (defaults included) so the run states them all
    create_kwargs.update(getattr(model, "resolved_kwargs", None) or {})
    create_kwargs.update({k: v for k, v in kwargs.items() if k != "backbone"})
    if e.takes_backbone:
        create_kwargs["backbone"] = bb
    model.create_kwargs = create_kwargs
    if weights is not None:
        from vdgtool.models.weights import load_state_dict_safely

        model.load_pretrained(load_state_dict_safely(weights), source=str(weights))
    return model
