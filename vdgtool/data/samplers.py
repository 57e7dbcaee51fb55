"""Clip samplers: which frame indices of one video make a clip.

A sampler is a callable ``sampler(num_frames, rng, train) -> (num_clips, T) int64 array``. The
registry :data:`SAMPLERS` maps a name (a model spec's ``sampler`` field) to a factory
``factory(spec, num_clips=..., **options) -> sampler``; :func:`register_sampler` adds one.

Semantics follow mmaction2 so numbers are comparable with published recipes:

* ``dense`` = ``SampleFrames(clip_len=T, frame_interval=k, num_clips=n)``. Train: the video is cut
  into ``n`` equal spans of valid start positions and each clip starts at a random position in its
  span (``n=1``: one uniformly random start). Test: ``n=1`` takes the centre clip, ``n>1`` takes
  ``n`` clips evenly spaced from the first to the last valid start (the PySlowFast / mmaction2 1.x
  rule). Indices past the end wrap around (``out_of_bound="loop"``, mmaction2's default) or repeat
  the last frame (``"repeat_last"``).
* ``uniform`` = TSN segments: the video is cut into ``T`` equal segments (float boundaries) and one
  frame is taken from each: a random frame in train, the segment centre in test. With ``n`` test
  clips, clip ``j`` takes the frame at fraction ``(j + 0.5) / n`` of every segment. A video shorter
  than ``T`` frames repeats frames in order.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from vdgtool.data.spec import spec_get
from vdgtool.errors import ConfigError

OUT_OF_BOUND = ("loop", "repeat_last")


class ClipSampler:
    """Base class (optional: any callable with this signature works)."""

    num_clips: int = 1
    clip_len: int = 1

    def __call__(self, num_frames: int, rng: np.random.Generator, train: bool) -> np.ndarray:
        raise NotImplementedError

    @property
    def span(self) -> int:
        """Frames covered by one clip (for a pace view: how long a clip is in the source video)."""
        return self.clip_len


def _check_num_frames(num_frames: int) -> int:
    n = int(num_frames)
    if n < 1:
        raise ConfigError("cannot sample a clip from a video with no frames",
                          "re-extract the store; vdgtool extract records empty videos as errors")
    return n


@dataclasses.dataclass(frozen=True)
class DenseSampler(ClipSampler):
    """``clip_len`` consecutive frames, ``frame_interval`` apart (mmaction2 SampleFrames)."""

    clip_len: int
    frame_interval: int = 1
    num_clips: int = 1
    out_of_bound: str = "loop"

    def __post_init__(self):
        if self.clip_len < 1 or self.frame_interval < 1 or self.num_clips < 1:
            raise ConfigError(f"dense sampler needs clip_len, frame_interval, num_clips >= 1, got "
                              f"{self.clip_len}, {self.frame_interval}, {self.num_clips}", "fix the spec / options")
        if self.out_of_bound not in OUT_OF_BOUND:
            raise ConfigError(f"unknown out_of_bound '{self.out_of_bound}'", f"use one of {', '.join(OUT_OF_BOUND)}")

    @property
    def span(self) -> int:
        return self.clip_len * self.frame_interval

    def offsets(self, num_frames: int, rng: np.random.Generator, train: bool) -> np.ndarray:
        n, span, k = num_frames, self.span, self.num_clips
        if train:
            avg = (n - span + 1) // k
            if avg > 0:
                return np.arange(k) * avg + rng.integers(0, avg, size=k)
            if n > max(k, span):
                return np.sort(rng.integers(0, n - span + 1, size=k))
            if avg == 0:
                return np.around(np.arange(k) * ((n - span + 1) / k)).astype(np.int64)
            return np.zeros(k, dtype=np.int64)
        max_offset = max(n - span, 0)
        if k == 1:
            return np.array([max_offset // 2])
        return np.round(np.arange(k) * (max_offset / (k - 1))).astype(np.int64)

    def __call__(self, num_frames: int, rng: np.random.Generator, train: bool) -> np.ndarray:
        n = _check_num_frames(num_frames)
        starts = self.offsets(n, rng, train).astype(np.int64)
        inds = starts[:, None] + np.arange(self.clip_len, dtype=np.int64)[None, :] * self.frame_interval
        if self.out_of_bound == "loop":
            return np.mod(inds, n)
        # repeat_last: every index past the end becomes the clip's last valid frame
        safe = inds < n
        last = np.max(np.where(safe, inds, -1), axis=1, keepdims=True)
        last = np.where(last < 0, n - 1, last)
        return np.where(safe, inds, last)


@dataclasses.dataclass(frozen=True)
class UniformSampler(ClipSampler):
    """TSN segment sampling: one frame from each of ``num_segments`` equal segments."""

    num_segments: int
    num_clips: int = 1

    def __post_init__(self):
        if self.num_segments < 1 or self.num_clips < 1:
            raise ConfigError(f"uniform sampler needs num_segments, num_clips >= 1, got "
                              f"{self.num_segments}, {self.num_clips}", "fix the spec / options")

    @property
    def clip_len(self) -> int:  # type: ignore[override]
        return self.num_segments

    @property
    def span(self) -> int:
        return self.num_segments

    def __call__(self, num_frames: int, rng: np.random.Generator, train: bool) -> np.ndarray:
        n = _check_num_frames(num_frames)
        t, k = self.num_segments, self.num_clips
        seg = n / t
        lo = np.floor(np.arange(t) * seg).astype(np.int64)
        if train:
            hi = np.maximum(np.floor(np.arange(1, t + 1) * seg).astype(np.int64), lo + 1)
            inds = lo[None, :] + np.floor(rng.random((k, t)) * (hi - lo)[None, :]).astype(np.int64)
        else:
            frac = (np.arange(k) + 0.5) / k
            inds = np.floor((np.arange(t)[None, :] + frac[:, None]) * seg).astype(np.int64)
        return np.clip(inds, 0, n - 1)


#: name -> factory(spec, num_clips=1, **options) -> sampler
SAMPLERS: dict[str, Callable[..., Any]] = {}


def register_sampler(name: str, factory: Callable[..., Any] | None = None):
    """Register ``factory(spec, num_clips=1, **options) -> sampler`` under ``name`` (usable as a decorator)."""

    def deco(fn):
        SAMPLERS[name] = fn
        return fn

    return deco(factory) if factory is not None else deco


@register_sampler("dense")
def _dense(spec, num_clips: int = 1, out_of_bound: str = "loop", frame_interval: int | None = None) -> DenseSampler:
    interval = frame_interval if frame_interval is not None else spec_get(spec, "frame_interval")
    return DenseSampler(int(spec_get(spec, "num_frames")), int(interval or 1), int(num_clips), out_of_bound)


@register_sampler("uniform")
def _uniform(spec, num_clips: int = 1, out_of_bound: str = "loop") -> UniformSampler:
    # TSN segments never run past the end of a video (a short one repeats frames in order), so the dense
    # sampler's out_of_bound is accepted (one option for every model) and has nothing to do here
    if out_of_bound not in OUT_OF_BOUND:
        raise ConfigError(f"unknown out_of_bound '{out_of_bound}'", f"use one of {', '.join(OUT_OF_BOUND)}")
    return UniformSampler(int(spec_get(spec, "num_frames")), int(num_clips))


def build_sampler(spec: Any, train: bool, num_clips: int = 1, **options) -> ClipSampler:
    """The sampler a model spec asks for (``spec.sampler``), with ``num_clips`` clips per video.

    ``train`` is accepted for symmetry with :func:`build_transform`; the dataset passes its own
    ``train`` flag at call time, so one sampler serves both.
    """
    name = str(spec_get(spec, "sampler"))
    if name not in SAMPLERS:
        raise ConfigError(f"unknown clip sampler '{name}'", f"use one of {', '.join(sorted(SAMPLERS))} "
                          "or register one with vdgtool.data.register_sampler")
    return SAMPLERS[name](spec, num_clips=num_clips, **options)
