"""Ready-made extra views for :class:`ClipDataset` (``views={"name": fn}``), and their registry.

A view is ``fn(ctx: ViewContext) -> dict`` of tensors / numbers; it runs after the main clip and
gets its own random generator, so adding one never changes the main clip. Methods add their own
the same way (adversarial inputs are made in the training step, from ``video``, not here).

* ``pace``: the same video resampled at another playback pace (pace prediction); label = index of
  the pace in ``paces``. Pace ``p`` takes every ``p``-th frame (``p < 1`` repeats frames: slow motion).
* ``shuffled``: the main clip with its frames in a random non-identity order (same augmentation).
* ``frozen``: one frame of the main clip repeated ``T`` times (a clip with no motion).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from vdgtool.errors import ConfigError

#: name -> factory(**options) -> view function
VIEWS: dict[str, Callable[..., Callable]] = {}


def register_view(name: str):
    def deco(factory):
        VIEWS[name] = factory
        return factory

    return deco


def build_views(spec: dict[str, dict] | Sequence[str] | None) -> dict[str, Callable]:
    """``{"pace": {"paces": [1, 2, 4]}, "frozen": {}}`` or ``["pace", "shuffled"]`` -> view functions."""
    if not spec:
        return {}
    items = spec.items() if isinstance(spec, dict) else ((n, {}) for n in spec)
    out = {}
    for name, opts in items:
        if name not in VIEWS:
            raise ConfigError(f"unknown view '{name}'", f"use one of {', '.join(sorted(VIEWS))}")
        out[name] = VIEWS[name](**(opts or {}))
    return out


def pace_indices(num_frames: int, clip_len: int, pace: float, rng: np.random.Generator, train: bool,
                 base_interval: int = 1) -> np.ndarray:
    """Indices of one clip of ``clip_len`` frames played at ``pace`` (x base interval); loops if short."""
    step = pace * base_interval
    offs = np.floor(np.arange(clip_len) * step).astype(np.int64)
    span = int(offs[-1]) + 1
    max_start = max(num_frames - span, 0)
    start = int(rng.integers(0, max_start + 1)) if train else max_start // 2
    return np.mod(start + offs, num_frames)


@register_view("pace")
def pace_view(paces: Sequence[float] = (1, 2, 3, 4)) -> Callable:
    paces = [float(p) for p in paces]
    if not paces or min(paces) <= 0:
        raise ConfigError(f"paces {paces} must be positive numbers", "e.g. paces=[1, 2, 3, 4]")

    def view(ctx) -> dict:
        label = int(ctx.rng.integers(0, len(paces)))
        clip_len = int(getattr(ctx.sampler, "clip_len", ctx.indices.shape[-1]))
        base = int(getattr(ctx.sampler, "frame_interval", 1))
        idx = pace_indices(ctx.num_frames, clip_len, paces[label], ctx.rng, ctx.train, base)
        return {"video": ctx.transform_clip(ctx.read(idx)), "label": label, "pace": paces[label]}

    return view


def _main_video(ctx) -> torch.Tensor:
    if ctx.video is None:
        raise ConfigError("this view needs the main clip", "this is a bug in the dataset")
    return ctx.video


@register_view("shuffled")
def shuffled_view() -> Callable:
    def view(ctx) -> dict:
        video = _main_video(ctx)
        t = video.shape[-3]
        order = ctx.rng.permutation(t)
        while t > 1 and np.all(order == np.arange(t)):
            order = ctx.rng.permutation(t)
        return {"video": video.index_select(-3, torch.as_tensor(order)), "order": torch.as_tensor(order)}

    return view


@register_view("frozen")
def frozen_view() -> Callable:
    def view(ctx) -> dict:
        video = _main_video(ctx)
        t = video.shape[-3]
        j = int(ctx.rng.integers(0, t))
        return {"video": video.narrow(-3, j, 1).expand_as(video).contiguous(), "frame": j}

    return view


__all__ = ["VIEWS", "register_view", "build_views", "pace_view", "shuffled_view", "frozen_view", "pace_indices"]
