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
