"""The shell recipes and the API example run end to end on the built-in toy dataset (short schedules).

They are what the README tells users to run; this keeps them from rotting. The quickstart runs with its
real schedule and its claims are asserted (the shortcut costs ERM on the animated domain; DRL-freeze
raises the freeze score). The others run one or two epochs, where accuracies are noise: what is
asserted is that every step ran and wrote what the next step reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"

pytestmark = pytest.mark.slow


def run_recipe(script: Path, cwd: Path, *args, **env) -> subprocess.CompletedProcess:
    e = dict(os.environ, OMP_NUM_THREADS="1", **{k: str(v) for k, v in env.items()})
    # the recipes call `vdgtool` and `python`: use the ones of this interpreter, wherever pip put them
    dirs = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    try:  # pip install --user puts console scripts here
        dirs.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    except KeyError:
        pass
    e["PATH"] = os.pathsep.join(dirs + [e.get("PATH", "")])
    r = subprocess.run(["bash", str(script), *map(str, args)], cwd=cwd, env=e, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, f"{script.name} failed:\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr
    return r


def test_quickstart_shows_the_shortcut_and_drl_raises_the_dynamic_score(tmp_path):
    """The demo with its real schedule (about a minute): the README's claims, checked."""
    out = tmp_path / "qs"
    r = run_recipe(RECIPES / "quickstart.sh", tmp_path, out)
    for f in ("real_train.h5", "real_test.h5", "animated_test.h5", "erm_predictions.h5", "runs/erm/done"):
        assert (out / f).exists(), f
    assert "domain animated" in r.stdout  # the eval table
    assert "drl-freeze" in r.stdout       # the ERM vs DRL table of toy_drl.sh
    score = {m: json.loads((out / "drl" / f"{m}.score_real.json").read_text()) for m in ("erm", "drl-freeze")}
    anim = {m: json.loads((out / "drl" / f"{m}.score_animated.json").read_text()) for m in ("erm", "drl-freeze")}
    # the background shortcut costs ERM on the animated domain
    assert score["erm"]["acc_video"] > anim["erm"]["acc_video"] + 0.2
    # DRL-freeze (fine-tuned from ERM) is more dynamic than ERM, by more than the standard errors
    gap = score["drl-freeze"]["score"] - score["erm"]["score"]
    assert gap > 3 * (score["drl-freeze"]["score_se"] + score["erm"]["score_se"]), score


def test_two_stream(tmp_path):
    out = tmp_path / "ts"
    r = run_recipe(RECIPES / "two_stream.sh", tmp_path, out, EPOCHS=1)  # MODE=joint: --method two-stream
    assert (out / "train_flow.h5").exists() and (out / "runs/two_stream/done").exists()
    assert "domain animated" in r.stdout and "stream rgb" in r.stdout and "stream flow" in r.stdout
    r = run_recipe(RECIPES / "two_stream.sh", tmp_path, out, EPOCHS=1, MODE="two-run")
    assert (out / "runs/flow/done").exists()
    assert r.stdout.count("domain animated") == 3  # RGB, flow, fused


def test_toy_da_fast_mode(tmp_path):
    """recipes/adapt/toy_da.sh in its smoke mode (1 seed, 1 epoch, DANN + two-stream): disjoint splits,
    the target stream and the paired flow reach the runs, and the table has both selection rules."""
    from vdgtool.stores import VideoStore

    out = tmp_path / "da"
    r = run_recipe(RECIPES / "adapt" / "toy_da.sh", tmp_path, out, FAST=1)
    d = out / "seed0"
    keys = {s: set(VideoStore(str(d / f"{s}.h5")).meta["key"].tolist())
            for s in ("real_train", "animated_train", "real_val", "animated_test")}
    assert keys["animated_train"] and keys["animated_test"] and keys["real_train"] and keys["real_val"]
    assert not keys["animated_train"] & keys["animated_test"] and not keys["real_train"] & keys["real_val"]
    cfg = {a: json.loads((d / a / "config.json").read_text()) for a in ("dann", "two-stream")}
    assert [os.path.basename(p) for p in cfg["dann"]["target"]] == ["animated_train.h5"]
    assert [os.path.basename(p) for p in cfg["dann"]["val"]] == ["real_val.h5", "animated_test.h5"]
    assert [os.path.basename(p) for p in cfg["two-stream"]["flow"]] == ["real_train_flow.h5"]
    assert not cfg["two-stream"]["target"]  # two-stream ERM: no target stream
    for rule in ("last", "val"):
        for arm in ("dann", "two-stream"):  # one collect per arm, its seeds in one row
            (row,) = json.loads((out / f"collect_{rule}_{arm}.json").read_text())["rows"]
            assert row["method"] == arm and row["seeds"] == [0]
            assert {"real_val", "animated_test"} <= set(row)
    assert "animated test (val-sel)" in r.stdout and "Δ vs ERM (last)" in r.stdout
    assert "two-stream seed 0, last epoch, animated test: rgb" in r.stdout  # each stream beside the fused
    assert "domain classifier accuracy" in r.stdout


def test_image_to_video_and_the_i2v_arms(tmp_path):
    """recipes/image_to_video.sh = the RGB-only arm of recipes/i2v/run.py (toy stills -> synth-video -> erm ->
    eval on pool and test); then, on the same data, the shared warm-up and the bank and oracle arms."""
    out = tmp_path / "iv"
    r = run_recipe(RECIPES / "image_to_video.sh", tmp_path, out, EPOCHS=1, VPC=2)
    assert (out / "data/source.h5").exists() and (out / "runs/rgb_only/seed0/done").exists()
    assert json.loads((out / "runs/rgb_only/seed0/eval_test.json").read_text())["n"] == 10
    assert "| rgb_only |" in r.stdout
    subprocess.run([sys.executable, str(RECIPES / "i2v" / "run.py"), str(out), "--arms", "bank,ctl_oracle",
                    "--seeds", "0", "--videos-per-class", "2", "--warm-epochs", "1", "--epochs", "2"], check=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=900)
    cfg = json.loads((out / "runs/ctl_oracle/seed0/config.json").read_text())
    assert cfg["init"].endswith("runs/warm/seed0/checkpoints/last.pt") and cfg["hparams"]["bank"] == "oracle"
    ev = [json.loads(x) for x in (out / "runs/ctl_oracle/seed0/results.jsonl").read_text().splitlines()
          if '"cfb_bank"' in x]
    assert len(ev) == 2 and ev[0]["matched_purity"] == 1.0  # the oracle bank holds true-label entries only
    table = (out / "table.md").read_text()
    assert "| bank |" in table and "| ctl_oracle |" in table


def test_drl_recipes_on_the_toy_fallback(tmp_path):
    env = dict(OUT=tmp_path / "drl", TOY_EPOCHS=1, TOY_FT_EPOCHS=1, METHODS="drl-freeze", TOY_EPISODES=3)
    run_recipe(RECIPES / "drl" / "pretrain.sh", tmp_path, **env)
    assert (tmp_path / "drl/pretrain/erm/done").exists() and (tmp_path / "drl/pretrain/drl-freeze/done").exists()
    run_recipe(RECIPES / "drl" / "transfer.sh", tmp_path, **env)
    run_recipe(RECIPES / "drl" / "fewshot.sh", tmp_path, **env)
    run_recipe(RECIPES / "drl" / "mimetics.sh", tmp_path, **env)
    assert json.loads((tmp_path / "drl/transfer/TOY.static_bias.json").read_text())["target"] == "labels"
    fs = json.loads((tmp_path / "drl/fewshot/TOY_1shot_erm.json").read_text())[0]  # erm: the control, always run
    assert (fs["episodes"], fs["queries"], fs["views"]) == (3, 3, 2)  # the toy's episodes, 2 clips per video
    assert (tmp_path / "drl/fewshot/TOY_5shot_drl-freeze.json").exists()
    assert (tmp_path / "drl/transfer/TOY/drl-freeze/finetune.test_2clips.json").exists()
    # table2.sh on these runs, laid out as toy_drl.sh's seed folders: the three scores and both invariants
    runs = tmp_path / "runs" / "seed0"
    runs.mkdir(parents=True)
    for m in ("erm", "drl-freeze"):
        (runs / m).symlink_to(tmp_path / "drl/pretrain" / m)
    (runs / "real_val.h5").symlink_to(tmp_path / "drl/toy/real_val.h5")
    r = run_recipe(RECIPES / "drl" / "table2.sh", tmp_path, RUNS=runs.parent, EPOCHS_DISTILL=1)
    for m in ("erm", "drl-freeze"):
        d = json.loads((runs / f"{m}.table2_distill.json").read_text())
        assert d["protocol"] == "paper" and d["student_data"][0].endswith("real_train.h5")
        assert json.loads((runs / f"{m}.table2_freeze.json").read_text())["frame"] == "first"
    assert "Distill < Shuffle < Freeze" in r.stdout and "same under the three measures" in r.stdout
    # lambda_sweep.sh: one lambda on the existing baseline, scored and linearly probed
    run_recipe(RECIPES / "drl" / "lambda_sweep.sh", tmp_path, **env, TOY_LAMBDAS="1.0")
    assert (tmp_path / "drl/pretrain/drl-freeze@lam=1.0.score_shuffle.json").exists()
    assert (tmp_path / "drl/transfer/TOY/drl-freeze@lam=1.0/linear_probe.test_2clips.json").exists()


def test_api_example(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "pipeline_api.py"), str(tmp_path / "api")],
                       capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    acc = json.loads(r.stdout.strip().splitlines()[-1].replace("'", '"'))
    assert set(acc) == {"real", "animated"}


def test_apn_toy_erm(tmp_path):
    """toydata --kind temporal -> extract every split -> ERM runs -> the val / oracle table."""
    out = tmp_path / "apn"
    r = run_recipe(RECIPES / "apn" / "toy_erm.sh", tmp_path, out, SEEDS=0, ARMS="apn@padding_masks=false",
                   EPOCHS=1, VPC=2, FRAMES=10)
    for f in ("seed0/onset_test.h5", "seed0/absence_val.h5", "seed0/apn@padding_masks=false/done"):
        assert (out / f).exists(), f
    cfg = json.loads((out / "seed0/apn@padding_masks=false/config.json").read_text())
    assert cfg["model"] == "test_apn" and cfg["networks"]["model"]["model_kwargs"]["padding_masks"] is False
    assert len(cfg["val"]) == 9  # source_val and every target's val and test split
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("apn")]
    assert [(x[0], x[1]) for x in rows] == [("apn@padding_masks=false", "val"), ("apn@padding_masks=false", "oracle")]
    assert len(rows[0]) == 2 + 5 and len(rows[1]) == 2 + 4  # source_val + 4 targets; oracle: targets only


def test_apn_benchmark_toy_fallback_with_the_gamma_ensemble(tmp_path):
    """benchmark.sh without a dataset: toy_ada.py trains the four gamma members, evaluates their ensemble
    and prints both tables (accuracies with the perturbation norms; the ensemble's rules and members)."""
    out = tmp_path / "apn"
    r = run_recipe(RECIPES / "apn" / "benchmark.sh", tmp_path, OUT=out, SEEDS=0, EPOCHS=1, VPC=2, FRAMES=10,
                   ARMS="apn-ada-g0.001 apn-ada apn-ada-g0.1 apn-ada-g1", PAIRED="apn-ada:apn-ada-g1")
    ens = json.loads((out / "seed0/gamma_ensemble.json").read_text())
    assert set(ens) == {"maxconf", "mean"} and set(ens["maxconf"]) == {"control", "onset", "tempo", "absence"}
    members = ens["maxconf"]["onset"]["ensemble"]["members"]
    assert len(members) == 4 and sum(m["chosen"] for m in members) == ens["maxconf"]["onset"]["n"]
    rows = [line for line in r.stdout.splitlines() if line.startswith("apn-ada ")]
    assert "II " in rows[0] and "III " in rows[0]  # the perturbation norms beside the accuracies
    assert any(line.startswith("ensemble maxconf") for line in r.stdout.splitlines())
    paired = [line for line in r.stdout.splitlines() if line.startswith("apn-ada − apn-ada-g1")]
    assert len(paired) == 2 and "(" in paired[0]  # per-seed differences, val and oracle, with won/tied/lost
