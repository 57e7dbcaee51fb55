"""augsearch / rda methods, the search library and `vdgtool augsearch` (train and --eval-only)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vdgtool.augment.search import (Candidate, CandidateScorer, draw_candidates, magnitude, ops_grid,
                                    stratified_indices)
from conftest import colour_store, preempt_mid_run
from vdgtool.errors import ConfigError

CLASSES = ["a", "b", "c"]


def make_store(path, n_per_class=4, seed=0, domain="src"):
    return colour_store(path, CLASSES, n_per_class, seed=seed, domain=domain, key="{domain}{seed}/v{k}")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("augsearch")
    return {"src": make_store(d / "src.h5"), "val": make_store(d / "val.h5", 2, seed=1),
            "tgt": make_store(d / "tgt.h5", 2, seed=3, domain="tgt")}


def test_candidates_exclude_T_and_state_round_trips():
    pts = ops_grid("pil10")
    assert len(pts) == 20 * 6 + 30 * 3 + 1  # autocontrast, 4 enhance, solarize x 20; 3 channel offsets x 30; grayscale
    rng = np.random.default_rng(0)
    T = [Candidate((pts[0],)), Candidate((pts[5],))]
    every = draw_candidates(pts, 10_000, 1, rng, exclude=T)
    assert len(every) == len(pts) - 2 and not {c.steps for c in every} & {c.steps for c in T}
    again = draw_candidates(pts, 8, 1, np.random.default_rng(0))
    assert again == draw_candidates(pts, 8, 1, np.random.default_rng(0))  # seeded
    comp = draw_candidates(pts, 5, 3, rng)
    assert all(len(c.steps) == 3 for c in comp)
    c = comp[0]
    assert Candidate.from_state(json.loads(json.dumps(c.to_state()))) == c
    with pytest.raises(ConfigError, match="lacks"):
        Candidate.from_state([["warp_drive", 0, 1.0]])
    assert magnitude("brightness", 0) == pytest.approx(1.0) and magnitude("quantize", 0) == pytest.approx(1 / 6)


def test_stratified_search_set_is_balanced_and_seeded():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 10 + [-1] * 5)
    idx = stratified_indices(labels, 9, np.random.default_rng(1))
    assert np.bincount(labels[idx], minlength=3).tolist() == [3, 3, 3]
    assert (labels[stratified_indices(labels, 100, np.random.default_rng(1))] >= 0).all()
    assert np.array_equal(idx, stratified_indices(labels, 9, np.random.default_rng(1)))


def test_scorer_ranks_the_transformation_that_breaks_the_model_first():
    """A 'model' that reads the mean red level: inverting the image breaks it, identity-like levels do not."""
    from vdgtool.methods.adversarial import PixelBox
    from vdgtool.models.registry import InputSpec

    spec = InputSpec(num_frames=2, size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    box = PixelBox(spec, "cpu")
    x01 = torch.zeros(6, 3, 2, 8, 8)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    x01[y == 1, 0] = 0.9
    x01[y == 0, 0] = 0.1

    def logits(x):
        red = box.to_pixels(x)[:, 0].mean((1, 2, 3))
        return torch.stack([0.5 - red, red - 0.5], 1) * 10

    cands = [Candidate((("invert", 0, 1.0),)), Candidate((("brightness", 10, 1.02),))]
    sc = CandidateScorer(cands, logits, box)
    sc.add_batch(box.from_pixels(x01), y)
    assert sc.fitness[0].error == 0.0  # identity
    assert sc.candidates[sc.ranking()[0]].name == "invert" and sc.fitness[1].error == 1.0


def _train_args(data, out, method="augsearch", epochs=3, extra=()):
    return ["augsearch", "--method", method, "--data", data["src"], "--val", data["val"], "--model", "test_c3d",
            "--size", "32", "--epochs", str(epochs), "--batch-size", "4", "--lr", "0.05",
            *(("--hp", "candidates=6", "--hp", "search_set=9") if method == "augsearch" else ()), "--hp", "warmup=1", "--hp", "search_every=1", "--schedule", "constant", "--seed", "2", "-o", str(out),
            "--json", *extra]


@pytest.mark.slow
def test_augsearch_picks_checkpoints_and_resumes_T(data, tmp_path, run_cli, monkeypatch):
    out = tmp_path / "as"
    code, stdout, err = run_cli(*_train_args(data, out))
    assert code == 0, err
    events = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    searches = [e for e in events if e.get("event") == "augsearch"]
    assert [e["T_size"] for e in searches] == [2, 3]  # after epochs 1 and 2
    for e in searches:
        assert e["clips"] == 9 and e["candidates"] == 6 and e["fitness_err"] >= e["identity_err"] - 1e-9
    ck = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    T = ck["method_state"]["T"]
    assert [t[0][0] for t in T] == [e["op"] for e in searches]
    done = json.loads((out / "done").read_text())
    assert "augsearch" in json.dumps(done)
    # the same run stopped by SIGTERM in epoch 2 (after the first search), then --resume: T and weights as one run
    from vdgtool.methods.augsearch import AugSearch
    from vdgtool.train.config import TrainConfig
    from vdgtool.train.engine import Trainer, train

    cfg = json.loads((out / "config.json").read_text())
    cfg = TrainConfig.from_dict({k: v for k, v in cfg.items() if k in TrainConfig.__dataclass_fields__})
    cfg.output = str(tmp_path / "as2")
    t = Trainer(cfg)
    preempt_mid_run(t, AugSearch, monkeypatch, epoch=1, step=1)
    train(cfg, resume=True)
    ck2 = torch.load(tmp_path / "as2" / "checkpoints" / "last.pt", weights_only=True)
    assert ck2["method_state"]["T"] == T
    assert all(torch.equal(ck["model"][k], ck2["model"][k]) for k in ck["model"])
    # the vulnerability table of the trained model, worst first
    code, stdout, err = run_cli("augsearch", str(out), "--data", data["tgt"], "--eval-only", "--ops", "gif", "--json")
    assert code == 0, err
    res = json.loads(stdout)
    accs = [r["accuracy"] for r in res["rows"]]
    assert accs == sorted(accs) and res["grid_points"] == len(res["rows"]) == len(ops_grid("gif"))
    assert res["videos"] == 6 and 0.0 <= res["identity_accuracy"] <= 1.0
    code, stdout, _ = run_cli("augsearch", str(out), "--data", data["tgt"], "--eval-only", "--top", "3")
    assert code == 0 and "worst first" in stdout and stdout.count("\n") < 12


@pytest.mark.slow
def test_rda_draws_random_transformations_with_the_same_schedule(data, tmp_path, run_cli):
    out = tmp_path / "rda"
    code, _, err = run_cli(*_train_args(data, out, method="rda", epochs=2))
    assert code == 0, err
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines() if '"epoch"' in x]
    aug = [ln.get("train_augmented") for ln in lines if "train_augmented" in ln]
    assert aug[0] == 0 and aug[-1] > 0  # clean during warm-up, then random ops


def test_augsearch_refusals(data, tmp_path, run_cli):
    code, _, err = run_cli("augsearch", "--method", "erm", "--data", data["src"], "-o", str(tmp_path / "x"))
    assert code == 1 and "vdgtool train --method erm" in err
    code, _, err = run_cli("augsearch", "--data", data["src"], "--eval-only")
    assert code == 1 and "needs a checkpoint" in err
    code, _, err = run_cli("train", "--method", "augsearch", "--hp", "search_set=lots", "--data", data["src"],
                           "--model", "test_c3d", "--size", "32", "-o", str(tmp_path / "y"))
    assert code == 1 and "search_set" in err and "Traceback" not in err
