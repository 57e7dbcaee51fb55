"""vdgtool plot curves / features and the per-class bar chart: the PNGs show what their titles say."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from vdgtool.stores.table import TableStoreWriter  # noqa: E402

CLASSES = ["left", "right", "up"]


def _png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.size


def _run(d, losses, src, tgt):
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"method": d.name, "seed": 0}))
    with open(d / "results.jsonl", "w") as f:
        for e, (l, s, t) in enumerate(zip(losses, src, tgt)):
            f.write(json.dumps({"epoch": e, "train_loss": l, "val": {"real_val": {"top1": s}, "anim": {"top1": t}}})
                    + "\n")
            f.write(json.dumps({"event": "bank_fill", "step": e, "fill": 0.1}) + "\n")
    return str(d)


def _feature_store(path, domain, shift, n_per_class=20, seed=0):
    """Three well-separated class clusters; the domain moves every cluster by ``shift``."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 16) * 6.0
    f, lab = [], []
    for c in range(3):
        f.append(centres[c] + shift + rng.normal(0, 0.5, (n_per_class, 16)))
        lab += [c] * n_per_class
    f = np.concatenate(f).astype(np.float16)
    n = len(f)
    with TableStoreWriter(str(path), "features", classes=CLASSES, domains=[domain]) as w:
        w.append({"features": f}, key=[f"{domain}/{i}" for i in range(n)], video=np.arange(n),
                 clip=np.zeros(n, np.int32), label=np.array(lab), domain=np.zeros(n, np.int32))
    return str(path)


def test_curves_png(tmp_path, run_cli):
    a = _run(tmp_path / "seed0" / "erm", [1.3, 0.9, 0.6, 0.5], [0.4, 0.6, 0.8, 0.85], [0.3, 0.35, 0.4, 0.42])
    b = _run(tmp_path / "seed0" / "drl-freeze", [1.2, 1.0, 0.8, 0.7], [0.5, 0.6, 0.7, 0.8], [0.3, 0.45, 0.5, 0.6])
    out = tmp_path / "curves.png"
    code, o, err = run_cli("plot", "curves", a, b, "-o", out, "--json")
    assert code == 0, err
    res = json.loads(o)
    assert res["stores"] == ["real_val", "anim"] and res["epochs"] == [4, 4]
    w, h = _png_size(out)
    assert w > 1000 and h > 400  # two panels side by side


def test_embedding_keeps_clusters_apart(tmp_path):
    from vdgtool.evaluate.plots import embed, load_features

    d = load_features([_feature_store(tmp_path / "a.h5", "real", 0.0), _feature_store(tmp_path / "b.h5", "anim", 0.5)])
    y = np.array([CLASSES.index(c) for c in d["class"]])
    for method in ("tsne", "pca"):
        if method == "tsne":
            pytest.importorskip("sklearn")
        xy = embed(d["features"], method, seed=0)
        assert xy.shape == (120, 2)
        # leave-one-out nearest neighbour in 2-D recovers the class: the structure survived the embedding
        dist = ((xy[:, None] - xy[None]) ** 2).sum(-1)
        np.fill_diagonal(dist, np.inf)
        assert (y[dist.argmin(1)] == y).mean() > 0.95, method


def test_features_png_by_domain_and_class(tmp_path, run_cli):
    pytest.importorskip("sklearn")
    a = _feature_store(tmp_path / "real_feats.h5", "real", 0.0)
    b = _feature_store(tmp_path / "anim_feats.h5", "animated", 2.0, seed=1)
    out = tmp_path / "tsne.png"
    code, o, err = run_cli("plot", "features", a, b, "--by", "domain", "-o", out, "--json", "--max-points", "100")
    assert code == 0, err
    res = json.loads(o)
    assert res["groups"] == ["animated", "real"] and res["points"] == 100 and res["stores"] == ["real_feats",
                                                                                                  "anim_feats"]
    assert _png_size(out)[0] > 500
    code, o, err = run_cli("plot", "features", a, "--by", "class", "--embedding", "pca", "-o",
                           tmp_path / "pca.png", "--json")
    assert code == 0 and json.loads(o)["groups"] == CLASSES


def test_per_class_bars(tmp_path):
    from vdgtool.evaluate.plots import plot_per_class

    per_class = {"left": {"n": 16, "score": 0.9}, "right": {"n": 16, "score": 0.3}, "up": {"n": 8, "score": 0.55},
                 "empty": {"n": 0, "score": None}}
    out = plot_per_class(per_class, str(tmp_path / "pc.png"), title="freeze score per class",
                         xlabel="score (nats)", reference=0.6)
    assert _png_size(out)[1] >= 250
    from vdgtool.errors import InputError

    with pytest.raises(InputError):
        plot_per_class({"a": {"score": None}}, str(tmp_path / "x.png"))


def test_score_plot_writes_the_per_class_chart(tmp_path, run_cli):
    """`vdgtool score --plot`: the per-class bar chart of the dynamic score, named in the JSON result."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_score import _ckpt, _store

    data, ck = _store(tmp_path / "d.h5"), _ckpt(tmp_path / "c.pt")
    code, o, err = run_cli("score", "--method", "freeze", ck, "--data", data, "--plot", tmp_path / "pc.png", "--json")
    assert code == 0, err
    res = json.loads(o)
    assert res["plot_png"] == str(tmp_path / "pc.png") and _png_size(res["plot_png"])[1] >= 250
    assert set(res["per_class"]) == {"a", "b", "c"}
