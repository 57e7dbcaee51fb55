"""Ready-made extra views for :class:`ClipDataset` (``views={"name": fn}``), and their registry.

A view is ``fn(ctx: ViewContext) -> dict`` of tensors / numbers; it runs after the main clip and
gets its own random generator, so adding one never changes the main clip. Methods add their own
the same way (adversarial inputs are made in the training step, from ``video``, not here).

* ``pace``: the same video resampled at another playback pace (pace prediction); label = index of
  the pace in ``paces``. Pace ``p`` takes every ``p``-th frame (``p < 1`` repeats frames: slow motion).
  ``start``/``wrap`` choose the resampling rule (see :func:`pace_indices`); MM 2024 (CFB) uses
  ``paces=[1, 2, 3, 4, 5], start="any"`` with ``wrap="modulo"`` (the paper's example) or
  ``wrap="restart"`` (the released code).
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


PACE_STARTS = ("fit", "any")
PACE_WRAPS = ("modulo", "restart")


def loop_indices(num_frames: int, clip_len: int, step: float, start: int, wrap: str = "modulo") -> np.ndarray:
    """Frames ``start + floor(k * step)``, k = 0..clip_len-1, looped over a video of ``num_frames``.

    ``wrap="modulo"``: continue modulo ``num_frames`` (the MM 2024 paper's example: 30 frames, start
    at frame 20 (1-based), 2x: 20, 22, ..., 30, 2, 4, ...). ``wrap="restart"``: when the next index
    would reach ``num_frames``, start again at frame 0 with the same stride (the released code,
    ``getLoopRgbIdx``: 0-based 19, 21, ..., 29, 0, 2, 4, ...).
    """
    n, start = int(num_frames), int(start)
    if n < 1 or not 0 <= start < n:
        raise ConfigError(f"start frame {start} is outside a video of {n} frames", "this is a bug in the caller")
    k = np.arange(int(clip_len))
    if wrap == "modulo":
        return np.mod(start + np.floor(k * step).astype(np.int64), n)
    if wrap != "restart":
        raise ConfigError(f"unknown pace wrap rule {wrap!r}", f"use one of {', '.join(PACE_WRAPS)}")
    first = int(np.ceil((n - start) / step))  # indices before the first restart
    cycle = int(np.ceil(n / step))             # indices per pass from frame 0
    again = np.floor(np.mod(k - first, cycle) * step).astype(np.int64)
    return np.where(k < first, start + np.floor(k * step).astype(np.int64), again)


def pace_indices(num_frames: int, clip_len: int, pace: float, rng: np.random.Generator, train: bool,
                 base_interval: int = 1, start: str = "fit", wrap: str = "modulo") -> np.ndarray:
    """Indices of one clip of ``clip_len`` frames played at ``pace`` (x base interval); loops if short.

    ``start="fit"`` (default): in training a start uniform over the positions where the whole clip
    fits (0 when it cannot), so it loops only in videos that are too short; ``start="any"``: uniform
    over all ``num_frames`` frames (the MM 2024 rule, paper and code), so clips from late starts
    wrap. In evaluation the start is the centred "fit" position for both. ``wrap``: see
    :func:`loop_indices` (``"modulo"`` default).
    """
    if start not in PACE_STARTS:
        raise ConfigError(f"unknown pace start rule {start!r}", f"use one of {', '.join(PACE_STARTS)}")
    step = pace * base_interval
    span = int(np.floor((clip_len - 1) * step)) + 1
    max_start = max(num_frames - span, 0)
    if not train:
        first = max_start // 2
    elif start == "any":
        first = int(rng.integers(0, num_frames))
    else:
        first = int(rng.integers(0, max_start + 1))
    return loop_indices(num_frames, clip_len, step, first, wrap)


@register_view("pace")
def pace_view(paces: Sequence[float] = (1, 2, 3, 4), start: str = "fit", wrap: str = "modulo") -> Callable:
    paces = [float(p) for p in paces]
    if not paces or min(paces) <= 0:
        raise ConfigError(f"paces {paces} must be positive numbers", "e.g. paces=[1, 2, 3, 4]")
    if start not in PACE_STARTS or wrap not in PACE_WRAPS:
        raise ConfigError(f"pace view start={start!r}, wrap={wrap!r} is not a known rule",
                          f"use start in {PACE_STARTS} and wrap in {PACE_WRAPS}")

    def view(ctx) -> dict:
        label = int(ctx.rng.integers(0, len(paces)))
        clip_len = int(getattr(ctx.sampler, "clip_len", ctx.indices.shape[-1]))
        base = int(getattr(ctx.sampler, "frame_interval", 1))
        idx = pace_indices(ctx.num_frames, clip_len, paces[label], ctx.rng, ctx.train, base, start, wrap)
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


__all__ = ["VIEWS", "register_view", "build_views", "pace_view", "shuffled_view", "frozen_view", "pace_indices",
           "loop_indices", "PACE_STARTS", "PACE_WRAPS"]
