"""Pseudo-label selection policies on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest

from vdgtool.adapt.selection import confidence, parse_schedule, schedule_value, select, top_per_class
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


# -- select: threshold, balance, accumulation on a hand-made pool --------------------------------------
P = np.array([
    [0.95, 0.03, 0.02],  # 0: class 0, conf .95
    [0.90, 0.05, 0.05],  # 1: class 0, .90
    [0.60, 0.30, 0.10],  # 2: class 0, .60
    [0.10, 0.85, 0.05],  # 3: class 1, .85
    [0.05, 0.92, 0.03],  # 4: class 1, .92
    [0.20, 0.20, 0.60],  # 5: class 2, .60
    [0.97, 0.02, 0.01],  # 6: class 0, .97
    [0.45, 0.45, 0.10],  # 7: class 0 (the first maximum), .45
])


def test_select_threshold_and_counts():
    s = select(P, threshold=0.9)
    assert s.indices.tolist() == [0, 1, 4, 6]
    assert s.labels.tolist() == [0, 0, 1, 0]
    np.testing.assert_allclose(s.conf, [0.95, 0.90, 0.92, 0.97])
    assert s.counts.tolist() == [3, 1, 0] and s.predicted.tolist() == [5, 2, 1] and s.above.tolist() == [3, 1, 0]
    assert s.coverage == 0.5 and len(s) == 4
    assert select(P, threshold=0.0).indices.tolist() == list(range(8))
    assert len(select(P, threshold=0.99)) == 0


def test_select_balance_rules():
    # fraction: per class the top ceil(q * n_k) of the thresholded set, n_k = pool rows predicted k = (5, 2, 1)
    assert select(P, threshold=0.9, balance="fraction", fraction=0.4).indices.tolist() == [0, 4, 6]
    assert select(P, threshold=0.5, balance="fraction", fraction=0.2).indices.tolist() == [4, 5, 6]
    # tau = 0 with fraction = 1 keeps the whole pool (training on every row, labelled by the predictions)
    assert select(P, threshold=0.0, balance="fraction", fraction=1.0).indices.tolist() == list(range(8))
    # cap: at most ceil(cap_factor * |S| / K) per class; |S| = 4, K = 3
    assert select(P, threshold=0.9, balance="cap").indices.tolist() == [0, 4, 6]                 # 2 per class
    assert select(P, threshold=0.9, balance="cap", cap_factor=0.5).indices.tolist() == [4, 6]    # 1 per class
    assert select(P, threshold=0.9, top_per_class=1).indices.tolist() == [4, 6]
    assert select(P, threshold=0.5, balance="cap", cap_factor=3.0, top_per_class=2).indices.tolist() == [0, 3, 4, 5, 6]
    # 0.2 * 10 is 2 (not ceil(2.0000000000000004) = 3)
    ten = np.tile([[0.9, 0.1]], (10, 1))
    assert len(select(ten, threshold=0.5, balance="fraction", fraction=0.2)) == 2
    # equal scores in a full class keep the earlier rows
    assert select(ten, threshold=0.5, top_per_class=3).indices.tolist() == [0, 1, 2]


def test_select_scores():
    m = select(P, threshold=0.86, score="margin")  # margins .92 .85 .30 .75 .87 .40 .95 .00
    assert m.indices.tolist() == [0, 4, 6]
    np.testing.assert_allclose(m.conf, [0.92, 0.87, 0.95])
    np.testing.assert_allclose(confidence([[1.0, 0, 0], [1 / 3, 1 / 3, 1 / 3]], "entropy"), [1.0, 0.0], atol=1e-12)
    ent = confidence(P, "entropy")
    h = -(P * np.log(P)).sum(1)
    assert np.argsort(-ent, kind="stable").tolist() == np.argsort(h, kind="stable").tolist()  # the ranking of -H
    assert select(P, threshold=0.5, score="entropy").indices.tolist() == np.flatnonzero(1 - h / np.log(3) >= 0.5).tolist()


def test_select_accumulates_with_labels_from_the_newest_prediction():
    old = select(P, threshold=0.9)
    newer = P[:, [1, 0, 2]]  # the model changed its mind: classes 0 and 1 swap
    s = select(newer, threshold=0.9, previous=[2, 5])
    assert s.indices.tolist() == [0, 1, 2, 4, 5, 6]
    assert s.labels.tolist() == [1, 1, 1, 0, 2, 1]
    np.testing.assert_allclose(s.conf, [0.95, 0.90, 0.60, 0.92, 0.60, 0.97])
    assert select(P, threshold=0.95, previous=old).indices.tolist() == [0, 1, 4, 6]
    assert s.rule["accumulated_from"] == 2


def test_selection_summary_precision_is_a_diagnostic():
    s = select(P, threshold=0.9)
    d = s.summary(["a", "b", "c"], true_labels=[0, 1, 0, 1, 1, -1, 0, 2])
    assert d["n_selected"] == 4 and d["coverage"] == 0.5 and d["precision"] == 0.75
    assert [r["selected"] for r in d["per_class"]] == [3, 1, 0]
    assert [r["precision"] for r in d["per_class"]] == [pytest.approx(2 / 3), 1.0, None]
    assert "diagnostic" in d["precision_note"]
    assert s.summary()["precision"] is None


def test_select_refuses_bad_options():
    for kw, msg in [({"threshold": 1.5}, "outside"), ({"balance": "even"}, "unknown balance"),
                    ({"fraction": 0.3}, "no effect"), ({"balance": "fraction"}, "needs a fraction"),
                    ({"balance": "fraction", "fraction": 0.0}, "outside"), ({"score": "max"}, "unknown confidence"),
                    ({"balance": "cap", "cap_factor": 0}, "positive"), ({"top_per_class": 0}, "at least 1"),
                    ({"previous": [8]}, "outside this pool")]:
        with pytest.raises(ConfigError, match=msg):
            select(P, **kw)
    with pytest.raises(ConfigError, match="logits"):
        select(np.log(P), threshold=0.5)
    with pytest.raises(ConfigError, match="matrix"):
        select(np.ones(3))


def test_fraction_schedule():
    sched = parse_schedule("0.2,0.4,0.6")
    assert sched == (0.2, 0.4, 0.6)
    assert [schedule_value(sched, r) for r in (1, 2, 3, 4)] == [0.2, 0.4, 0.6, 0.6]
    assert parse_schedule(0.5) == (0.5,) and parse_schedule([0.1, 1]) == (0.1, 1.0)
    for bad in ("0.2,x", "0,0.5", "1.2"):
        with pytest.raises(ConfigError):
            parse_schedule(bad)
