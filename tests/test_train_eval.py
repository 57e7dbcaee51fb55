"""The engine: ERM training, exact resume, pre-emption, safe checkpoints, eval numbers, few-shot, collect."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import colour_store
from vdgtool.cli import cli
from vdgtool.train.config import TrainConfig
from vdgtool.train.engine import Preempted, Trainer, train

CLASSES = ["a", "b", "c"]


def _store(path, n_per_class=4, frames=8, size=32, seed=0, domain="src", classes=CLASSES):
    return colour_store(path, classes, n_per_class, frames, size, seed, domain)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("stores")
    return _store(d / "train.h5"), _store(d / "val.h5", n_per_class=2, seed=1, domain="tgt")


def _cfg(stores, out, **kw):
    base = dict(data=[stores[0]], val=[stores[1]], output=str(out), model="test_c3d", epochs=2, batch_size=4,
                lr=0.05, size=32, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _weights(run):
    ck = torch.load(os.path.join(run, "checkpoints", "last.pt"), weights_only=True)
    return ck["model"]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_erm_run_dir_contents(stores, tmp_path):
    out = tmp_path / "run"
    summary = train(_cfg(stores, out))
    for name in ("config.json", "results.jsonl", "metrics.csv", "done", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (out / name).exists(), name
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in lines] == [0, 1]
    assert "val" in lines[-1] and "top1" in lines[-1]["val"]["val"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["class_names"] == CLASSES and cfg["seed"] == 3 and "command" in cfg["provenance"]
    ck = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert ck["config"]["model"] == "test_c3d" and ck["epoch"] == 2
    assert summary["epochs"] == 2


def test_resume_reproduces_uninterrupted_run(stores, tmp_path, monkeypatch):
    full = tmp_path / "full"
    train(_cfg(stores, full, epochs=3))
    part = tmp_path / "part"
    orig = Trainer._run_epoch

    def killed(self, stepper, make_loader):
        if self.epoch == 1:
            raise KeyboardInterrupt  # the job is killed between epochs
        return orig(self, stepper, make_loader)

    monkeypatch.setattr(Trainer, "_run_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(stores, part, epochs=3))
    monkeypatch.undo()
    assert not (part / "done").exists()
    train(_cfg(stores, part, epochs=3), resume=True)
    assert _same(_weights(full), _weights(part))
    hist = [json.loads(x) for x in (part / "results.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [0, 1, 2]


def test_preemption_mid_epoch_then_resume(stores, tmp_path, monkeypatch):
    full = tmp_path / "full"
    train(_cfg(stores, full, epochs=2))
    run = tmp_path / "pre"
    t = Trainer(_cfg(stores, run, epochs=2))
    calls = {"n": 0}
    orig = type(t)._run_epoch

    def run_epoch(self, stepper, make_loader):
        # deliver "SIGTERM" after the first step of the second epoch
        if self.epoch == 1:
            from vdgtool.methods.erm import ERM

            real = ERM.training_step

            def step(m, batch, st):
                calls["n"] += 1
                out = real(m, batch, st)
                self._stop_signal = 15
                return out

            monkeypatch.setattr(ERM, "training_step", step)
        return orig(self, stepper, make_loader)

    monkeypatch.setattr(type(t), "_run_epoch", run_epoch)
    with pytest.raises(Preempted) as ei:
        t.fit()
    assert "--resume" in str(ei.value)
    assert (run / "checkpoints" / "preempt.pt").exists()
    monkeypatch.undo()
    train(_cfg(stores, run, epochs=2), resume=True)
    assert calls["n"] == 1
    assert not (run / "checkpoints" / "preempt.pt").exists()
    assert _same(_weights(full), _weights(run))


def test_refuses_to_clobber_and_resume_with_other_options(stores, tmp_path):
    out = tmp_path / "r"
    train(_cfg(stores, out, epochs=1))
    r = CliRunner().invoke(cli, ["train", "--data", stores[0], "--model", "test_c3d", "--size", "32", "-o", str(out)])
    assert r.exit_code == 1 and "finished run" in r.output
    os.remove(out / "done")
    from vdgtool.errors import ConfigError

    with pytest.raises(ConfigError, match="seed"):
        train(_cfg(stores, out, epochs=2, seed=99), resume=True)


def test_unsafe_and_damaged_checkpoints_refused(stores, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, bad)
    r = CliRunner().invoke(cli, ["eval", str(bad), "--data", stores[1]])
    assert r.exit_code == 1
    assert "weights_only" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    r = CliRunner().invoke(cli, ["eval", str(junk), "--data", stores[1]])
    assert r.exit_code == 1 and "damaged" in r.output
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(2)}, plain)
    r = CliRunner().invoke(cli, ["eval", str(plain), "--data", stores[1]])
    assert r.exit_code == 1 and "not a vdgtool training checkpoint" in r.output


def test_eval_known_answer(stores, tmp_path):
    """A classifier that always says class 'b': top-1 = share of 'b', mean-class = 1/3."""
    from vdgtool.models import create_model
    from vdgtool.train.checkpoint import save_checkpoint

    m = create_model("test_c3d", num_classes=3, size=32)
    clf = m.get_classifier()
    with torch.no_grad():
        clf.weight.zero_()
        clf.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    cfg = {"model": "test_c3d", "model_kwargs": {"size": 32}, "class_names": CLASSES}
    ck = save_checkpoint(str(tmp_path / "const.pt"), {"model": m.state_dict(), "config": cfg})
    r = CliRunner().invoke(cli, ["eval", ck, "--data", stores[1], "--json", "-o", str(tmp_path / "p.h5"),
                                 "--clips", "2"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["n"] == 6
    assert res["top1"] == pytest.approx(2 / 6)
    assert res["mean_class"] == pytest.approx(1 / 3)
    assert res["top5"] == pytest.approx(1.0)
    assert res["per_class"]["b"]["acc"] == 1.0 and res["per_class"]["a"]["acc"] == 0.0
    from vdgtool.stores import open_store

    p = open_store(str(tmp_path / "p.h5"), kind="predictions")
    assert p.array("probs").shape == (6, 3) and np.all(p.array("probs").argmax(1) == 1)
    assert p.classes == CLASSES
    # fusing the model with itself (logit sum) keeps the decision
    r = CliRunner().invoke(cli, ["eval", ck, "--data", stores[1], "--json", "--fuse", ck, "--fusion", "logits"])
    assert r.exit_code == 0 and json.loads(r.stdout)["top1"] == pytest.approx(2 / 6)


def test_linear_probe_keeps_backbone(stores, tmp_path):
    base = tmp_path / "base"
    train(_cfg(stores, base, epochs=1))
    probe = tmp_path / "probe"
    train(_cfg(stores, probe, epochs=1, init=str(base / "checkpoints" / "last.pt"), linear_probe=True))
    a, b = _weights(base), _weights(probe)
    backbone = [k for k in a if not k.startswith("fc.")]
    assert backbone and all(torch.equal(a[k], b[k]) for k in backbone)
    assert not torch.equal(a["fc.weight"], b["fc.weight"])


def test_val_store_with_unknown_class_refused(stores, tmp_path):
    other = _store(tmp_path / "other.h5", n_per_class=1, classes=["a", "zebra"])
    r = CliRunner().invoke(cli, ["train", "--data", stores[0], "--val", other, "--model", "test_c3d", "--size", "32",
                                 "-o", str(tmp_path / "x"), "--epochs", "1"])
    assert r.exit_code == 1 and "zebra" in r.output


def test_few_shot_separable_features_and_episode_reuse(tmp_path):
    from vdgtool.evaluate.fewshot import few_shot

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 20)
    centers = rng.normal(size=(6, 16)) * 5
    feats = centers[labels] + rng.normal(size=(120, 16)) * 0.1
    keys = [f"k{i}" for i in range(120)]
    ef = str(tmp_path / "eps.json")
    r1 = few_shot(feats, keys, labels, [str(i) for i in range(6)], ways=5, shots=1, queries=5, episodes=20,
                  episodes_file=ef)
    assert r1["acc"] == pytest.approx(1.0) and r1["episode_source"] == "generated"
    noisy = rng.normal(size=feats.shape)
    r2 = few_shot(noisy, keys, labels, [str(i) for i in range(6)], episodes_file=ef)
    assert r2["episode_source"] == "loaded" and r2["episodes"] == 20 and r2["acc"] < 0.6


def test_collect_selection_rules(tmp_path):
    def run(name, seed, accs_src, accs_tgt):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"method": "erm", "model": "m", "seed": seed}))
        with open(d / "results.jsonl", "w") as f:
            for e, (s, t) in enumerate(zip(accs_src, accs_tgt)):
                f.write(json.dumps({"epoch": e, "val": {"src": {"top1": s}, "tgt": {"top1": t}}}) + "\n")
        return str(d)

    dirs = [run("s0", 0, [0.5, 0.9, 0.8], [0.1, 0.2, 0.6]), run("s1", 1, [0.7, 0.6, 0.65], [0.3, 0.5, 0.4])]
    from vdgtool.evaluate.collect import collect

    val = collect(dirs, "val")["rows"][0]
    assert val["tgt"]["mean"] == pytest.approx((0.2 + 0.3) / 2)
    assert val["tgt"]["se"] == pytest.approx(np.std([0.2, 0.3], ddof=1) / np.sqrt(2))
    last = collect(dirs, "last")["rows"][0]
    assert last["tgt"]["mean"] == pytest.approx(0.5)
    oracle = collect(dirs, "oracle")["rows"][0]
    assert oracle["tgt"]["mean"] == pytest.approx(0.55)
    r = CliRunner().invoke(cli, ["collect", *dirs])
    assert r.exit_code == 0 and "selection: val" in r.output


@pytest.mark.slow
def test_torchrun_ddp_two_processes(stores, tmp_path):
    """`torchrun -m vdgtool train` with 2 CPU processes (gloo): one run directory, written by rank 0."""
    import shutil
    import subprocess

    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "ddp"
    cmd = [torchrun, "--nproc-per-node", "2", "--master-port", "29517", "-m", "vdgtool", "train", "--data",
           stores[0], "--val", stores[1], "--model", "test_c3d", "--size", "32", "--epochs", "1", "--batch-size",
           "4", "-o", str(out), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["world_size"] == 2
    assert (out / "done").exists() and (out / "checkpoints" / "last.pt").exists()
    assert r.stdout.count('"run_dir"') == 1  # only rank 0 reports
