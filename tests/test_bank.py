"""The category-aware flow memory bank (vdgtool.adapt.bank): known answers on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vdgtool.adapt.bank import FlowBank, fuse_scores
from vdgtool.errors import CheckpointError, ConfigError

# 8 target videos, 3 classes: hand-made fused scores (rows sum to 2 like softmax_rgb + softmax_flow)
SCORES = np.array([
    [1.2, 0.5, 0.3],   # v0 -> class 0, conf 1.2
    [1.6, 0.2, 0.2],   # v1 -> 0, 1.6
    [1.2, 0.4, 0.4],   # v2 -> 0, 1.2 (ties v0: the earlier video ranks first)
    [0.1, 1.8, 0.1],   # v3 -> 1, 1.8
    [1.9, 0.05, 0.05], # v4 -> 0, 1.9
    [0.6, 0.9, 0.5],   # v5 -> 1, 0.9
    [0.5, 0.7, 0.8],   # v6 -> 2, 0.8
    [0.3, 1.0, 0.7],   # v7 -> 1, 1.0
])
KEYS = [f"hmdb/clap/v{i}.avi" for i in range(8)]
TRUTH = [0, 0, 1, 1, 0, 2, 2, 1]


def bank(n=2, classes=3):
    b = FlowBank(classes, n, view_spec={"frames": 16, "source_frames": 32, "every": 2, "crop": "centre"})
    b.rebuild(SCORES, KEYS, true_labels=TRUTH)
    return b


def keys(entries):
    return [e.key.rsplit("/", 1)[1][:-4] for e in entries]


def test_fuse_scores_per_time_softmax_sum_then_time_mean():
    # stream RGB: time step 0 softmax (0.25, 0.75), step 1 (0.5, 0.5); flow: (0.5, 0.5) at both steps
    z_rgb = torch.tensor([[[0.0, 0.0], [np.log(3.0), 0.0]]])  # (N=1, C=2, T=2)
    z_flow = torch.zeros(1, 2, 2)
    np.testing.assert_allclose(fuse_scores(z_rgb, z_flow), [[0.875, 1.125]], atol=1e-7)
    np.testing.assert_allclose(fuse_scores(np.zeros((3, 4)), np.zeros((3, 4))), np.full((3, 4), 0.5))
    with pytest.raises(ConfigError, match="cannot be fused"):
        fuse_scores(np.zeros((2, 3)), np.zeros((2, 4)))


def test_rebuild_keeps_top_n_per_predicted_class():
    b = bank(n=2)
    assert keys(b.entries(0)) == ["v4", "v1"]          # 1.9, 1.6 (v0, v2 at 1.2 dropped)
    assert keys(b.entries(1)) == ["v3", "v7"]          # 1.8, 1.0 (v5 at 0.9 dropped)
    assert keys(b.entries(2)) == ["v6"]                # fewer than N predicted: keeps all
    assert [e.confidence for e in b.entries(0)] == [1.9, 1.6] and all(e.label == 0 for e in b.entries(0))
    assert b.entries(1)[0].index == 3 and b.entries(1)[0].view == 0
    b3 = bank(n=3)
    assert keys(b3.entries(0)) == ["v4", "v1", "v0"]   # the tie 1.2 goes to the earlier video, as the heap
    # a class nobody predicts stays empty; a rebuild starts from scratch
    b.rebuild(np.array([[2.0, 0.0, 0.0], [1.5, 0.5, 0.0]]), ["a", "b"])
    assert b.fill() == [2, 0, 0] and [e.key for e in b.entries(0)] == ["a", "b"]
    assert b.stats()["empty_classes"] == 2 and b.stats()["builds"] == 2
    with pytest.raises(ConfigError, match="expected"):
        b.rebuild(np.zeros((2, 4)), ["a", "b"])
    with pytest.raises(ConfigError, match="keys"):
        b.rebuild(SCORES, KEYS[:3])


def test_fill_and_purity_are_diagnostics_against_true_labels():
    st = bank(n=2).stats()
    assert st["fill"] == [2, 2, 1] and st["entries"] == 5
    # class 0: v4, v1 both truly 0; class 1: v3 (1), v7 (1); class 2: v6 (2)
    assert st["purity"] == [1.0, 1.0, 1.0] and st["overall_purity"] == 1.0
    # all 8 pseudo-labels: v2 (pred 0, true 1) and v5 (pred 1, true 2) are wrong -> 6/8, the bank is purer
    assert st["pseudo_label_accuracy"] == pytest.approx(0.75)
    b = bank(n=3)
    assert b.stats()["purity"][0] == pytest.approx(1.0) and b.stats()["purity"][1] == pytest.approx(2 / 3)
    blind = FlowBank(3, 2)
    blind.rebuild(SCORES, KEYS)  # no true labels: no purity, same entries
    assert blind.stats()["purity"] == [None, None, None] and blind.stats()["pseudo_label_accuracy"] is None
    assert [keys(blind.entries(c)) for c in range(3)] == [keys(bank(n=2).entries(c)) for c in range(3)]


def test_retrieval_returns_entries_of_the_requested_class():
    b = bank(n=3)
    labels = np.array([0, 1, 2, 0, 1])
    for mode in ("random", "top-k"):
        got = b.retrieve(labels, np.random.default_rng(0), mode=mode, k=2)
        assert [len(g) for g in got] == [1] * 5 and [g[0].label for g in got] == labels.tolist()
    mean = b.retrieve(torch.tensor([1, 2]), torch.Generator().manual_seed(0), mode="mean")
    assert keys(mean[0]) == ["v3", "v7", "v5"] and keys(mean[1]) == ["v6"]
    # random: uniform over the class's entries, with replacement, independent per sample
    draws = b.retrieve(np.zeros(3000, int), np.random.default_rng(1))
    share = {k: sum(d[0].key.endswith(f"{k}.avi") for d in draws) / 3000 for k in ("v4", "v1", "v0")}
    assert all(0.3 < v < 0.37 for v in share.values()), share
    # top-k: only the k most confident
    top = b.retrieve(np.zeros(300, int), np.random.default_rng(2), mode="top-k", k=2)
    assert {d[0].key for d in top} == {KEYS[4], KEYS[1]}
    # the same seed gives the same draws, for numpy and torch generators alike
    assert b.retrieve(labels, torch.Generator().manual_seed(5)) == b.retrieve(labels, torch.Generator().manual_seed(5))
    with pytest.raises(ConfigError, match="outside"):
        b.retrieve([3], np.random.default_rng(0))
    with pytest.raises(ConfigError, match="retrieval"):
        b.retrieve([0], np.random.default_rng(0), mode="median")
    with pytest.raises(ConfigError, match="generator"):
        b.retrieve([0], 7)


def test_empty_class_keeps_its_own_flow_and_draws_stay_aligned():
    b = FlowBank(3, 2)
    b.rebuild(np.array([[1.5, 0.5, 0.0], [0.2, 1.8, 0.0]]), ["a", "b"])
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    got = b.retrieve([2, 0, 2, 1], g1)
    assert got[0] == () and got[2] == () and got[1][0].key == "a" and got[3][0].key == "b"
    assert b.retrieve([2], g1, mode="mean") == [()]
    # one uniform per sample whatever the bank holds: the random stream does not depend on its contents
    g2.random(5)
    assert g1.random() == g2.random()
    assert FlowBank(3, 2).retrieve([0, 1], np.random.default_rng(0)) == [(), ()]


def test_state_round_trips_exactly_with_weights_only(tmp_path):
    b = bank(n=2)
    path = tmp_path / "ckpt.pt"
    torch.save({"method_state": {"bank": b.state_dict()}}, path)
    state = torch.load(path, weights_only=True)["method_state"]["bank"]
    c = FlowBank(3, 2)
    c.load_state_dict(state)
    assert c.state_dict() == b.state_dict() and c.stats() == b.stats() and c.view_spec["every"] == 2
    assert [c.entries(k) for k in range(3)] == [b.entries(k) for k in range(3)]
    labels = [0, 1, 2, 0, 0, 1]
    assert c.retrieve(labels, np.random.default_rng(4)) == b.retrieve(labels, np.random.default_rng(4))
    empty = FlowBank(3, 2)
    empty.load_state_dict(FlowBank(3, 2).state_dict())
    assert len(empty) == 0
    with pytest.raises(CheckpointError, match="N=2"):
        FlowBank(3, 5).load_state_dict(state)
    with pytest.raises(CheckpointError, match="damaged"):
        FlowBank(3, 2).load_state_dict({**state, "labels": state["labels"][:-1]})


def test_permuted_bank_and_sizes():
    b = bank(n=2)
    p = b.permuted([2, 0, 1])  # class 0 now holds the entries of class 2, ...
    assert keys(p.entries(0)) == ["v6"] and keys(p.entries(1)) == ["v4", "v1"]
    assert all(e.label == 1 for e in p.entries(1)) and keys(b.entries(0)) == ["v4", "v1"]
    with pytest.raises(ConfigError, match="permutation"):
        b.permuted([0, 0, 1])
    # a reference costs its key plus five numbers, against 6.4 MB for the release's flow tensor
    assert b.nbytes() == sum(len(k) + 40 for k in (KEYS[4], KEYS[1], KEYS[3], KEYS[7], KEYS[6]))
    assert 0 < b.python_nbytes() < 5000
    with pytest.raises(ConfigError, match="capacity"):
        FlowBank(3, 0)
