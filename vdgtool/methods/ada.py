"""Adversarial data augmentation on the fly: image ADA (Volpi et al., NeurIPS 2018) for any model, and
APN's video ADA on the relational pyramid (Yao, Wang et al., "Adversarial Pyramid Network for Video
Domain Generalization", Algorithm 1; spec ``apn.md`` §2). See docs/apn.md.

Per minibatch (X, Y) and per feature level l, the clip X (all M frames, the model's normalised input) is
moved by ``t_max`` raw-gradient ascent steps of size ``eta`` on

    CE(h(z_l(X_adv)), Y) - gamma * MSE(z_l(X_adv), z_l(X))

with the conventions of spec §2.5 (batch-mean cross-entropy, MSE mean over B x features elements; no
epsilon ball and no pixel clamp by default, as in both sources). ``z_l`` is the classifier input of
level l: ``ada`` has one level (the last hidden layer, ``forward_features``); ``apn-ada`` has R^II, R^III
and R^I_Global of :meth:`vdgtool.models.apn.APN.forward_pyramid`.

* ``update=paper``: a clean theta-step on CE(h(z(X)), Y), then the attack with the updated theta, then one
  theta-step per level on CE(h(z_l(X_l)), Y) (Algorithm 1: level II through h(R^II), level III through
  h(R^III)). ``update=joint`` (the released code): the attack with the current theta, then one step on the
  mean CE over [X; X_III; X_II] through the model's forward (h(R^III)).
* The attack runs on the unwrapped network with its parameters frozen, in eval mode (``attack_mode=eval``:
  no dropout, bn1's running statistics, so the ascent starts with a transport cost of exactly 0) or in
  train mode as the code does (``attack_mode=train``). The reference features z_l(X) are computed once per
  batch (``reference=once``) or at every ascent step (``per_step``, the code). APN: one draw of local
  subsets serves the reference and every ascent pass (``resample_subsets=false``) or each pass draws its
  own (the code); the theta-steps draw fresh subsets as training always does.
* ``attack=random``: the size-matched control. The adversarial perturbation is computed as usual, then
  replaced by a random Gaussian direction with the same per-clip L2 norm, so that a gain of ADA can be
  told from noise augmentation of the same strength.

Each epoch, ``epoch_metrics`` reports per level the per-clip ``||X_adv - X|| / ||X||`` (mean, max) of
the clips trained on, and the accuracy on them beside the clean one.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from vdgtool.errors import ConfigError
from vdgtool.methods.adversarial import PixelBox, frozen, pixel_ascent, relative_norm
from vdgtool.methods.base import HParam, Method, register_method

ADA_HPARAMS = {
    "gamma": HParam(1.0, "weight of the transport cost gamma * MSE(z(x_adv), z(x)) (Volpi's reference config: 1)",
                    min=0.0),
    "eta": HParam(1.0, "ascent step size on the batch-mean objective (normalised input units)", min=0.0),
    "t_max": HParam(5, "ascent steps per batch", min=1),
    "update": HParam("paper", "paper: a clean theta-step, then one per level on its own head input; joint: "
                     "one step on [clean; adversarial copies] through the model's forward (released APN code)",
                     choices=("paper", "joint")),
    "reference": HParam("once", "reference features z(x): once per batch, or per_step (recomputed at every "
                        "ascent step, the released code)", choices=("once", "per_step")),
    "attack_mode": HParam("eval", "network mode during the attack: eval (no dropout; the ascent starts at cost 0) "
                          "or train (the released code: dropout on, bn1 statistics updated)",
                          choices=("eval", "train")),
    "eps": HParam(0.0, "L-inf bound of the perturbation in pixel units of [0, 1]; 0 = unbounded (both sources)",
                  min=0.0),
    "clamp": HParam(False, "clamp adversarial clips to the valid pixel range (neither source does)"),
    "attack": HParam("adversarial", "adversarial, or random: a random direction with the adversarial "
                     "perturbation's per-clip L2 norm (the size-matched control)", choices=("adversarial", "random")),
}


class _ADABase(Method):
    """The on-the-fly ADA loop over named feature levels; subclasses say what the levels are."""

    HPARAMS = ADA_HPARAMS

    def __init__(self, networks, num_classes, hparams, **kw):
        super().__init__(networks, num_classes, hparams, **kw)
        self._check_model()
        self._stats = self._empty_stats()

    # -- what subclasses define --------------------------------------------------------------------
    def _check_model(self) -> None:
        pass

    def levels(self) -> list[str]:
        return ["last"]

    def _draw(self):
        """Per-batch context of the attack passes (APN: the local subsets)."""
        return None

    def _attack_outputs(self, net, x, ctx) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """level -> (logits, features) of ``net`` (unwrapped, frozen) on ``x``."""
        logits, feats = net(x, with_features=True)
        return {"last": (logits, feats.flatten(1))}

    def _level_logits(self, x, level: str) -> torch.Tensor:
        """Logits of a theta-step on the adversarial copies of ``level`` (through the wrapped network)."""
        return self.model(x)

    # -- the attack -------------------------------------------------------------------------------
    def _spec(self):
        spec = getattr(self.net(), "input_spec", None)
        if spec is None and (self.hp["eps"] or self.hp["clamp"]):
            raise ConfigError(f"model {type(self.net()).__name__} declares no input_spec",
                              "eps and clamp need the normalisation; drop them or use a registry model")
        return spec

    @contextlib.contextmanager
    def _attack_net(self):
        net = self.net()
        with frozen(net):
            if self.hp["attack_mode"] == "train":
                net.train()
            yield net

    def attack(self, x: torch.Tensor, y: torch.Tensor, autocast=None) -> dict[str, torch.Tensor]:
        """Adversarial (or size-matched random) copies of ``x`` per level: ``{level: x_adv}`` (detached)."""
        autocast = autocast or contextlib.nullcontext
        spec = self._spec()
        box = PixelBox(spec, x.device) if spec is not None and (self.hp["eps"] or self.hp["clamp"]) else None
        eps = box.scale(float(self.hp["eps"])) if self.hp["eps"] else None
        gamma, resample = float(self.hp["gamma"]), bool(self.hp.get("resample_subsets", False))
        out, b = {}, x.shape[0]
        with self._attack_net() as net:
            ctx = self._draw()
            ref = None
            if self.hp["reference"] == "once":
                with torch.no_grad(), autocast():
                    ref = {k: f.detach() for k, (_, f) in self._attack_outputs(net, x, ctx).items()}
            levels = self.levels()
            # eval mode: rows are independent, so every level's copies ascend in one batched pass (the sum
            # of the levels' batch-mean objectives gives each copy exactly its own level's gradient); train
            # mode (the code) attacks level by level, as bn1's batch statistics would mix the copies
            groups = [levels] if self.hp["attack_mode"] == "eval" else [[lvl] for lvl in levels]
            for group in groups:
                def objective(xa, group=group):
                    c = self._draw() if resample else ctx
                    z0 = ref
                    if z0 is None:
                        with torch.no_grad(), autocast():
                            z0 = {k: f.detach() for k, (_, f) in self._attack_outputs(net, x, c).items()}
                    with autocast():
                        outs = self._attack_outputs(net, xa, c)
                    total = 0.0
                    for i, lvl in enumerate(group):
                        logits, z = (t[i * b:(i + 1) * b] for t in outs[lvl])
                        total = total + F.cross_entropy(logits.float(), y, ignore_index=-1) - gamma * F.mse_loss(
                            z.float(), z0[lvl].float())
                    return total

                xa = pixel_ascent(x.repeat(len(group), *([1] * (x.dim() - 1))), objective, steps=int(self.hp["t_max"]),
                                  step_size=float(self.hp["eta"]), step_rule="grad", eps=eps, box=box,
                                  clamp=bool(self.hp["clamp"]))
                for i, lvl in enumerate(group):
                    xl = xa[i * b:(i + 1) * b]
                    if self.hp["attack"] == "random":
                        xl = self._size_matched_random(x, xl, eps, box)
                    out[lvl] = xl
        return out

    def _size_matched_random(self, x, xa, eps, box):
        d = (xa - x).flatten(1)
        r = torch.randn_like(d)
        r = r / r.norm(dim=1, keepdim=True).clamp_min(1e-12) * d.norm(dim=1, keepdim=True)
        xr = x + r.view_as(x)
        if eps is not None:
            xr = torch.max(torch.min(xr, x + eps), x - eps)
        if self.hp["clamp"]:
            xr = box.clamp(xr)
        return xr.detach()

    # -- training ---------------------------------------------------------------------------------
    def training_step(self, batches, stepper):
        src = batches["source"]
        x, y = src["video"], src["label"]
        metrics = {}
        if self.hp["update"] == "paper":
            with stepper.autocast():
                logits = self.model(x)
                loss = self.ce(logits, y)
            stepper.step(loss, "model")
            metrics["loss_clean"] = loss.item()
            advs = self.attack(x, y, stepper.autocast)
            for lvl, xa in advs.items():
                with stepper.autocast():
                    la = self._level_logits(xa, lvl)
                    loss_a = self.ce(la, y)
                stepper.step(loss_a, "model")
                metrics[f"loss_adv_{lvl}"] = loss_a.item()
                self._record(lvl, xa, x, la.detach(), y)
            total = loss.item() + sum(metrics[f"loss_adv_{lvl}"] for lvl in advs)
        else:
            advs = self.attack(x, y, stepper.autocast)
            order = list(reversed(list(advs)))  # the code's order [clean; III; II]
            xs = torch.cat([x] + [advs[lvl] for lvl in order])
            ys = y.repeat(1 + len(order))
            with stepper.autocast():
                out = self.model(xs)
                loss = self.ce(out, ys)
            stepper.step(loss, "model")
            b = x.shape[0]
            logits = out[:b]
            for i, lvl in enumerate(order):
                self._record(lvl, advs[lvl], x, out[b * (i + 1):b * (i + 2)].detach(), y)
            total = loss.item()
        return {"loss": total, "acc": self.accuracy(logits.detach(), y), **metrics}

    # -- perturbation statistics (per epoch; part of the method state so a resumed epoch reports the same) --
    def _empty_stats(self) -> dict:
        return {lvl: {"n": 0, "norm_sum": 0.0, "norm_max": 0.0, "correct": 0} for lvl in self.levels()}

    def _record(self, lvl, xa, x, logits, y) -> None:
        r = relative_norm(xa, x).float()
        s = self._stats[lvl]
        m = y >= 0
        s["n"] += int(x.shape[0])
        s["norm_sum"] += float(r.sum())
        s["norm_max"] = max(s["norm_max"], float(r.max()))
        s["correct"] += int((logits[m].argmax(1) == y[m]).sum())

    def on_epoch_start(self, epoch: int) -> None:
        if self.progress.step_in_epoch == 0:  # not when resuming mid-epoch: the state holds the first part
            self._stats = self._empty_stats()

    def epoch_metrics(self) -> dict:
        out = {}
        for lvl, s in self._stats.items():
            if s["n"]:
                out[f"pert_{lvl}_mean"] = s["norm_sum"] / s["n"]
                out[f"pert_{lvl}_max"] = s["norm_max"]
                out[f"acc_adv_{lvl}"] = s["correct"] / s["n"]
        return out

    def on_epoch_end(self, epoch: int) -> None:
        m = self.epoch_metrics()
        if m:
            self.log_event("perturbation", epoch=epoch, attack=self.hp["attack"], **m)

    def get_state(self) -> dict:
        return {"stats": {k: dict(v) for k, v in self._stats.items()}}

    def set_state(self, state: dict) -> None:
        st = (state or {}).get("stats")
        if st:
            self._stats = {k: {"n": int(v["n"]), "norm_sum": float(v["norm_sum"]), "norm_max": float(v["norm_max"]),
                               "correct": int(v["correct"])} for k, v in st.items()}


@register_method("ada")
class ADA(_ADABase):
    description = ("Image ADA (Volpi et al. 2018) on the fly for any model: each batch gets an adversarial copy "
                   "from t_max raw-gradient ascent steps on CE - gamma MSE(last hidden layer); attack=random is "
                   "the size-matched control.")


#: --hp levels for apn-ada (spec §5.3 ablations): the levels that get adversarial copies, in update order
APN_LEVEL_SETS = {"II,III": ["II", "III"], "III": ["III"], "II": ["II"], "global": ["global"]}


@register_method("apn-ada")
class APNADA(_ADABase):
    description = ("APN video ADA (Algorithm 1): pixel-space adversarial copies of all M frames against the "
                   "pyramid levels II and III (levels=...), eta=1, t_max=5, gamma; update=paper|joint; "
                   "attack=random is the size-matched control. Needs --model apn.")
    HPARAMS = {
        **ADA_HPARAMS,
        "gamma": HParam(0.01, "weight of the transport cost (train.sh: 0.01; the paper ensembles 0.001, 0.01, 0.1, 1)",
                        min=0.0),
        "levels": HParam("II,III", "pyramid levels that get adversarial copies: II,III (ADA*), III (the last hidden "
                         "layer), II, or global (R^I_Global)", choices=tuple(APN_LEVEL_SETS)),
        "resample_subsets": HParam(False, "draw new local subsets for every attack pass (the released code); "
                                   "false: one draw per batch for the reference and every ascent step"),
    }

    def _check_model(self) -> None:
        net = self.net()
        if not hasattr(net, "forward_pyramid"):
            raise ConfigError(f"apn-ada needs an APN model (--model apn or test_apn), got {type(net).__name__}",
                              "use --model apn, or --method ada for image ADA on any model")

    def levels(self) -> list[str]:
        return list(APN_LEVEL_SETS[self.hp["levels"]])

    def _draw(self):
        return self.net().sample_subsets(train=True)

    def _attack_outputs(self, net, x, ctx):
        out = net(x, pyramid=True, subsets=ctx)
        return {lvl: (out["logits"][lvl], out["features"][lvl]) for lvl in self.levels()}

    def _level_logits(self, x, level):
        return self.model(x, pyramid=True)["logits"][level]


__all__ = ["ADA", "ADA_HPARAMS", "APNADA", "APN_LEVEL_SETS"]
