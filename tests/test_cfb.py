"""--method cfb (MM 2024 image-to-video): bank composition, empty classes, controls, prediction, resume."""

from __future__ import annotations

import json
import os
import types

import numpy as np
import pytest
import torch

from vdgtool.adapt.bank import FlowBank
from vdgtool.errors import ConfigError
from vdgtool.methods import get_method, parse_hparams
from vdgtool.models import create_model
from vdgtool.models.i3d import PerTimeOutput
from vdgtool.stores import VideoStoreWriter
from vdgtool.train.config import TrainConfig
from vdgtool.train.engine import train

CLASSES = ["a", "b", "c"]
FLOW_CONV = {"quantisation": "linear_uint8", "bound": 20.0, "kind": "flow"}
I3D_ARGS = {"variant": "st-i2v", "dropout": 0.5, "bn_momentum": 0.1}


def _clips(path, n_per_class=3, frames=9, size=32, seed=0, domain="src", prefix="v"):
    rng = np.random.default_rng(seed)
    with VideoStoreWriter(str(path), classes=CLASSES, domains=[domain], encoding="raw") as w:
        for k in range(len(CLASSES) * n_per_class):
            c = k // n_per_class
            fr = rng.integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
            fr[..., c] = 40 + 60 * c
            w.add_video(f"{prefix}{k}", fr, index=k, label=c, domain=domain, fps=8)
    return str(path)


def _flow(path, clip_store, size=32, value=None):
    """Flow of ``clip_store``'s videos; field value ``value(row)`` (default: the class's motion)."""
    from vdgtool.stores import VideoStore

    src = VideoStore(clip_store)
    with VideoStoreWriter(str(path), "flow", classes=src.classes, domains=src.domains, conventions=FLOW_CONV,
                          encoding="raw") as w:
        for r in range(len(src)):
            lab = int(src.meta["label"][r])
            v = value(r) if value else 127 + 40 * (lab - 1)
            fl = np.full((int(src.meta["num_frames"][r]) - 1, size, size, 2), v, np.uint8)
            w.add_video(src.meta["key"][r], fl, index=r, label=lab, domain=src.domains[0], fps=8)
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfb")
    src = _clips(d / "src.h5")
    tgt = _clips(d / "tgt.h5", seed=2, domain="tgt", prefix="t")
    return {"src": src, "tgt": tgt, "dir": d, "src_flow": _flow(d / "src_flow.h5", src, value=lambda r: 127),
            # target flow value = 10 * row + 5: each target video's flow says which video it is
            "tgt_flow": _flow(d / "tgt_flow.h5", tgt, value=lambda r: 10 * r + 5)}


def _cfg(data, out, **kw):
    base = dict(method="cfb", data=[data["src"]], flow=[data["src_flow"]], target=[data["tgt"]],
                target_flow=[data["tgt_flow"]], output=str(out), model="test_i3d", model_kwargs=dict(I3D_ARGS),
                flow_model_kwargs=dict(I3D_ARGS), num_frames=4, epochs=3, batch_size=3, lr=0.01, optimizer="adamw",
                size=32, seed=3, hp={"warmup": 1, "bank_size": 2, "eval_frames": 8})
    hp = kw.pop("hp", {})
    base.update(kw)
    base["hp"] = {**base["hp"], **hp}
    return TrainConfig(**base)


def _method(hp=None, num_classes=3):
    cls = get_method("cfb")
    nets = {n: create_model("test_i3d", num_classes, in_channels=3 if n == "rgb" else 2, num_frames=4, size=32,
                            **I3D_ARGS) for n in cls.NETWORKS}
    return cls(nets, num_classes, parse_hparams(cls, {"eval_frames": 8, **(hp or {})}))


def _attach_flow_store(m, data):
    """The bank's flow reader of a method without a trainer (what setup() builds)."""
    from vdgtool.data import build_dataset

    m._flow_ds = build_dataset([data["tgt_flow"]], m.eval_specs()["flow"], False, class_names=CLASSES,
                               hide_labels=True)
    m._flow_pos = {str(k): i for i, k in enumerate(m._flow_ds.keys.tolist())}
    m.ctx = types.SimpleNamespace(cfg=types.SimpleNamespace(seed=0), rank=0)


def _field(value):
    """The normalised value of a uint8 flow field (x / 255 - 0.5) / 0.5."""
    return (value / 255.0 - 0.5) / 0.5


def test_retrieved_flow_is_the_entry_of_the_source_class_and_empty_class_keeps_its_own(data):
    m = _method({"bank_size": 2})
    _attach_flow_store(m, data)
    # hand-made bank: class 0 holds target rows 1 and 2, class 1 holds row 4, class 2 is empty
    scores = np.zeros((9, 3))
    scores[[1, 2], 0], scores[4, 1] = [1.9, 1.5], 1.2
    scores[[0, 3, 5, 6, 7, 8], 1] = 0.1  # lower than row 4: not kept (N = 2, but row 4 first)
    keys = [f"t{r}" for r in range(9)]
    m.bank.rebuild(scores, keys)
    assert [e.key for e in m.bank.entries(0)] == ["t1", "t2"] and m.bank.entries(2) == ()
    own = torch.full((3, 2, 4, 32, 32), -7.0)
    out, n = m._compose(own, torch.tensor([0, 1, 2]))
    assert n == 2
    vals = {round(float(out[0].mean()), 4)}
    assert vals <= {round(_field(15), 4), round(_field(25), 4)}  # row 1 or 2 of the flow store
    assert torch.allclose(out[1], torch.full_like(out[1], _field(45)), atol=1e-5)  # row 4
    assert torch.equal(out[2], own[2])  # empty class: its own flow
    # mean retrieval: the average of the class's entries
    m.hp["retrieval"] = "mean"
    out, _ = m._compose(own, torch.tensor([0]))
    assert torch.allclose(out[0], torch.full_like(out[0], (_field(15) + _field(25)) / 2), atol=1e-5)


def test_derangement_and_controls():
    from vdgtool.methods.cfb import derangement

    rng = np.random.default_rng(0)
    for n in (2, 3, 7):
        p = derangement(n, rng)
        assert sorted(p) == list(range(n)) and all(p[i] != i for i in range(n))
    b = FlowBank(3, 2)
    # oracle: the bank class is the given label, its confidence the score of that class
    b.rebuild(np.array([[1.5, 0.5, 0], [0.2, 1.8, 0], [1.0, 0.9, 0.1]]), ["x", "y", "z"], labels=[1, 1, 0],
              true_labels=[1, 1, 0])
    assert [e.key for e in b.entries(1)] == ["y", "x"] and b.entries(1)[1].confidence == 0.5
    assert b.stats()["pseudo_label_accuracy"] == pytest.approx(2 / 3)  # of the argmax, not of the oracle labels


def test_predict_is_the_time_mean_of_the_fused_softmax():
    class Stub(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.z = logits
            self.num_features, self.input_spec = 4, types.SimpleNamespace(num_frames=4)

        def forward_per_time(self, x):
            return PerTimeOutput(self.z, torch.zeros(len(self.z), 4, 2))

        def forward(self, x, per_time=False, with_features=False):
            return self.forward_per_time(x)

    g = torch.Generator().manual_seed(0)
    zr, zf = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    cls = get_method("cfb")
    m = cls({"rgb": Stub(zr), "flow": Stub(zf)}, 3, parse_hparams(cls, {"eval_frames": 8}))
    out = m.predict({"rgb": torch.zeros(2), "flow": torch.zeros(2)})
    want = (zr.softmax(1) + zf.softmax(1)).mean(2) / 2
    assert torch.allclose(out["probs"], want, atol=1e-6)
    assert torch.allclose(out["streams"]["flow"].softmax(1), zf.softmax(1).mean(2), atol=1e-6)
    # the time mean of softmax, not the softmax of the time-mean logits
    assert not torch.allclose(out["streams"]["rgb"].softmax(1), zr.mean(2).softmax(1), atol=1e-4)


def test_eval_frames_must_divide_and_oracle_needs_labels(data, tmp_path):
    with pytest.raises(ConfigError, match="eval_frames"):
        _method({"eval_frames": 6})
    from vdgtool.stores import VideoStore

    unl = tmp_path / "unl.h5"
    src = VideoStore(data["tgt"])
    with VideoStoreWriter(str(unl), classes=CLASSES, domains=["tgt"], encoding="raw") as w:
        for r in range(len(src)):
            w.add_video(src.meta["key"][r], src.read(r, np.arange(9)), index=r, label=-1, domain="tgt", fps=8)
    with pytest.raises(ConfigError, match="oracle"):
        train(_cfg(data, tmp_path / "o", target=[str(unl)], hp={"bank": "oracle"}, epochs=1))


def test_bank_is_built_after_warmup_logged_and_exact_on_resume(data, tmp_path, monkeypatch):
    full = train(_cfg(data, tmp_path / "full", hp={"warmup": 2}))
    res = [json.loads(x) for x in open(tmp_path / "full" / "results.jsonl")]
    ev = [r for r in res if r.get("event") == "cfb_bank"]
    assert [e["epoch"] for e in ev] == [1, 2]  # first built at the end of epoch warmup-1 = 1
    assert ev[0]["fill"] and sum(ev[0]["fill"]) <= 3 * 2 and ev[0]["pseudo_label_accuracy"] is not None
    assert {"pool_fused", "pool_rgb", "pool_flow", "overall_purity"} <= set(ev[0])
    epochs = [r for r in res if "event" not in r]
    assert epochs[1]["train_bank_replaced"] == 0 and epochs[2]["train_bank_replaced"] > 0  # used from epoch 2
    ck = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)
    assert len(ck["method_state"]["bank"]["keys"]) == sum(ev[-1]["fill"])
    # killed before epoch 2 (the bank built, not yet used), resumed: bank and weights as the uninterrupted run
    from vdgtool.train.engine import Trainer

    orig = Trainer._run_epoch

    def killed(self, stepper, make_loader):
        if self.epoch == 2:
            raise KeyboardInterrupt
        return orig(self, stepper, make_loader)

    monkeypatch.setattr(Trainer, "_run_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(data, tmp_path / "part", hp={"warmup": 2}))
    monkeypatch.undo()
    train(_cfg(data, tmp_path / "part", hp={"warmup": 2}), resume=True)
    ck2 = torch.load(tmp_path / "part" / "checkpoints" / "last.pt", weights_only=True)
    assert ck2["method_state"] == ck["method_state"]
    for name, st in ck["networks"].items():
        assert all(torch.equal(st[k], ck2["networks"][name][k]) for k in st), name
    assert full["method"] == "cfb"


@pytest.mark.slow
def test_cli_train_eval_shuffled_bce_da_clamp(data, tmp_path, run_cli):
    out = tmp_path / "run"
    args = ["train", "--method", "cfb", "--data", data["src"], "--flow", data["src_flow"], "--target", data["tgt"],
            "--target-flow", data["tgt_flow"], "--model", "test_i3d", "--num-frames", "4", "--size", "32",
            "--epochs", "2", "--batch-size", "3", "--seed", "1", "-o", str(out), "--paired-crop", "independent",
            "--hp", "warmup=1", "--hp", "bank_size=2", "--hp", "eval_frames=8", "--hp", "bank=shuffled",
            "--hp", "loss=bce", "--hp", "local_streams=both", "--hp", "da=mcc", "--hp", "da_weight=0.3",
            "--hp", "grad_clamp=1", "--hp", "pace_wrap=restart", "--hp", "warmup_release=true"]
    for k, v in I3D_ARGS.items():
        args += ["--model-arg", f"{k}={v}", "--flow-model-arg", f"{k}={v}"]
    code, _, err = run_cli(*args)
    assert code == 0, err
    cfg = json.load(open(out / "config.json"))
    assert cfg["hparams"]["loss"] == "bce" and cfg["hparams"]["grad_clamp"] == 1.0 and cfg["paired_crop"] == "independent"
    ev = [json.loads(x) for x in open(out / "results.jsonl") if '"cfb_bank"' in x]
    assert [e["epoch"] for e in ev] == [1]  # the release's warm-up: one more epoch on source flows
    assert ev[0]["perm"] and all(p != i for i, p in enumerate(ev[0]["perm"]))
    code, stdout, err = run_cli("eval", str(out / "checkpoints" / "last.pt"), "--data", data["tgt"], "--flow",
                                data["tgt_flow"], "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert res["method"] == "cfb" and set(res["streams"]) == {"rgb", "flow"} and res["n"] == 9
