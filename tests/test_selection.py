"""Pseudo-label selection policies on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest

from vdgtool.adapt.selection import top_per_class
from vdgtool.errors import ConfigError


def test_top_per_class_keeps_the_most_confident_per_class():
    pred = np.array([0, 0, 0, 1, 1, 2, 0])
    conf = np.array([0.5, 0.9, 0.7, 0.4, 0.8, 0.3, 0.9])
    assert top_per_class(pred, conf, 2).tolist() == [1, 3, 4, 5, 6]
    assert top_per_class(pred, conf, 1).tolist() == [1, 4, 5]
    assert top_per_class(pred, conf, 10).tolist() == list(range(7))


def test_top_per_class_refuses_bad_input():
    with pytest.raises(ConfigError):
        top_per_class(np.array([0, 1]), np.array([0.1]), 1)
    with pytest.raises(ConfigError):
        top_per_class(np.array([0]), np.array([0.1]), 0)
    assert top_per_class(np.array([], int), np.array([]), 3).size == 0
