"""Video ADA (``apn-ada``), image ADA (``ada``), the size-matched random control and the gamma ensemble."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vdgtool.errors import ConfigError
from vdgtool.methods import Stepper, get_method, parse_hparams
from vdgtool.models import create_model


def _method(name, model="test_apn", num_classes=4, **hp):
    torch.manual_seed(0)
    # padding_masks=False: the code's masks make a clip's output depend on its batch in float32 (docs/apn.md),
    # which would blur the exact gradient comparisons below
    kw = {"padding_masks": False, "frame_dropout": 0.5} if model == "test_apn" else {"num_frames": 5}
    net = create_model(model, num_classes=num_classes, **kw)
    cls = get_method(name)
    return cls(net, num_classes, parse_hparams(cls, hp))


def _batch(b=2, t=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, t, 32, 32, generator=g), torch.arange(b) % 4


def _level_gradient(net, x, y, level, subsets):
    xr = x.clone().requires_grad_(True)
    ce = F.cross_entropy(net(xr, pyramid=True, subsets=subsets)["logits"][level].float(), y)
    (g,) = torch.autograd.grad(ce, xr)
    return g


def test_one_ascent_step_is_each_levels_own_gradient_and_the_cost_starts_at_zero():
    """t_max=1: x_adv - x = eta * grad_x CE(h(R^level(x))) for every level, batched or not; gamma does not
    change the first step (the reference is taken with the attacked network, so the cost is 0 and flat)."""
    m = _method("apn-ada", t_max=1, eta=1e3, gamma=0.0)
    x, y = _batch()
    torch.manual_seed(7)
    adv = m.attack(x, y)
    assert sorted(adv) == ["II", "III"]
    net = m.net().eval()
    torch.manual_seed(7)
    s = net.sample_subsets(train=True)
    for lvl in ("II", "III"):
        g = _level_gradient(net, x, y, lvl, s)
        d = adv[lvl] - x  # float32 rounding of x + step: an error of about 1e-7 on each element
        assert torch.allclose(d, 1e3 * g, rtol=1e-3, atol=1e-6 + 1e-3 * d.abs().max().item())
    assert not torch.allclose(adv["II"], adv["III"])  # the level choice matters
    m2 = _method("apn-ada", t_max=1, eta=1e3, gamma=100.0)
    torch.manual_seed(7)
    adv2 = m2.attack(x, y)
    assert all((adv[k] - adv2[k]).abs().max() < 1e-4 * (adv[k] - x).abs().max() for k in adv)


@pytest.mark.parametrize("levels,expect", [("III", ["III"]), ("II", ["II"]), ("global", ["global"])])
def test_ada_increases_the_loss_of_its_level(levels, expect):
    m = _method("apn-ada", levels=levels, eta=200.0)  # a visible step on an untrained net
    x, y = _batch()
    torch.manual_seed(3)
    adv = m.attack(x, y)
    assert sorted(adv) == expect
    net = m.net().eval()
    torch.manual_seed(3)
    s = net.sample_subsets(train=True)
    with torch.no_grad():
        clean = F.cross_entropy(net(x, pyramid=True, subsets=s)["logits"][expect[0]], y)
        attacked = F.cross_entropy(net(adv[expect[0]], pyramid=True, subsets=s)["logits"][expect[0]], y)
    assert attacked > clean + 1e-4


def test_image_ada_on_trn_increases_the_loss_and_apn_ada_needs_an_apn():
    m = _method("ada", model="test_trn", eta=200.0)
    x, y = _batch()
    adv = m.attack(x, y)["last"]
    net = m.net().eval()
    with torch.no_grad():
        assert F.cross_entropy(net(adv), y) > F.cross_entropy(net(x), y) + 1e-4
    with pytest.raises(ConfigError, match="apn-ada needs an APN"):
        _method("apn-ada", model="test_trn")


def test_random_control_has_the_adversarial_norm_and_a_random_direction():
    x, y = _batch()
    torch.manual_seed(5)
    adv = _method("apn-ada", eta=50.0).attack(x, y)
    torch.manual_seed(5)
    rnd = _method("apn-ada", eta=50.0, attack="random").attack(x, y)
    for k in adv:
        da, dr = (adv[k] - x).flatten(1), (rnd[k] - x).flatten(1)
        assert torch.allclose(da.norm(dim=1), dr.norm(dim=1), rtol=1e-4)
        assert F.cosine_similarity(da, dr).abs().max() < 0.1


def test_eps_bound_and_pixel_clamp_when_asked():
    from vdgtool.methods.adversarial import PixelBox

    m = _method("apn-ada", eta=1e4, eps=2 / 255, clamp=True)
    box = PixelBox(m.net().input_spec, "cpu")
    x, y = _batch()
    x = box.from_pixels(torch.sigmoid(x))  # valid pixels
    adv = m.attack(x, y)
    for xa in adv.values():
        assert ((xa - x).abs() <= box.scale(2 / 255) + 1e-6).all()
        assert (xa >= box.lo - 1e-6).all() and (xa <= box.hi + 1e-6).all()


class _CountingStepper(Stepper):
    def __init__(self, opt):
        super().__init__({"model": opt}, None, None, contextlib.nullcontext)
        self.n = 0

    def step(self, loss, name="model", **kw):
        self.n += 1
        return super().step(loss, name, **kw)


@pytest.mark.parametrize("update,levels,steps", [("paper", "II,III", 3), ("paper", "III", 2), ("joint", "II,III", 1)])
def test_paper_update_steps_per_level_and_joint_once(update, levels, steps):
    m = _method("apn-ada", update=update, levels=levels)
    st = _CountingStepper(torch.optim.SGD(m.model.parameters(), lr=0.01))
    x, y = _batch()
    m.model.train()
    out = m.training_step({"source": {"video": x, "label": y}}, st)
    assert st.n == steps and np.isfinite(out["loss"])
    met = m.epoch_metrics()
    assert set(met) == {f"{p}_{lvl}{s}" for lvl in levels.split(",") for p, s in
                        (("pert", "_mean"), ("pert", "_max"), ("acc_adv", ""))}
    assert all(0 < met[f"pert_{lvl}_mean"] <= met[f"pert_{lvl}_max"] for lvl in levels.split(","))


def test_ensemble_rules_on_hand_made_predictions():
    from vdgtool.evaluate.ensemble import combine

    a = np.array([[0.6, 0.4], [0.5, 0.5], [0.2, 0.8]])
    b = np.array([[0.1, 0.9], [0.5, 0.5], [0.3, 0.7]])
    s, chosen = combine([a, b], "maxconf")
    assert chosen.tolist() == [1, 0, 0]  # clip 1: a tie goes to the first member
    assert np.allclose(s, [[0.1, 0.9], [0.5, 0.5], [0.2, 0.8]])
    s, chosen = combine([a, b], "mean")
    assert chosen is None and np.allclose(s, [[0.35, 0.65], [0.5, 0.5], [0.25, 0.75]])
    with pytest.raises(ConfigError, match="unknown ensemble rule"):
        combine([a], "vote")


# -- through the engine ------------------------------------------------------------------------------------
def _store(path, n_per_class=3, seed=0, classes=("a", "b", "c")):
    from vdgtool.stores import VideoStoreWriter

    rng = np.random.default_rng(seed)
    with VideoStoreWriter(str(path), classes=list(classes), domains=["src"], encoding="raw") as w:
        for k in range(n_per_class * len(classes)):
            fr = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
            fr[..., k % 3] = 50 + 70 * (k % len(classes))
            w.add_video(f"v{k}", fr, index=k, label=k % len(classes), domain="src", fps=8)
    return str(path)


@pytest.mark.slow
def test_resume_mid_epoch_and_deterministic_eval_and_ensemble(tmp_path, monkeypatch, run_cli):
    """apn-ada with the random control (RNG inside the step) stopped mid-epoch and resumed equals the
    uninterrupted run, perturbation metrics included; two eval passes agree; eval --ensemble runs."""
    from conftest import preempt_mid_run
    from vdgtool.methods.base import METHODS
    from vdgtool.train.config import TrainConfig
    from vdgtool.train.engine import Trainer, train

    src, val = _store(tmp_path / "src.h5"), _store(tmp_path / "val.h5", 1, seed=1)

    def cfg(out):
        return TrainConfig(data=[src], val=[val], output=str(out), model="test_apn", num_frames=5, epochs=2,
                           batch_size=3, lr=0.01, size=32, seed=3, method="apn-ada",
                           hp={"attack": "random", "eta": 20.0}, model_kwargs={"frame_dropout": 0.5})

    train(cfg(tmp_path / "full"))
    t = Trainer(cfg(tmp_path / "pre"))
    preempt_mid_run(t, METHODS["apn-ada"], monkeypatch, epoch=1, step=0)
    train(cfg(tmp_path / "pre"), resume=True)
    a = torch.load(tmp_path / "full/checkpoints/last.pt", weights_only=True)
    b = torch.load(tmp_path / "pre/checkpoints/last.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["method_state"] == b["method_state"]

    def epochs(run):
        return [json.loads(x) for x in (tmp_path / run / "results.jsonl").read_text().splitlines()]

    ea, eb = epochs("full"), epochs("pre")
    last = [e for e in ea if "event" not in e][-1]["method"]
    assert last == [e for e in eb if "event" not in e][-1]["method"] and last["pert_II_mean"] > 0
    assert [e["epoch"] for e in ea if e.get("event") == "perturbation"] == [0, 1]

    outs = [run_cli("eval", str(tmp_path / "full"), "--data", val, "--json") for _ in range(2)]
    assert outs[0][0] == 0 and json.loads(outs[0][1])["per_class"] == json.loads(outs[1][1])["per_class"]
    code, out, err = run_cli("eval", str(tmp_path / "full"), "--ensemble", str(tmp_path / "pre"), "--data", val,
                             "--ensemble-rule", "maxconf", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["ensemble"]["rule"] == "maxconf" and len(res["ensemble"]["members"]) == 2
    assert res["top1"] == pytest.approx(json.loads(outs[0][1])["top1"])  # identical members
