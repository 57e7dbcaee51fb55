"""Datasets over clip / flow stores, and clip samplers. See docs/data.md."""

from vdgtool.data.dataset import (ClipDataset, ViewContext, align_classes, build_dataset, build_for_inputs,
                                  collate_views,
                                  read_pseudo_labels)
from vdgtool.data.samplers import (SAMPLERS, ClipSampler, DenseSampler, UniformSampler, build_sampler,
                                   register_sampler)
from vdgtool.data.views import VIEWS, build_views, register_view

__all__ = ["ClipDataset", "ViewContext", "build_dataset", "build_for_inputs", "align_classes", "collate_views", "read_pseudo_labels",
           "SAMPLERS", "ClipSampler", "DenseSampler", "UniformSampler", "build_sampler", "register_sampler",
           "VIEWS", "build_views", "register_view"]
