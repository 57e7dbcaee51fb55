"""Reading a model's input spec without importing the model registry (duck typing)."""

from __future__ import annotations

from typing import Any

from vdgtool.errors import ConfigError

MODALITIES = ("rgb", "flow")
_DEFAULTS = {"modality": "rgb", "sampler": "dense", "frame_interval": 1}


def spec_get(spec: Any, name: str, default: Any = ...) -> Any:
    """``spec.name`` or ``spec[name]`` (an InputSpec dataclass or a plain dict)."""
    if isinstance(spec, dict):
        if name in spec:
            return spec[name]
    elif hasattr(spec, name):
        return getattr(spec, name)
    if default is not ...:
        return default
    if name in _DEFAULTS:
        return _DEFAULTS[name]
    raise ConfigError(f"the model input spec has no '{name}' (spec: {spec!r})",
                      "give the spec num_frames, size, mean, std (and modality, sampler, frame_interval)")


def spec_size(spec: Any) -> tuple[int, int]:
    """(height, width) of the network input; an int size means a square."""
    size = spec_get(spec, "size")
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise ConfigError(f"input size {size!r} is neither an int nor (height, width)", "fix the model spec")
        return int(size[0]), int(size[1])
    return int(size), int(size)


def spec_modality(spec: Any) -> str:
    m = str(spec_get(spec, "modality")).lower()
    if m not in MODALITIES:
        raise ConfigError(f"unknown input modality '{m}'", f"use one of {', '.join(MODALITIES)}")
    return m
