"""Synthetic videos from still images: depth backends, camera trajectories, forward warping, 2-D baseline.

See docs/synth.md. The library entry point is :func:`vdgtool.synth.pipeline.synth_video`; the
renderer (:mod:`vdgtool.synth.render`) works on torch batches on any device.
"""

from vdgtool.synth.trajectory import PRESETS, get_preset, sample_trajectory

__all__ = ["PRESETS", "get_preset", "sample_trajectory"]
