"""`vdgtool pseudolabel CKPT ...` self-training rounds, eval --class-map, the padding option, --mix balanced."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import colour_store
from vdgtool.errors import ConfigError
from vdgtool.train.config import TrainConfig
from vdgtool.train.engine import BalancedEpochSampler, train

CLASSES = ["a", "b", "c"]
KEY = "{domain}{seed}/v{k}"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("plr")
    st = {"src": colour_store(d / "src.h5", CLASSES, 4, key=KEY), "val": colour_store(d / "val.h5", CLASSES, 2, seed=1, key=KEY),
          "pool": colour_store(d / "pool.h5", CLASSES, 3, seed=2, domain="tgt", key=KEY),
          "test": colour_store(d / "test.h5", CLASSES, 2, seed=3, domain="tgt", key=KEY)}
    erm = d / "erm"
    train(TrainConfig(data=[st["src"]], val=[st["val"]], output=str(erm), model="test_c3d", epochs=2, batch_size=4,
                      lr=0.05, size=32, seed=0))
    st["erm"] = str(erm)
    return st


def _args(data, out, *extra):
    return ["pseudolabel", data["erm"], "--source", data["src"], "--target", data["pool"], "--val", data["val"],
            "--test", data["test"], "-o", str(out), "--round-epochs", "1", "--batch-size", "4", "--views", "2",
            "--seed", "1", "--device", "cpu", *extra]


def _selected_keys(path):
    from vdgtool.adapt.pseudolabel import read_predictions

    t = read_predictions(str(path))
    return list(t.keys), t.probs.argmax(1).tolist()


@pytest.mark.slow
def test_two_rounds_obey_the_policy_repeat_and_resume(data, tmp_path, run_cli):
    out = tmp_path / "pl"
    rule = ("--rounds", "2", "--threshold", "0", "--balance", "fraction", "--fraction", "0.34,0.67")
    code, stdout, err = run_cli(*_args(data, out, *rule))
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("round\tselected") and [ln.split("\t")[0] for ln in lines[1:]] == ["0", "1", "2"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["setting"] == "inductive" and summary["rounds_done"] == 2
    for r, q in ((1, 0.34), (2, 0.67)):
        sel = json.loads((out / f"round{r}" / "selection.json").read_text())
        # τ = 0: within each predicted class the top ceil(q * n_k)
        for c in sel["per_class"]:
            assert c["selected"] == int(np.ceil(q * c["predicted"] - 1e-9)), (r, c)
        assert sel["n_pool"] == 9 and 0.0 <= sel["precision"] <= 1.0
        row = json.loads((out / f"round{r}" / "done").read_text())
        assert row["selected"] == sel["n_selected"] and f"test:{data['test']}" in row and "source_val" in row
        cfg = json.loads((out / f"round{r}" / "train" / "config.json").read_text())
        assert cfg["pseudo"].endswith(f"round{r}/selected.h5") and cfg["epochs"] == 1 and cfg["model"] == "test_c3d"
        assert cfg["init"].endswith("erm" if r == 1 else "round1/train/checkpoints/last.pt")
    # the same seed gives the same selections
    out2 = tmp_path / "pl2"
    code, _, err = run_cli(*_args(data, out2, *rule))
    assert code == 0, err
    for r in (1, 2):
        assert _selected_keys(out / f"round{r}" / "selected.h5") == _selected_keys(out2 / f"round{r}" / "selected.h5")
    # resume after round 1 (round 2 lost) gives the same round 2
    shutil.rmtree(out2 / "round2")
    (out2 / "summary.json").unlink()
    code, stdout, err = run_cli(*_args(data, out2, *rule, "--resume"))
    assert code == 0, err
    assert _selected_keys(out / "round2" / "selected.h5") == _selected_keys(out2 / "round2" / "selected.h5")
    a = torch.load(out / "round2" / "train" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(out2 / "round2" / "train" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a finished run is kept unless --resume / --overwrite
    code, _, err = run_cli(*_args(data, out2, *rule))
    assert code == 1 and "--resume" in err


def test_round_refusals(data, tmp_path, run_cli):
    # empty selection at round 1: exit 1 with a remedy, nothing half-written
    code, _, err = run_cli(*_args(data, tmp_path / "e", "--threshold", "1.0", "--rounds", "1"))
    assert code == 1 and "lower --threshold" in err and not (tmp_path / "e" / "round1").exists()
    # pool = test without --transductive
    args = _args(data, tmp_path / "t", "--rounds", "1")
    args[args.index("--test") + 1] = data["pool"]
    code, _, err = run_cli(*args)
    assert code == 1 and "transductive" in err and "Traceback" not in err
    # --ckpt-rule val without --val; --fraction without --balance fraction
    args = _args(data, tmp_path / "v", "--ckpt-rule", "val")
    i = args.index("--val")
    del args[i:i + 2]
    code, _, err = run_cli(*args)
    assert code == 1 and "--val" in err
    code, _, err = run_cli(*_args(data, tmp_path / "f", "--fraction", "0.2"))
    assert code == 1 and "--balance fraction" in err


def test_pseudo_store_of_other_classes_is_refused(data, tmp_path, run_cli):
    from vdgtool.stores.table import TableStoreWriter

    other = tmp_path / "other.h5"
    with TableStoreWriter(str(other), "predictions", classes=["x", "y"], domains=["tgt"], conventions={},
                          provenance={}) as w:
        w.append({"probs": np.array([[0.9, 0.1]], np.float32)}, key=["tgt2/v0"], video=np.zeros(1, np.int64),
                 clip=np.zeros(1, np.int32), label=np.full(1, -1, np.int32), domain=np.zeros(1, np.int32))
    code, _, err = run_cli("train", "--data", data["src"], "--pool", data["pool"], "--pseudo", str(other),
                           "--model", "test_c3d", "--size", "32", "--epochs", "1", "-o", str(tmp_path / "r"))
    assert code == 1 and "Traceback" not in err and "x" in err and "class" in err.lower(), err


def test_balanced_sampler_alternates_and_is_deterministic():
    src, pool = np.arange(10), np.arange(10, 13)
    s = BalancedEpochSampler(src, pool, seed=0, epoch=1, length=12)
    idx = s.indices()
    assert np.isin(idx[0::2], src).all() and np.isin(idx[1::2], pool).all()
    assert np.bincount(idx[1::2] - 10).tolist() == [2, 2, 2]  # the pool is cycled through whole permutations
    assert np.array_equal(idx, BalancedEpochSampler(src, pool, 0, 1, 12).indices())
    assert np.array_equal(idx[4:], BalancedEpochSampler(src, pool, 0, 1, 12, start=4).indices())
    r0, r1 = (BalancedEpochSampler(src, pool, 0, 1, 6, rank=r, world=2).indices() for r in (0, 1))
    assert np.isin(r0[1::2], pool).all() and np.isin(r1[1::2], pool).all()


def test_out_of_bound_reaches_the_sampler(data):
    from vdgtool.data import build_dataset
    from vdgtool.models import create_model

    import dataclasses

    spec = dataclasses.replace(create_model("test_c3d", num_classes=3).input_spec, num_frames=12, size=32)
    clips = {}
    for oob in ("loop", "repeat_last"):  # the 8-frame videos are shorter than the 12-frame span
        ds = build_dataset([data["src"]], spec, False, sampler_options={"out_of_bound": oob})
        clips[oob] = ds[0]["video"]
    lp, rl = clips["loop"], clips["repeat_last"]
    assert torch.equal(lp[:, :8], rl[:, :8]) and torch.equal(lp[:, 8], lp[:, 0]) and torch.equal(rl[:, 11], rl[:, 7])
    assert not torch.equal(lp[:, 8], rl[:, 8])
    with pytest.raises(ConfigError):
        TrainConfig(data=[data["src"]], out_of_bound="mirror").validate()


def test_class_map_restricts_and_regroups(data, tmp_path, run_cli):
    from vdgtool.evaluate.classmap import ClassMapPredictor, build_class_map

    cmap = tmp_path / "map.csv"
    cmap.write_text("model_class,target_class\n# comment\nb,B\nc,C\na,C\n")
    targets, groups = build_class_map(str(cmap), ["a", "b", "c"], ["B", "C"])
    assert targets == ["B", "C"] and groups == [[1], [2, 0]]

    class Fixed(torch.nn.Module):
        INPUTS = ("video",)

        def predict(self, batch):
            logits = torch.tensor([[2.0, 1.0, 0.5]]).log()
            return {"logits": logits, "probs": logits.softmax(-1)}

    out = ClassMapPredictor(Fixed(), groups).predict({})
    p = torch.tensor([2.0, 1.0, 0.5]) / 3.5
    assert torch.allclose(out["probs"], torch.stack([p[1], p[2] + p[0]])[None] / (p.sum()), atol=1e-6)
    assert torch.allclose(out["logits"].softmax(-1), out["probs"], atol=1e-6)
    # the CLI: a data class that maps nowhere is refused in one line; a map that covers them evaluates
    (tmp_path / "bad.csv").write_text("a,a\nb,b\n")
    code, _, err = run_cli("eval", data["erm"], "--data", data["test"], "--class-map", tmp_path / "bad.csv")
    assert code == 1 and "'c'" in err and "maps to no class" in err
    (tmp_path / "ok.csv").write_text("a,a\nb,b\nc,c\n")
    code, stdout, err = run_cli("eval", data["erm"], "--data", data["test"], "--class-map", tmp_path / "ok.csv",
                                "--json")
    assert code == 0, err
    res = json.loads(stdout)
    code, stdout, _ = run_cli("eval", data["erm"], "--data", data["test"], "--json")
    assert res["top1"] == json.loads(stdout)["top1"] and res["class_map"]["shared_classes"] == 3
    code, _, err = run_cli("eval", "--data", data["test"])
    assert code == 1 and "--model" in err


def test_anigifs_splits_dedupe_and_stratify(shared_data, tmp_path):
    """recipes/anigifs/make_splits.py on real GIFs: an exact copy is removed before the split, the splits are
    disjoint and stratified, and the K400 class map matches names after lower-casing and '_' -> ' '."""
    import csv
    import subprocess
    import sys

    pytest.importorskip("imagehash")
    from conftest import REPO, make_tree

    g = sorted((shared_data / "gifs").glob("*.gif"))
    gifs = {f"arm_wrestling/{i}.gif": g[i % len(g)] for i in range(5)}  # 5 files, 5 distinct GIFs at most
    gifs["arm_wrestling/copy.gif"] = g[0]
    gifs.update({f"dribbling/{i}.gif": g[(i + 2) % len(g)] for i in range(5)})
    make_tree(tmp_path / "gifs", gifs)
    for part in ("train", "val"):
        make_tree(tmp_path / part, {f"{c}/{i}.mp4": b"x" for c in ("arm_wrestling", "dribbling", "yoga")
                                    for i in range(40)})
    (tmp_path / "k400.txt").write_text("abseiling\narm wrestling\ndribbling basketball\n")
    out = tmp_path / "splits"
    r = subprocess.run([sys.executable, str(REPO / "recipes/anigifs/make_splits.py"), "--gifs", str(tmp_path / "gifs"),
                        "--kinetics-train", str(tmp_path / "train"), "--kinetics-val", str(tmp_path / "val"),
                        "--k400-classes", str(tmp_path / "k400.txt"), "--n-min", "3", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    proto = json.loads((out / "protocol.json").read_text())
    assert (out / "classes.txt").read_text().split() == ["arm_wrestling", "dribbling"]  # yoga has no GIFs
    assert any(d[0].endswith("copy.gif") for d in proto["duplicates_removed"]["arm_wrestling"])
    rows = {s: list(csv.DictReader(open(out / f"{s}.csv"))) for s in ("anim_train", "anim_val", "anim_test",
                                                                        "real_train", "real_val")}
    paths = [r["path"] for s in ("anim_train", "anim_val", "anim_test") for r in rows[s]]
    assert len(paths) == len(set(paths)) == sum(proto["gifs_per_class"].values())
    assert {r["label"] for r in rows["real_val"]} == {"arm_wrestling", "dribbling"} and len(rows["real_val"]) == 4
    assert list(csv.reader(open(out / "k400_to_anigifs.csv")))[1:] == [["arm wrestling", "arm_wrestling"]]
