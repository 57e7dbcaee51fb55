"""Engine v2: target streams, paired RGB + flow items, multi-network methods, method state, DA losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import preempt_mid_run
from vdgtool.errors import CheckpointError, ConfigError, ConventionMismatch, InputError
from vdgtool.stores import VideoStoreWriter
from vdgtool.train.config import TrainConfig
from vdgtool.train.engine import StreamSampler, Trainer, train

CLASSES = ["a", "b", "c"]
FLOW_CONV = {"quantisation": "linear_uint8", "bound": 20.0, "kind": "flow"}


def _clips(path, n_per_class=3, frames=8, size=32, seed=0, domain="src", classes=CLASSES, labels=None,
           cue=True, prefix="v"):
    """A clip store; with ``cue`` each class has a colour. ``labels`` overrides the stored labels."""
    rng = np.random.default_rng(seed)
    with VideoStoreWriter(str(path), classes=classes, domains=[domain], encoding="raw") as w:
        k = 0
        for c in range(len(classes)):
            for _ in range(n_per_class):
                fr = rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
                if cue:
                    fr[..., c % 3] = 40 + 60 * c
                lab = c if labels is None else labels[k]
                w.add_video(f"{prefix}{k}", fr, index=k, label=lab, domain=domain, fps=8)
                k += 1
    return str(path)


def _flow(path, clip_store, size=32, skip=(), cue=True):
    """The flow store of ``clip_store``'s videos (T-1 fields): class-specific constant motion."""
    from vdgtool.stores import VideoStore

    src = VideoStore(clip_store)
    with VideoStoreWriter(str(path), "flow", classes=src.classes, domains=src.domains, conventions=FLOW_CONV,
                          encoding="raw") as w:
        for r in range(len(src)):
            key = src.meta["key"][r]
            if key in skip:
                continue
            t = int(src.meta["num_frames"][r]) - 1
            lab = int(src.meta["label"][r])
            fl = np.full((t, size, size, 2), 127, np.uint8)
            if cue:
                fl[..., 0] = 127 + 40 * (lab - 1)
            w.add_video(key, fl, index=r, label=lab, domain=src.domains[0], fps=8)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("v2")
    src = _clips(d / "src.h5")
    val = _clips(d / "val.h5", n_per_class=2, seed=1, domain="src")
    tgt = _clips(d / "tgt.h5", n_per_class=3, seed=2, domain="tgt", cue=False, prefix="t")
    return {"src": src, "val": val, "tgt": tgt, "src_flow": _flow(d / "src_flow.h5", src),
            "val_flow": _flow(d / "val_flow.h5", val), "tgt_flow": _flow(d / "tgt_flow.h5", tgt), "dir": d}


class _Result:
    def __init__(self, code, out, err):
        self.exit_code, self.stdout, self.output = code, out, out + err


@pytest.fixture
def cli(run_cli):
    return lambda args: _Result(*run_cli(*args))


def _cfg(data, out, **kw):
    base = dict(data=[data["src"]], val=[data["val"]], output=str(out), model="test_c3d", epochs=2, batch_size=3,
                lr=0.05, size=32, seed=5)
    base.update(kw)
    return TrainConfig(**base)


def _weights(run, name="last.pt"):
    return torch.load(os.path.join(run, "checkpoints", name), weights_only=True)


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- the target stream -----------------------------------------------------------------------------------
def test_stream_sampler_is_deterministic_infinite_and_split_across_ranks():
    s = StreamSampler(5, seed=1)
    first = [next(iter(s)) for _ in range(1)]
    it = iter(s)
    seq = [next(it) for _ in range(12)]
    assert first[0] == seq[0]
    assert sorted(i for i, c in seq[:5]) == list(range(5)) and {c for _, c in seq[:5]} == {0}
    assert sorted(i for i, c in seq[5:10]) == list(range(5)) and {c for _, c in seq[5:10]} == {1}
    # resuming at step 2 with batch 3 continues at element 6 of the same stream
    later = iter(StreamSampler(5, seed=1, start=6))
    assert [next(later) for _ in range(6)] == seq[6:12]
    # two ranks: interleaved, disjoint at every step, together the single-process stream
    r0, r1 = iter(StreamSampler(5, 1, rank=0, world=2)), iter(StreamSampler(5, 1, rank=1, world=2))
    both = [x for _ in range(5) for x in (next(r0), next(r1))]
    assert both == seq[:10]


def test_target_labels_are_never_read(data, tmp_path):
    """A target store whose labels are all wrong trains bit-identically to one with the true labels."""
    wrong = _clips(tmp_path / "tgt_wrong.h5", n_per_class=3, seed=2, domain="tgt", cue=False, prefix="t",
                   labels=[(i + 1) % 3 for i in range(9)])
    runs = []
    for name, tgt in (("true", data["tgt"]), ("wrong", wrong)):
        out = tmp_path / name
        train(_cfg(data, out, method="dann", target=[tgt], hp={"lam": 0.3, "disc_hidden": 16}, epochs=1))
        runs.append(_weights(out))
    assert _same(runs[0]["model"], runs[1]["model"])
    assert _same(runs[0]["networks"]["da_modules"], runs[1]["networks"]["da_modules"])
    rec = [json.loads(x) for x in (tmp_path / "true" / "results.jsonl").read_text().splitlines()]
    assert "train_domain_acc" in rec[-1] and "train_da_coeff" in rec[-1]


def test_target_dataset_hides_labels(data):
    from vdgtool.data import build_dataset
    from vdgtool.models import create_model

    spec = create_model("test_c3d", num_classes=3, size=32).input_spec
    ds = build_dataset([data["tgt"]], spec, True, class_names=CLASSES, hide_labels=True)
    assert set(ds.labels.tolist()) == {-1} and ds[0]["label"] == -1


def test_target_refusals(data, tmp_path):
    with pytest.raises(ConfigError, match="--target"):
        Trainer(_cfg(data, tmp_path / "r1", method="mcc")).fit()
    with pytest.raises(ConfigError, match="--target"):
        Trainer(_cfg(data, tmp_path / "r1b", method="erm", hp={"da": "bnm"})).fit()
    other = _clips(tmp_path / "other.h5", n_per_class=1, classes=["a", "b", "zzz"], domain="tgt")
    with pytest.raises(ConfigError, match="class 'zzz'"):
        Trainer(_cfg(data, tmp_path / "r2", method="mcc", target=[other])).fit()
    part = _clips(tmp_path / "part.h5", n_per_class=1, classes=["a", "b"], domain="tgt")
    with pytest.raises(ConfigError, match="--target-classes subset"):
        Trainer(_cfg(data, tmp_path / "r3", method="mcc", target=[part])).fit()
    train(_cfg(data, tmp_path / "r4", method="mcc", target=[part], target_classes="subset", epochs=1))


# -- paired RGB + flow items -----------------------------------------------------------------------------
def _indexed(t, h, w):
    fr = np.zeros((t, h, w, 3), np.uint8)
    fr[..., 0] = np.arange(t, dtype=np.uint8)[:, None, None] * 10
    fr[..., 1] = np.arange(w, dtype=np.uint8)[None, None, :] * 10
    return fr


def _paired_stores(tmp_path, h=16, w=20, flow_w=None):
    with VideoStoreWriter(str(tmp_path / "c.h5"), classes=["x"], domains=["d"], encoding="raw") as cw:
        cw.add_video("k0", _indexed(10, h, w), index=0, label=0, domain="d", fps=8)
    fw = flow_w or w
    with VideoStoreWriter(str(tmp_path / "f.h5"), "flow", classes=["x"], domains=["d"], conventions=FLOW_CONV,
                          encoding="raw") as ww:
        fl = np.zeros((9, h, fw, 2), np.uint8)
        fl[..., 0] = np.arange(9, dtype=np.uint8)[:, None, None] * 10
        fl[..., 1] = np.arange(fw, dtype=np.uint8)[None, None, :] * 10
        ww.add_video("k0", fl, index=0, label=0, domain="d", fps=8)
    return str(tmp_path / "c.h5"), str(tmp_path / "f.h5")


def _specs():
    from vdgtool.models.registry import InputSpec

    return {"rgb": InputSpec(4, 8, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
            "flow": InputSpec(4, 8, (0.5, 0.5), (0.5, 0.5), modality="flow")}


@pytest.mark.parametrize("crop", ["shared", "independent"])
def test_paired_items_same_positions_and_crop(tmp_path, crop):
    from vdgtool.data import build_for_inputs

    c, f = _paired_stores(tmp_path)
    ds = build_for_inputs([c], _specs(), True, flow_stores=[f], paired_crop=crop, seed=3,
                          transform_options={"scale": (0.2, 0.5), "flip": False})
    differ = 0
    for e in range(6):
        ds.set_epoch(e)
        it = ds[0]
        assert set(it) >= {"rgb", "flow"} and "video" not in it
        rgb_t = (it["rgb"][0] * 255 / 10).round()          # frame index of every sampled RGB frame
        flow_t = ((it["flow"][0] + 1) * 127.5 / 10).round()  # ... and of every flow field
        assert torch.equal(rgb_t[:, 0, 0], flow_t[:, 0, 0])  # the same positions (flow field j: frame j -> j+1)
        assert int(rgb_t.max()) <= 8                          # never the last frame, which has no field
        col_rgb = it["rgb"][1, 0] * 255 / 10
        col_flow = (it["flow"][1, 0] + 1) * 127.5 / 10
        if crop == "shared":
            assert torch.allclose(col_rgb, col_flow, atol=0.2)
        differ += not torch.allclose(col_rgb, col_flow, atol=0.2)
    if crop == "independent":
        assert differ >= 4


def test_paired_refusals(tmp_path, data):
    from vdgtool.data import build_for_inputs

    c, f = _paired_stores(tmp_path)
    with VideoStoreWriter(str(tmp_path / "c2.h5"), classes=["x"], domains=["d"], encoding="raw") as cw:
        cw.add_video("k0", _indexed(10, 16, 20), index=0, label=0, domain="d", fps=8)
        cw.add_video("missing_one", _indexed(10, 16, 20), index=1, label=0, domain="d", fps=8)
    with pytest.raises(InputError, match="missing_one"):
        build_for_inputs([str(tmp_path / "c2.h5")], _specs(), True, flow_stores=[f])
    big = tmp_path / "big"
    big.mkdir()
    c3, f3 = _paired_stores(big, flow_w=24)
    with pytest.raises(ConventionMismatch, match="independent"):
        build_for_inputs([c3], _specs(), True, flow_stores=[f3])
    build_for_inputs([c3], _specs(), True, flow_stores=[f3], paired_crop="independent")
    with pytest.raises(ConfigError, match="--flow"):
        build_for_inputs([c], _specs(), True)
    # a flow store given as --data of a two-stream run
    with pytest.raises(ConfigError, match="--flow"):
        Trainer(_cfg({**data, "src": data["src_flow"]}, tmp_path / "ts", method="two-stream",
                     flow=[data["src_flow"]], val=[])).fit()
    with pytest.raises(ConfigError, match="--val-flow"):
        Trainer(_cfg(data, tmp_path / "ts2", method="two-stream", flow=[data["src_flow"]])).fit()


# -- a two-network method ----------------------------------------------------------------------------------
def test_two_stream_trains_validates_fused_and_rebuilds(data, tmp_path, cli):
    out = tmp_path / "ts"
    res = train(_cfg(data, out, method="two-stream", flow=[data["src_flow"]], val_flow=[data["val_flow"]],
                     epochs=2, optimizer="adamw", lr=0.01))
    val = res["final"]["val"]["val"]
    assert set(val["streams"]) == {"rgb", "flow"} and 0 <= val["top1"] <= 1
    cfg = json.loads((out / "config.json").read_text())
    assert set(cfg["networks"]) == {"rgb", "flow"} and cfg["networks"]["flow"]["model_kwargs"]["in_channels"] == 2
    ck = _weights(out)
    assert set(ck["networks"]) == {"rgb", "flow"} and _same(ck["model"], ck["networks"]["rgb"])
    from vdgtool.train.checkpoint import build_method_from_checkpoint

    m, _ = build_method_from_checkpoint(str(out / "checkpoints" / "last.pt"))
    assert type(m).__name__ == "TwoStream" and not m.training
    assert _same(m.flow.state_dict(), ck["networks"]["flow"])
    # eval through the method: fused + per-stream rows, the same numbers as validation
    r = cli(["eval", str(out / "checkpoints" / "last.pt"), "--data", data["val"], "--flow", data["val_flow"],
                 "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert ev["top1"] == pytest.approx(val["top1"]) and ev["streams"]["flow"]["top1"] == pytest.approx(
        val["streams"]["flow"]["top1"])
    r = cli(["eval", str(out), "--data", data["val"]])
    assert r.exit_code == 1 and "--flow" in r.output
    r = cli(["features", str(out), "--data", data["val"], "--flow", data["val_flow"], "-o", str(tmp_path / "f.h5"),
                 "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["dim"] == 2 * 96
    r = cli(["score", str(out), "--data", data["val"], "--flow", data["val_flow"], "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["score"] >= 0


# -- method state and exact resume -------------------------------------------------------------------------
def test_resume_mid_epoch_restores_weights_and_method_state(data, tmp_path, monkeypatch):
    """DANN with a target stream and a stateful test method: SIGTERM mid-epoch, then --resume."""
    from vdgtool.methods import register_method
    from vdgtool.methods.base import METHODS
    from vdgtool.methods.erm import ERM

    if "test-stateful" not in METHODS:
        @register_method("test-stateful")
        class Stateful(ERM):
            """ERM + DANN that counts steps and keeps the keys of its target batches (method state)."""

            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                self.seen, self.sums = [], torch.zeros(3)

            def training_step(self, batches, stepper):
                out = super().training_step(batches, stepper)
                self.seen.append(list(batches["target"]["key"]))
                self.sums += torch.bincount(batches["source"]["label"], minlength=3).float()
                if len(self.seen) % 2 == 0:
                    self.log_event("half", count=len(self.seen))
                return out

            def get_state(self):
                return {"seen": self.seen, "sums": self.sums}

            def set_state(self, st):
                self.seen, self.sums = list(st.get("seen", [])), st.get("sums", torch.zeros(3)).clone()

    kw = dict(method="test-stateful", target=[data["tgt"]], target_batch_size=2, hp={"da": "dann", "disc_hidden": 8},
              epochs=2)
    full = tmp_path / "full"
    train(_cfg(data, full, **kw))
    run = tmp_path / "pre"
    t = Trainer(_cfg(data, run, **kw))
    preempt_mid_run(t, METHODS["test-stateful"], monkeypatch, epoch=1, step=0)
    assert (run / "checkpoints" / "preempt.pt").exists()
    train(_cfg(data, run, **kw), resume=True)
    a, b = _weights(full), _weights(run)
    assert _same(a["model"], b["model"]) and _same(a["networks"]["da_modules"], b["networks"]["da_modules"])
    assert a["method_state"]["seen"] == b["method_state"]["seen"] and len(a["method_state"]["seen"]) == 6
    assert torch.equal(a["method_state"]["sums"], b["method_state"]["sums"])
    ev = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    assert [e["count"] for e in ev if e.get("event") == "half"] == [2, 4, 6]
    assert [e["epoch"] for e in ev if "event" not in e] == [0, 1]


def test_resume_from_the_run_alone_and_changed_options(data, tmp_path, cli, monkeypatch):
    import vdgtool.train.engine as eng

    rewritten = []
    atomic = eng._atomic_write
    monkeypatch.setattr(eng, "_atomic_write", lambda path, text: (rewritten.append(os.path.basename(path)),
                                                                 atomic(path, text))[1])
    out = tmp_path / "r"
    args = ["train", "--data", data["src"], "--val", data["val"], "--model", "test_c3d", "--size", "32",
            "--epochs", "1", "--batch-size", "3", "-o", str(out), "--json"]
    assert cli(args).exit_code == 0
    # during a run results.jsonl is only appended to (a concurrent `collect` never sees it empty); the
    # other files are rewritten by write-and-rename
    assert "results.jsonl" not in rewritten and "config.json" in rewritten
    os.remove(out / "done")
    before = (out / "results.jsonl").read_bytes()
    r = cli(["train", "--resume", "-o", str(out), "--lr", "0.5"])
    assert r.exit_code == 1 and "changed option lr" in r.output
    r = cli(["train", "--resume", "-o", str(out), "--epochs", "2", "--json"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["epochs"] == 2 and cfg["resumed"][0]["changed"] == {"epochs": [1, 2]}
    assert _weights(out)["epoch"] == 2
    # the resumed run keeps the records before its checkpoint (an atomic rewrite) and appends after them
    after = (out / "results.jsonl").read_bytes()
    assert after.startswith(before) and len(after.splitlines()) == 2
    assert len((out / "metrics.csv").read_text().splitlines()) == 3


def test_init_partial_is_refused_unless_asked(data, tmp_path):
    a = tmp_path / "a"
    train(_cfg(data, a, epochs=1, model="test_r3d"))
    with pytest.raises(CheckpointError, match="init-partial"):
        Trainer(_cfg(data, tmp_path / "b", epochs=1, init=str(a / "checkpoints" / "last.pt"))).fit()
    train(_cfg(data, tmp_path / "c", epochs=1, init=str(a / "checkpoints" / "last.pt"), init_partial=True))


# -- the Stepper ---------------------------------------------------------------------------------------------
class _CountingScaler:
    def __init__(self):
        self.updates, self.steps = 0, 0

    def scale(self, loss):
        return loss

    def unscale_(self, opt):
        pass

    def step(self, opt):
        self.steps += 1
        opt.step()

    def update(self):
        self.updates += 1


def test_stepper_updates_the_scaler_once_per_iteration_and_guards_nonfinite():
    import contextlib

    from vdgtool.methods import NonFiniteLoss, Stepper

    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    opts = {"model": torch.optim.SGD(a.parameters(), lr=0.1), "student": torch.optim.SGD(b.parameters(), lr=0.1)}
    sc = _CountingScaler()
    st = Stepper(opts, sc, None, contextlib.nullcontext)
    x = torch.randn(4, 2)
    st.step(a(x).sum(), "model")
    st.step(b(x).sum(), "student")
    st.end_iteration()
    assert sc.steps == 2 and sc.updates == 1
    st.where = "epoch 3 step 7"
    with pytest.raises(NonFiniteLoss, match="epoch 3 step 7"):
        st.step(a(x).sum() * float("nan"), "model")
    w = a.weight.detach().clone()
    st.allow_nonfinite = True
    assert st.step(a(x).sum() * float("inf"), "model") is False and st.skipped == 1
    assert torch.equal(a.weight, w)
    # clamp of gradient elements (the CFB release's clip_gradient)
    st.step((a(x) * 1000).sum(), "model", clip_value=1.0)
    assert a.weight.grad.abs().max() <= 1.0


def test_nonfinite_loss_stops_training_with_the_step(data, tmp_path):
    from vdgtool.methods import NonFiniteLoss

    with pytest.raises(NonFiniteLoss, match=r"at epoch 1 step \d+ \(global step \d+\)"):
        train(_cfg(data, tmp_path / "nan", lr=1e30, epochs=2, optimizer="sgd", momentum=0.0))


# -- configuration: one source of truth ------------------------------------------------------------------------
def test_cli_options_come_from_trainconfig(cli):
    import dataclasses

    from vdgtool.cli.train import train as cmd

    params = {p.name for p in cmd.params}
    fields = {f.name for f in dataclasses.fields(TrainConfig) if not f.metadata.get("hidden")}
    assert fields <= params
    r = cli(["train", "--help"])
    assert "--target-batch-size" in r.output and "--paired-crop" in r.output and "--flow-init" in r.output


@pytest.mark.parametrize("args,msg", [(["--clip-grad", "-1"], "clip-grad"), (["--lr", "nan"], "lr"),
                                      (["--momentum", "nan"], "momentum"), (["--size", "0"], "size"),
                                      (["--num-frames", "0"], "num-frames"), (["--frame-interval", "0"], "interval"),
                                      (["--max-steps-per-epoch", "0"], "max-steps"), (["--lr", "-1"], "lr"),
                                      (["--weight-decay", "-1"], "weight-decay"), (["--workers", "-1"], "workers"),
                                      (["--milestones", "a,b"], "milestones"), (["--color-jitter", "-1"], "jitter"),
                                      (["--hp", "label_smoothing=5"], "label_smoothing")])
def test_bad_train_values_are_refused(data, tmp_path, cli, args, msg):
    r = cli(["train", "--data", data["src"], "-o", str(tmp_path / "x"), *args])
    assert r.exit_code in (1, 2) and msg in r.output and "internal error" not in r.output
    assert not (tmp_path / "x" / "checkpoints").exists()


def test_config_file_types_are_checked(data, tmp_path, cli):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [data["src"]], "epochs": "ten"}))
    r = cli(["train", "--config", str(bad), "-o", str(tmp_path / "y")])
    assert r.exit_code == 1 and "epochs" in r.output and "internal error" not in r.output
    bad.write_text(json.dumps([1, 2]))
    r = cli(["train", "--config", str(bad), "-o", str(tmp_path / "y")])
    assert r.exit_code == 1 and "mapping" in r.output
    with pytest.raises(ConfigError, match="lr"):
        TrainConfig.from_dict({"data": [data["src"]], "lr": float("nan")}).validate()


# -- pseudo-labelled pools -----------------------------------------------------------------------------------
def test_pseudo_rows_replace_labels_and_unselected_rows_are_dropped(data, tmp_path):
    from vdgtool.stores.table import TableStoreWriter

    pool = data["tgt"]
    wrong = _clips(tmp_path / "pool_wrong.h5", n_per_class=3, seed=2, domain="tgt", cue=False, prefix="t",
                   labels=[(i + 2) % 3 for i in range(9)])
    sel = tmp_path / "sel.h5"
    probs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    with TableStoreWriter(str(sel), "predictions", classes=CLASSES) as w:
        w.append({"probs": probs}, key=["t0", "t4", "t8", "t3"])
    weights = []
    for name, p in (("a", pool), ("b", wrong)):
        out = tmp_path / name
        t = Trainer(_cfg(data, out, epochs=1, pool=[p], pseudo=str(sel), pl_weight=0.5))
        t.fit()
        keys = [k for k, ps in zip(t.train_ds.keys, t.train_ds.pseudo) if ps]
        assert sorted(keys) == ["t0", "t3", "t4", "t8"]
        lab = {k: int(v) for k, v, ps in zip(t.train_ds.keys, t.train_ds.labels, t.train_ds.pseudo) if ps}
        assert lab == {"t0": 0, "t4": 1, "t8": 2, "t3": 0}
        weights.append(_weights(out)["model"])
    assert _same(*weights)  # the pool's own labels never reached a loss
    with pytest.raises(ConfigError, match="--pool"):
        TrainConfig(data=[data["src"]], pseudo=str(sel)).validate()


# -- DataLoader workers and signals ----------------------------------------------------------------------------
class _SignalProbe(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return {"ign": int(signal.getsignal(signal.SIGTERM) == signal.SIG_IGN), "label": 0}


def test_loader_workers_ignore_preemption_signals():
    from vdgtool.runtime import make_loader

    batch = next(iter(make_loader(_SignalProbe(), 2, workers=1)))
    assert batch["ign"].tolist() == [1, 1]


# -- domain-adaptation losses: known answers -------------------------------------------------------------------
def test_mmd_is_zero_on_equal_batches_and_grows_with_a_shift():
    from vdgtool.methods.da import mk_mmd

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    assert mk_mmd(x, x).abs() < 1e-6
    vals = [float(mk_mmd(x, torch.randn(64, 8, generator=g) + s)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert vals == sorted(vals) and vals[-1] > 5 * max(vals[0], 1e-3)


def test_gradient_reversal_flips_the_gradient_exactly():
    from vdgtool.methods.da import grad_reverse

    x = torch.randn(5, 3, requires_grad=True)
    w = torch.randn(3)
    (g1,) = torch.autograd.grad((x * w).sum(), x)
    (g2,) = torch.autograd.grad((grad_reverse(x, 0.7) * w).sum(), x)
    assert torch.equal(g2, -0.7 * g1)
    assert torch.equal(grad_reverse(x, 0.7), x)  # identity forward
    jac = torch.autograd.functional.jacobian(lambda t: grad_reverse(t, 0.7), x.detach()[0])
    assert torch.equal(jac, -0.7 * torch.eye(3))  # what autograd sees: the reversed identity


def test_mcc_and_bnm_match_hand_computed_values():
    from vdgtool.methods.da import bnm_loss, entropy_loss, fbnm_loss, mcc_loss

    z = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # MCC by hand (T = 1): probabilities, entropy weights, class correlation, row-normalised off-diagonal mean
    p = torch.softmax(z, 1).double()
    h = -(p * torch.log(p + 1e-5)).sum(1)
    w = 1 + torch.exp(-h)
    w = 3 * w / w.sum()
    cov = torch.zeros(2, 2, dtype=torch.float64)
    for i in range(3):
        cov += w[i] * torch.outer(p[i], p[i])
    cov = cov / cov.sum(1, keepdim=True)
    assert float(mcc_loss(z, 1.0)) == pytest.approx(float((cov[0, 1] + cov[1, 0]) / 2), rel=1e-5)
    # BNM: singular values of the prediction matrix
    s = torch.linalg.svdvals(p)
    assert float(bnm_loss(z)) == pytest.approx(-float(s.sum()) / 3, rel=1e-5)
    assert float(fbnm_loss(z)) == pytest.approx(-float(torch.sort(p.norm(dim=0), descending=True)[0].sum()) / 3,
                                                rel=1e-5)
    assert float(entropy_loss(z)) == pytest.approx(float(-(p * p.log()).sum(1).mean()), rel=1e-5)
    # a confident, diverse batch has no class confusion and the largest nuclear norm
    sharp = torch.tensor([[20.0, 0.0], [0.0, 20.0]])
    assert float(mcc_loss(sharp, 1.0)) < 1e-6 and float(bnm_loss(sharp)) == pytest.approx(-1.0, abs=1e-6)


def _dann_toy(weight: float, steps: int = 600):
    from vdgtool.methods.base import Progress
    from vdgtool.methods.da import DomainAlignment

    g = torch.Generator().manual_seed(0)
    n = 256
    ys = torch.randint(0, 2, (n,), generator=g)
    xs = torch.randn(n, 4, generator=g) * 0.3
    xs[:, 0] += ys * 2 - 1
    xt = torch.randn(n, 4, generator=g) * 0.3
    xt[:, 0] += torch.randint(0, 2, (n,), generator=g) * 2 - 1
    xt[:, 1] += 3.0  # the domain shift, in a direction the class does not need
    torch.manual_seed(0)
    feat, head = torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)
    da = DomainAlignment("dann", 4, {"da_weight": weight, "disc_hidden": 16, "da_schedule": "constant"})
    opt = torch.optim.Adam([*feat.parameters(), *head.parameters(), *da.parameters()], lr=0.01)
    prog = Progress(steps_per_epoch=1, epochs=1)
    accs = []
    for _ in range(steps):
        fs, ft = feat(xs), feat(xt)
        loss, m = da.loss(fs, ft, None, None, prog)
        loss = loss + torch.nn.functional.cross_entropy(head(fs), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()
        accs.append(m["domain_acc"])
    with torch.no_grad():
        class_acc = float((head(feat(xs)).argmax(1) == ys).float().mean())
    return float(np.mean(accs[-100:])), class_acc


def test_dann_aligns_features_to_chance_domain_accuracy():
    """Two domains that differ by a shift in a nuisance direction. With the reversal coefficient at 0 (the
    control: the domain classifier learns, the features are not pushed) the domains stay separable; with
    DANN the domain classifier's accuracy falls to chance while the class stays separable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: threads only add overhead
    try:
        control, _ = _dann_toy(0.0, 300)
        dann, class_acc = _dann_toy(1.0, 300)
    finally:
        torch.set_num_threads(threads)
    assert control > 0.95
    assert abs(dann - 0.5) < 0.1 and class_acc > 0.9


# -- user method modules ---------------------------------------------------------------------------------------
def test_user_method_module_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "mylab_methods.py").write_text(
        "from vdgtool.methods import register_method\nfrom vdgtool.methods.erm import ERM\n\n"
        "@register_method('mylab-erm')\nclass Mine(ERM):\n    description = 'mine'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("VDGTOOL_METHOD_MODULES", "mylab_methods")
    from vdgtool.methods import list_methods

    assert "mylab-erm" in list_methods()
    monkeypatch.setenv("VDGTOOL_METHOD_MODULES", "no_such_module_xyz")
    with pytest.raises(ConfigError, match="no_such_module_xyz"):
        list_methods()


# -- DDP: two processes, a two-network method with a target stream -----------------------------------------------
@pytest.mark.slow
def test_torchrun_two_stream_with_target(data, tmp_path):
    import shutil

    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    if not os.path.exists(torchrun):
        pytest.skip("torchrun not found")
    (tmp_path / "ddp_probe_methods.py").write_text(
        "import json, os\nfrom vdgtool.methods import register_method\n"
        "from vdgtool.methods.two_stream import TwoStream\n\n"
        "@register_method('test-ts-probe')\nclass Probe(TwoStream):\n"
        "    def training_step(self, batches, stepper):\n"
        "        out = super().training_step(batches, stepper)\n"
        "        r = int(os.environ.get('RANK', 0))\n"
        "        with open(os.path.join(self.ctx.cfg.output, f'target_keys.{r}.jsonl'), 'a') as f:\n"
        "            f.write(json.dumps(list(batches['target']['key'])) + '\\n')\n"
        "        return out\n")
    out = tmp_path / "ddp"
    os.makedirs(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VDGTOOL_METHOD_MODULES": "ddp_probe_methods",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    cmd = [torchrun, "--nproc-per-node", "2", "--master-port", "29533", "-m", "vdgtool", "train", "--data",
           data["src"], "--flow", data["src_flow"], "--target", data["tgt"], "--target-flow", data["tgt_flow"],
           "--val", data["val"], "--val-flow", data["val_flow"], "--method", "test-ts-probe", "--hp", "da=mcc",
           "--model", "test_c3d", "--size", "32", "--epochs", "1", "--batch-size", "2", "-o", str(out), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert (out / "done").exists() and r.stdout.count('"run_dir"') == 1
    k0 = [json.loads(x) for x in (out / "target_keys.0.jsonl").read_text().splitlines()]
    k1 = [json.loads(x) for x in (out / "target_keys.1.jsonl").read_text().splitlines()]
    assert len(k0) == len(k1) >= 2 and all(not set(a) & set(b) for a, b in zip(k0, k1))
    ck = _weights(out)
    assert set(ck["networks"]) >= {"rgb", "flow"}


@pytest.mark.slow
def test_sigterm_to_the_process_group_with_workers_checkpoints(data, tmp_path):
    """SLURM pre-emption signals the whole process group: with DataLoader workers the main process must still
    write preempt.pt and exit with its one-line message (the workers ignore the signal)."""
    import time

    out = tmp_path / "pg"
    vdg = os.path.join(os.path.dirname(sys.executable), "vdgtool")
    cmd = [vdg if os.path.exists(vdg) else "vdgtool", "train", "--data", data["src"], "--model", "test_c3d",
           "--size", "32", "--epochs", "60", "--batch-size", "1", "--workers", "2", "-o", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "checkpoints" / "last.pt").exists():
        time.sleep(0.2)  # wait for the first finished epoch: the run is then mid-epoch 2 with live workers
    assert (out / "checkpoints" / "last.pt").exists(), p.communicate(timeout=5)
    time.sleep(0.5)
    os.killpg(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=240)
    assert p.returncode == 1, err[-2000:]
    assert "--resume" in err and "Traceback" not in err and "internal error" not in err
    ck = torch.load(out / "checkpoints" / "preempt.pt", weights_only=True)
    stop = int(ck["epoch"])
    r = subprocess.run(cmd[:cmd.index("--epochs") + 1] + [str(stop + 1)] + cmd[cmd.index("--epochs") + 2:]
                       + ["--resume"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "done").exists() and not (out / "checkpoints" / "preempt.pt").exists()


def test_store_options_take_at_file_lists(data, tmp_path, cli):
    lst = tmp_path / "stores.txt"
    lst.write_text(f"{data['src']}\n")
    out = tmp_path / "at"
    r = cli(["train", "--data", f"@{lst}", "--val", f"@{lst}", "--model", "test_c3d", "--size", "32", "--epochs", "1",
             "--batch-size", "3", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["data"] == [data["src"]]
    r = cli(["eval", str(out), "--data", f"@{lst}", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["data"] == [data["src"]]
