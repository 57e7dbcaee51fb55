"""A small plain 3D CNN (C3D-style): the quickstart/demo model and the fastest test model."""

from __future__ import annotations

import torch
from torch import nn

from vdgtool.errors import ConfigError
from vdgtool.models.base import VideoModel
from vdgtool.models.registry import IMAGENET_MEAN, IMAGENET_STD, InputSpec, register_model


def _unit(cin: int, cout: int, stride) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class C3DSmall(VideoModel):
    """Four 3x3x3 conv-BN-ReLU stages. Time is kept at full resolution in the first two stages so that
    the temporal kernels see frame-to-frame motion; global average pooling; linear classifier."""

    def __init__(self, num_classes: int, in_channels: int = 3, widths=(12, 24, 48, 96), dropout: float = 0.0):
        super().__init__()
        if len(widths) != 4:
            raise ConfigError(f"C3D needs 4 stage widths, got {widths}", "pass widths=(w1, w2, w3, w4)")
        self.in_channels = in_channels
        strides = [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)]
        chans = [in_channels, *widths]
        self.features = nn.Sequential(*[_unit(chans[i], chans[i + 1], strides[i]) for i in range(4)])
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.num_features = widths[-1]
        self.head_drop = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.num_classes = num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.pool(self.features(x)).flatten(1)


@register_model("test_c3d", family="c3d",
                input_spec=InputSpec(8, 48, mean=IMAGENET_MEAN, std=IMAGENET_STD, frame_interval=1))
def test_c3d(num_classes, *, pretrained=False, input_spec=None, dropout=0.0, widths=(12, 24, 48, 96)):
    """Tiny 3D CNN (~0.17M params, 8 x 48 px) that learns motion in seconds on a CPU: the demo model."""
    if pretrained:
        raise ConfigError("test_c3d has no pretrained weights", "drop --pretrained")
    return C3DSmall(num_classes, input_spec.in_channels, tuple(widths), dropout)
