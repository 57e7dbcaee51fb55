"""DRL training methods: every variant steps on every model family; attack bounds; engine integration."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from vdgtool.errors import ConfigError
from vdgtool.methods import Stepper, get_method, list_methods, parse_hparams
from vdgtool.models import create_model

torch.set_num_threads(1)
DRL = ("drl-fgsm", "drl-pgd", "drl-distill", "drl-freeze", "drl-shuffle")
FAMILIES = ("test_c3d", "test_r3d", "test_i3d", "test_tsn", "test_tsm", "test_trn")


def _method(name, model_name="test_c3d", num_classes=3, **hp):
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=num_classes)
    cls = get_method(name)
    if "student" in cls.HPARAMS:
        hp.setdefault("student", "test_frame2d")
    m = cls(model, num_classes, parse_hparams(cls, hp))
    opts = {k: torch.optim.SGD(v, lr=0.05) for k, v in m.parameter_groups().items()}
    return m, Stepper(opts, None, None, contextlib.nullcontext)


def _batch(model, b=3, seed=0):
    spec = model.input_spec
    g = torch.Generator().manual_seed(seed)
    pix = torch.rand(b, spec.in_channels, spec.num_frames, spec.size, spec.size, generator=g)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1, 1)
    return {"video": (pix - mean) / std, "label": torch.arange(b) % 3}


def test_registered_with_hyper_parameters():
    names = list_methods("drl-*")
    assert set(DRL) <= set(names)
    assert get_method("drl-freeze").HPARAMS["lam"].default == 0.5
    assert get_method("drl-pgd").HPARAMS["attack_steps"].default > 1
    assert get_method("drl-fgsm").HPARAMS["attack_steps"].default == 1
    with pytest.raises(ConfigError, match="attack_target"):
        parse_hparams(get_method("drl-fgsm"), {"attack_target": "nobody"})


@pytest.mark.parametrize("model_name", FAMILIES)
@pytest.mark.parametrize("name", DRL)
def test_every_method_steps_on_every_family(name, model_name):
    m, stepper = _method(name, model_name)
    m.train()
    before = {k: p.detach().clone() for k, p in m.model.named_parameters()}
    for step in range(2):
        out = m.training_step({"source": _batch(m.model, seed=step)}, stepper)
        assert np.isfinite(out["loss"]) and 0 <= out["acc"] <= 1
    changed = [k for k, p in m.model.named_parameters() if not torch.equal(before[k], p)]
    assert changed, "the video model was not updated"
    if "student" in m.extra_modules():
        assert set(m.parameter_groups()) == {"model", "student"}
        assert "student_loss" in out and out["student_loss"] >= 0


def test_student_is_updated_by_its_own_optimizer():
    m, stepper = _method("drl-distill")
    s0 = [p.detach().clone() for p in m.student.parameters()]
    f0 = [p.detach().clone() for p in m.model.parameters()]
    m.training_step({"source": _batch(m.model)}, stepper)
    assert any(not torch.equal(a, b) for a, b in zip(s0, m.student.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(f0, m.model.parameters()))
    ids_s = {id(p) for p in m.parameter_groups()["student"]}
    assert not ids_s & {id(p) for p in m.parameter_groups()["model"]}


@pytest.mark.parametrize("model_name", ["test_c3d", "test_i3d"])  # ImageNet and [-1, 1] conventions
@pytest.mark.parametrize("steps,random_start", [(1, False), (5, True)])
def test_attack_is_bounded_in_pixels_clamped_and_adversarial(model_name, steps, random_start):
    eps = 8 / 255
    m, _ = _method("drl-pgd", model_name, eps=eps, alpha=2 / 255, attack_steps=steps, random_start=random_start)
    batch = _batch(m.model, b=4)
    spec = m.model.input_spec
    x, y = batch["video"], batch["label"]
    # push some pixels to the edge of the valid range: the attack must not leave it
    x[:, :, :, :4] = ((torch.zeros(1) - torch.tensor(spec.mean).view(1, -1, 1, 1, 1))
                      / torch.tensor(spec.std).view(1, -1, 1, 1, 1)).expand_as(x[:, :, :, :4])
    m.student.train()
    xa = m.attack(x, y)
    assert m.student.training  # the attack runs the student in eval mode and restores the mode it found
    std = torch.tensor(spec.std).view(1, -1, 1, 1, 1)
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1, 1)
    dpix = (xa - x) * std
    assert dpix.abs().max() <= eps + 1e-5
    assert dpix.abs().max() >= eps * 0.5  # it did move
    pix = xa * std + mean
    assert pix.min() >= -1e-5 and pix.max() <= 1 + 1e-5
    m.student.eval()
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy
        assert ce(m.student(xa), y) > ce(m.student(x), y)
    assert all(p.requires_grad for p in m.student.parameters())


def test_freeze_loss_is_ce_minus_lambda_kl_and_lambda_zero_is_erm():
    from vdgtool.methods.drl import kl_rows

    m, stepper = _method("drl-freeze", lam=0.5)
    batch = _batch(m.model)
    m.eval()  # deterministic forward for the reference computation
    with torch.no_grad():
        f = m.model(batch["video"])
        t = m.model(batch["video"][:, :, :1].expand_as(batch["video"]))
        ce = torch.nn.functional.cross_entropy(f, batch["label"])
        kl = kl_rows(f, t).mean()
    out = m.training_step({"source": batch}, stepper)
    assert out["ce"] == pytest.approx(ce.item(), rel=1e-5) and out["kl"] == pytest.approx(kl.item(), rel=1e-4)
    assert out["loss"] == pytest.approx(ce.item() - 0.5 * kl.item(), rel=1e-4)
    # lam = 0: exactly the ERM update
    a, sa = _method("drl-freeze", lam=0.0)
    e, se = _method("erm")
    a.eval(), e.eval()
    a.training_step({"source": batch}, sa)
    e.training_step({"source": batch}, se)
    for p, q in zip(a.model.parameters(), e.model.parameters()):
        torch.testing.assert_close(p, q)


def test_freeze_gradient_vanishes_when_model_is_static():
    """The trap the issue warns about: a model that ignores time gets no signal from Algorithm 3."""
    m, stepper = _method("drl-freeze", "test_tsn", lam=1.0)  # TSN: f(frozen) != f(x) in general...
    batch = _batch(m.model)
    x = batch["video"][:, :, :1].expand_as(batch["video"]).contiguous()  # ...but on static clips they agree
    m.eval()
    out = m.training_step({"source": {"video": x, "label": batch["label"]}}, stepper)
    assert out["kl"] < 1e-10 and out["loss"] == pytest.approx(out["ce"], abs=1e-6)


def test_shuffle_permutation_per_batch_is_shared():
    m, _ = _method("drl-shuffle", permute="batch")
    x = torch.arange(8, dtype=torch.float32).view(1, 1, 8, 1, 1).expand(4, 3, 8, 2, 2)
    xt = m.perturbed(x)
    orders = xt[:, 0, :, 0, 0]
    assert all(torch.equal(orders[0], o) for o in orders) and orders[0].tolist() != list(range(8))


def _store(path, n_per_class=2, size=32, seed=0):
    from vdgtool.stores import VideoStoreWriter

    rng = np.random.default_rng(seed)
    with VideoStoreWriter(str(path), classes=["a", "b", "c"], conventions={"size": size}, encoding="raw") as w:
        for k in range(3 * n_per_class):
            fr = rng.integers(0, 255, (8, size, size, 3), dtype=np.uint8)
            w.add_video(f"v{k}", fr, index=k, label=k % 3, domain="real", fps=8)
    return str(path)


def test_fine_tune_through_the_engine_checkpoints_the_student(tmp_path):
    from vdgtool.train.checkpoint import load_checkpoint
    from vdgtool.train.config import TrainConfig
    from vdgtool.train.engine import train

    s = _store(tmp_path / "s.h5")
    base = dict(data=[s], model="test_c3d", epochs=1, batch_size=3, lr=0.01, seed=0)
    train(TrainConfig(output=str(tmp_path / "erm"), **base))
    erm = str(tmp_path / "erm" / "checkpoints" / "last.pt")
    res = train(TrainConfig(output=str(tmp_path / "drl"), method="drl-distill", init=erm,
                            hp={"student": "test_frame2d", "student_lr_mult": 2.0}, **base))
    ck = load_checkpoint(str(tmp_path / "drl" / "checkpoints" / "last.pt"))
    assert ck["networks"]["student"] and set(ck["optimizers"]) == {"model", "student"}
    assert ck["optimizers"]["student"]["param_groups"][0]["initial_lr"] == pytest.approx(0.02)
    assert ck["config"]["init"] == erm and "train_kl_student" in res["final"]
    # an interruption after epoch 1 of 2 (no done marker): --resume restores and keeps training the student
    (tmp_path / "drl" / "done").unlink()
    train(TrainConfig(output=str(tmp_path / "drl"), method="drl-distill", init=erm,
                      hp={"student": "test_frame2d", "student_lr_mult": 2.0}, **{**base, "epochs": 2}), resume=True)
    ck2 = load_checkpoint(str(tmp_path / "drl" / "checkpoints" / "last.pt"))
    assert ck2["epoch"] == 2
    k = next(k for k, v in ck["networks"]["student"].items() if v.is_floating_point() and k.endswith("weight"))
    assert not torch.equal(ck["networks"]["student"][k], ck2["networks"]["student"][k])


@pytest.mark.slow
def test_cli_train_every_drl_method(tmp_path, run_cli):
    s = _store(tmp_path / "s.h5")
    for name in DRL:
        extra = ["--hp", "student=test_frame2d"] if name not in ("drl-freeze", "drl-shuffle") else []
        code, out, err = run_cli("train", "--data", s, "--model", "test_tsm", "--method", name, "--epochs", "1",
                                 "--batch-size", "3", "--max-steps-per-epoch", "1", "-o", tmp_path / name, *extra)
        assert code == 0, (name, err)
