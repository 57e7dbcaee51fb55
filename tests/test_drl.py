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
        hp.setdefault("student_pretrained", False)  # test students have no ImageNet weights
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
    m, _ = _method("drl-pgd", model_name, eps=eps, alpha=2 / 255 if steps > 1 else 0.0, attack_steps=steps,
                   random_start=random_start, clamp=True, attack_target="label")
    batch = _batch(m.model, b=4)
    spec = m.model.input_spec
    x, y = batch["video"], batch["label"]
    # push some pixels to the edge of the valid range: the attack must not leave it
    x[:, :, :, :4] = ((torch.zeros(1) - torch.tensor(spec.mean).view(1, -1, 1, 1, 1))
                      / torch.tensor(spec.std).view(1, -1, 1, 1, 1)).expand_as(x[:, :, :, :4])
    m.student.train()
    xa = m.attack(x, m.model(x), y)
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
                            hp={"student": "test_frame2d", "student_pretrained": False, "student_lr_mult": 2.0}, **base))
    ck = load_checkpoint(str(tmp_path / "drl" / "checkpoints" / "last.pt"))
    assert ck["networks"]["student"] and set(ck["optimizers"]) == {"model", "student"}
    assert ck["optimizers"]["student"]["param_groups"][0]["initial_lr"] == pytest.approx(0.02)
    assert ck["config"]["init"] == erm and "train_kl_student" in res["final"]
    # an interruption after epoch 1 of 2 (no done marker): --resume restores and keeps training the student
    (tmp_path / "drl" / "done").unlink()
    train(TrainConfig(output=str(tmp_path / "drl"), method="drl-distill", init=erm,
                      hp={"student": "test_frame2d", "student_pretrained": False, "student_lr_mult": 2.0}, **{**base, "epochs": 2}), resume=True)
    ck2 = load_checkpoint(str(tmp_path / "drl" / "checkpoints" / "last.pt"))
    assert ck2["epoch"] == 2
    k = next(k for k, v in ck["networks"]["student"].items() if v.is_floating_point() and k.endswith("weight"))
    assert not torch.equal(ck["networks"]["student"][k], ck2["networks"]["student"][k])


@pytest.mark.slow
def test_cli_train_every_drl_method(tmp_path, run_cli):
    s = _store(tmp_path / "s.h5")
    for name in DRL:
        extra = (["--hp", "student=test_frame2d", "--hp", "student_pretrained=false"]
                 if name not in ("drl-freeze", "drl-shuffle") else [])
        code, out, err = run_cli("train", "--data", s, "--model", "test_tsm", "--method", name, "--epochs", "1",
                                 "--batch-size", "3", "--max-steps-per-epoch", "1", "-o", tmp_path / name, *extra)
        assert code == 0, (name, err)


# -- issue 14: the paper's and the release's settings ---------------------------------------------------
def test_defaults_are_the_papers_and_the_releases():
    fg, pgd = get_method("drl-fgsm").HPARAMS, get_method("drl-pgd").HPARAMS
    d = {k: v.default for k, v in fg.items()}
    assert (d["attack_target"], d["eps"], d["attack_steps"], d["alpha"], d["momentum"], d["momentum_norm"],
            d["clamp"], d["random_start"], d["student_pretrained"], d["student_ce"]) == \
        ("kl", 0.03, 5, 0.0, 1.0, "none", False, False, True, 0.0)
    d = {k: v.default for k, v in pgd.items()}
    assert (d["attack_steps"], d["alpha"], d["random_start"], d["momentum"], d["eps"]) == (7, 0.008, True, 0.0, 0.03)
    assert get_method("drl-distill").HPARAMS["student_ce"].default == 1.0
    # the docs' fraction spelling parses
    assert parse_hparams(get_method("drl-fgsm"), {"alpha": "1/255"})["alpha"] == pytest.approx(1 / 255)


def test_fgsm_and_pgd_call_the_attack_with_the_released_schedule(monkeypatch):
    import vdgtool.methods.drl as drl

    seen = {}

    def spy(x, loss_fn, **kw):
        seen.update(kw, loss=float(loss_fn(x)))
        return x

    monkeypatch.setattr(drl, "pixel_ascent", spy)
    m, _ = _method("drl-fgsm")
    x = _batch(m.model)["video"]
    m.attack(x, m.model(x))
    std = torch.tensor(m.model.input_spec.std).view(1, -1, 1, 1, 1)
    torch.testing.assert_close(seen["step_size"], 0.03 / 5 / std)  # 5 steps of eps / 5
    torch.testing.assert_close(seen["eps"], 0.03 / std)
    assert (seen["steps"], seen["momentum"], seen["momentum_norm"], seen["clamp"], seen["random_start"],
            seen["step_rule"]) == (5, 1.0, "none", False, False, "sign")
    m, _ = _method("drl-pgd")
    m.attack(x, m.model(x))
    torch.testing.assert_close(seen["step_size"], 0.008 / std)
    assert (seen["steps"], seen["momentum"], seen["random_start"], seen["clamp"]) == (7, 0.0, True, False)


@pytest.mark.parametrize("momentum,norm,expected", [(1.0, "none", 3), (1.0, "l1", 0), (0.0, "none", -1)])
def test_momentum_step_schedule_on_a_hand_made_gradient(momentum, norm, expected):
    """Gradients +10, -4, -4 (every element): raw accumulation with momentum 1 (the release) keeps
    stepping up (a = 10, 6, 2); MI-FGSM's normalised accumulation stops (a = 1, 0, -1); no momentum
    follows each gradient's sign."""
    from vdgtool.methods.adversarial import pixel_ascent

    grads = iter([10.0, -4.0, -4.0])

    def loss_fn(xa):
        return next(grads) * xa.sum()

    x = torch.zeros(2, 3, 2, 2, 2)
    xa = pixel_ascent(x, loss_fn, steps=3, step_size=0.01, eps=None, clamp=False, momentum=momentum,
                      momentum_norm=norm)
    torch.testing.assert_close(xa, torch.full_like(x, 0.01 * expected))


def test_soft_kl_attack_increases_the_kl_to_the_video_model_and_does_not_clamp():
    from vdgtool.methods.drl import kl_rows

    m, _ = _method("drl-fgsm", eps=8 / 255)
    batch = _batch(m.model, b=4)
    x = batch["video"]
    spec = m.model.input_spec
    std, mean = torch.tensor(spec.std).view(1, -1, 1, 1, 1), torch.tensor(spec.mean).view(1, -1, 1, 1, 1)
    x[:, :, :, :4] = ((0 - mean) / std).expand_as(x[:, :, :, :4])  # black pixels: a step down leaves [0, 1]
    m.eval()
    with torch.no_grad():
        f = m.model(x)
    xa = m.attack(x, f)
    with torch.no_grad():
        before, after = kl_rows(f, m.student(x)).mean(), kl_rows(f, m.student(xa)).mean()
    assert after > before * 1.05
    dpix = (xa - x) * std
    assert dpix.abs().max() <= 8 / 255 + 1e-5 and dpix.abs().max() > 4 / 255
    assert (xa * std + mean).min() < -1e-3  # no pixel clamp unless asked (the release)


def test_distill_student_loss_is_lambda_kl_plus_ce_as_released():
    from vdgtool.methods.drl import kl_rows

    m, stepper = _method("drl-distill", lam=0.5)
    batch = _batch(m.model)
    m.eval()
    with torch.no_grad():
        f, s = m.model(batch["video"]), m.student(batch["video"])
        want = 0.5 * kl_rows(f, s).mean() + torch.nn.functional.cross_entropy(s, batch["label"])
    out = m.training_step({"source": batch}, stepper)
    assert out["student_loss"] == pytest.approx(want.item(), rel=1e-4)


def test_static_batch_weighting_is_the_releases_mean_weight_times_mean_kl():
    from vdgtool.methods.drl import kl_rows

    batch = _batch(create_model("test_c3d", num_classes=3))
    outs = {}
    for w in ("static", "static-batch"):
        m, stepper = _method("drl-freeze", weighting=w, lam=1.0)
        m.eval()
        with torch.no_grad():
            f = m.model(batch["video"])
            t = m.model(batch["video"][:, :, :1].expand_as(batch["video"]))
            ce = torch.nn.functional.cross_entropy(f, batch["label"], reduction="none")
            ce_t = torch.nn.functional.cross_entropy(t, batch["label"], reduction="none")
            wt = 1 - torch.exp(-torch.relu(ce_t - ce))
            kl = kl_rows(f, t)
        outs[w] = m.training_step({"source": batch}, stepper)["loss"]
        want = ce.mean() - ((wt * kl).mean() if w == "static" else wt.mean() * kl.mean())
        assert outs[w] == pytest.approx(want.item(), rel=1e-4, abs=1e-6)


def test_list_methods_is_one_readable_block_per_method(run_cli):
    code, out, err = run_cli("train", "--list-methods")
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 100  # no 340-column table
    block = out.split("\ndrl-fgsm\n", 1)[1].split("\n\n", 1)[0]
    assert "--hp eps=0.03 [pixel scale 0-1]" in block and "--hp attack_target=kl" in block
    assert "--hp student_pretrained=true" in block and "Eq. 8" in block and "(one of kl, video, label)" in block
