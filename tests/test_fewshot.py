"""Few-shot evaluation as the DRL release runs it: episodes and queries as asked, every clip of a support
video its own example, query logits averaged over clips, SGD on raw features; `eval --few-shot --clips`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vdgtool.evaluate.fewshot import few_shot, make_episodes, solve_episodes

torch.set_num_threads(1)


def _features(n_classes=6, per_class=12, views=1, dim=16, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    centers = rng.normal(size=(n_classes, dim)) * 5
    f = centers[labels][:, None] + rng.normal(size=(len(labels), views, dim)) * noise
    return (f[:, 0] if views == 1 else f), labels, [f"k{i}" for i in range(len(labels))]


def test_episode_and_query_counts_follow_the_options():
    _, labels, keys = _features()
    names = [str(i) for i in range(6)]
    eps = make_episodes(keys, labels, names, ways=4, shots=2, queries=3, episodes=7, seed=1)
    assert len(eps) == 7
    for ep in eps:
        assert len(ep["support"]) == 4 and len(ep["query"]) == 4 and len(set(ep["classes"])) == 4
        assert all(len(s) == 2 for s in ep["support"]) and all(len(q) == 3 for q in ep["query"])
        for s, q in zip(ep["support"], ep["query"]):
            assert not set(s) & set(q)  # support and query videos are disjoint
    assert make_episodes(keys, labels, names, ways=4, shots=2, queries=3, episodes=7, seed=1) == eps
    with pytest.raises(Exception, match="classes have"):
        make_episodes(keys, labels, names, ways=4, shots=6, queries=7, episodes=2, seed=0)


@pytest.mark.parametrize("solver", ["release", "fast"])
def test_separable_features_are_solved_by_both_solvers(solver):
    feats, labels, keys = _features(views=3)
    r = few_shot(feats, keys, labels, [str(i) for i in range(6)], ways=5, shots=1, queries=5, episodes=10,
                 solver=solver, epochs=20)
    assert r["acc"] == pytest.approx(1.0) and r["views"] == 3 and r["solver"] == solver
    assert (r["episodes"], r["queries"]) == (10, 5)


def test_every_view_is_a_support_example_and_query_views_are_averaged():
    """The first view of every video is the same for both classes; only the second view tells them apart.
    Training on every view and averaging a query's view logits separates them; the first view alone cannot."""
    rng = np.random.default_rng(0)
    d, per = 8, 6
    a, b, c = (np.eye(d)[i] * 4 for i in range(3))
    f0 = np.stack([np.stack([a, b]) for _ in range(per)])
    f1 = np.stack([np.stack([a, c]) for _ in range(per)])
    feats = np.concatenate([f0, f1]) + rng.normal(size=(2 * per, 2, d)) * 0.05
    labels = np.repeat([0, 1], per)
    keys = [f"v{i}" for i in range(2 * per)]
    pos = {k: i for i, k in enumerate(keys)}
    eps = make_episodes(keys, labels, ["0", "1"], ways=2, shots=1, queries=2, episodes=6, seed=0)
    acc = solve_episodes(feats, pos, eps, epochs=30)
    assert acc.shape == (6,) and acc.mean() == pytest.approx(1.0)
    assert solve_episodes(feats[:, 0], pos, eps, epochs=30).mean() <= 0.75  # (N, D): one view, near chance


def test_cli_few_shot_honours_clips_episodes_and_queries(tmp_path, run_cli):
    from vdgtool.models import create_model
    from vdgtool.stores import VideoStoreWriter
    from vdgtool.train.checkpoint import save_checkpoint

    classes = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    store = str(tmp_path / "s.h5")
    with VideoStoreWriter(store, classes=classes, conventions={"size": 32}, encoding="raw") as w:
        for k in range(9):
            fr = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
            fr[..., k % 3] = 200
            w.add_video(f"v{k}", fr, index=k, label=k % 3, domain="real", fps=8)
    m = create_model("test_c3d", num_classes=3)
    ck = str(tmp_path / "c.pt")
    save_checkpoint(ck, {"model": m.state_dict(), "config": {"model": "test_c3d", "class_names": classes,
                                                              "input_spec": m.input_spec.to_dict(), "model_kwargs": {},
                                                              "val": [store]}})
    code, out, err = run_cli("eval", ck, "--few-shot", "--ways", "3", "--shots", "1", "--queries", "2",
                             "--episodes", "4", "--clips", "2", "--json")  # no --data: the recorded store
    assert code == 0, err
    (r,) = json.loads(out)
    assert (r["episodes"], r["queries"], r["views"], r["num_clips"], r["solver"]) == (4, 2, 2, 2, "release")
    assert r["data"] == [store] and 0 <= r["acc"] <= 1
