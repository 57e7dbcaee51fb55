"""Dynamic Representation Learning (Li & Vasconcelos, "Improving Video Model Transfer with Dynamic
Representation Learning", CVPR 2022): training objectives that push a video model away from what a
purely spatial model can explain. See docs/drl.md.

* ``drl-fgsm`` / ``drl-pgd`` (Algorithm 1, adversarial augmentation): a spatial student ``s`` is
  distilled from the video model ``f`` (KL, its own optimizer "student"); an ε-bounded perturbation
  adversarial to ``s`` is computed (FGSM: one signed step of size ε, or ``attack_steps`` iterative
  steps of size α; PGD: random start + ``attack_steps`` steps of size α, projected on the ε-ball);
  ``f`` is trained on ``(1-β)·CE(f(x), y) + β·CE(f(x_adv), y)``.
* ``drl-distill`` (Algorithm 2, min-max): ``s`` minimises ``KL(f(x) || s(x))``; ``f`` minimises
  ``CE(f(x), y) - λ·KL(f(x) || s(x))``.
* ``drl-freeze`` / ``drl-shuffle`` (Algorithm 3, training-free student): ``s(x) := f(x~)`` with
  ``x~`` the frozen (one frame repeated) or shuffled clip; ``f`` minimises
  ``CE(f(x), y) - λ·KL(f(x) || f(x~))``.

Inputs are normalised tensors; ε and α are in pixel units of [0, 1] and are divided by the input
spec's std per channel; perturbed clips are clamped to the valid pixel range [0, 1] (in normalised
units). Defaults follow the paper; the released code's variants are hyper-parameters
(``attack_steps=5``, ``attack_target=video``, ``weighting=static``) and DRL runs as a fine-tune via
``vdgtool train --init BASELINE.pt``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdgtool.errors import ConfigError
from vdgtool.evaluate.dynamic import freeze_frames, random_permutations, shuffle_frames
from vdgtool.methods.adversarial import PixelBox, frozen, kl_rows, pixel_ascent
from vdgtool.methods.base import HParam, Method, register_method
from vdgtool.models.students import build_spatial_student


class _DRLBase(Method):
    """Shared pieces: the input spec, the step metrics."""

    def spec(self):
        spec = getattr(self.net(), "input_spec", None)
        if spec is None:
            raise ConfigError(f"model {type(self.net()).__name__} declares no input_spec",
                              "DRL needs the normalisation to bound perturbations in pixel units")
        return spec


class _StudentMixin:
    """A spatial student (per-frame 2D network) with its own optimizer group "student"."""

    def _build_student(self):
        self.student = build_spatial_student(self.hp["student"] or None, self.num_classes, self.spec(),
                                             pretrained=bool(self.hp["student_pretrained"]) and not self.inference)

    def parameter_groups(self):
        return {"model": [p for p in self.model.parameters() if p.requires_grad],
                "student": [p for p in self.student.parameters() if p.requires_grad]}

    def extra_modules(self):
        return {"student": self.student}

    def _distill_student(self, x, f_logits, y, stepper):
        """One student step: KL(f(x) || s(x)) (+ student_ce · CE(s(x), y)); returns s(x) logits (detached)."""
        with stepper.autocast():
            s_logits = self.student(x)
        loss = kl_rows(f_logits.detach(), s_logits).mean()
        if self.hp["student_ce"]:
            loss = loss + self.hp["student_ce"] * self.ce(s_logits, y)
        stepper.step(loss, "student")
        return s_logits.detach(), loss.item()


_STUDENT_HP = {
    "student": HParam("", "spatial student: registry model (frame2d:resnet50, test_frame2d) or timm:NAME; "
                          "empty = frame2d:resnet18 (timm:resnet18 without frame2d)"),
    "student_pretrained": HParam(False, "start the student from its published (timm) weights"),
    "student_lr_mult": HParam(1.0, "student learning rate = --lr x this"),
    "student_ce": HParam(0.0, "weight of CE(s(x), y) in the student loss (the released code uses 1)"),
}


@register_method("drl-fgsm")
class DRLAdversarial(_StudentMixin, _DRLBase):
    description = ("DRL Algorithm 1: spatial student distilled from the model; the model also trains on "
                   "clips perturbed (FGSM) against the student.")
    HPARAMS = {
        **_STUDENT_HP,
        "beta": HParam(0.5, "weight of the perturbed clips: (1-beta) CE(f(x),y) + beta CE(f(x_adv),y)"),
        "eps": HParam(4.0 / 255, "L-inf bound of the perturbation, pixel units in [0, 1]"),
        "alpha": HParam(1.0 / 255, "step size of iterative attacks (attack_steps > 1), pixel units"),
        "attack_steps": HParam(1, "1 = FGSM (one step of size eps); the released code: 5 (iterative FGSM)"),
        "random_start": HParam(False, "start the attack at a uniform random point of the eps-ball (PGD)"),
        "attack_target": HParam("label", "attack loss: CE of the student against the ground-truth label, "
                                "or against the video model's own prediction (released code)",
                                choices=("label", "video")),
    }

    def __init__(self, model, num_classes, hparams, **kw):
        super().__init__(model, num_classes, hparams, **kw)
        if self.hp["attack_steps"] < 1:
            raise ConfigError(f"attack_steps={self.hp['attack_steps']} must be at least 1", "use 1 (FGSM) or more")
        if not 0.0 <= self.hp["beta"] <= 1.0:
            raise ConfigError(f"beta={self.hp['beta']} is outside [0, 1]", "pass --hp beta=0.5")
        self._build_student()

    def attack(self, x: torch.Tensor, target: torch.Tensor, stepper=None) -> torch.Tensor:
        """ε-bounded perturbation of ``x`` maximising CE(s(x_adv), target); clamped to valid pixels."""
        box = PixelBox(self.spec(), x.device)
        eps = box.scale(float(self.hp["eps"]))
        steps = int(self.hp["attack_steps"])
        alpha = eps if steps == 1 else box.scale(float(self.hp["alpha"]))
        student = self.net("student")
        with frozen(student):
            return pixel_ascent(x, lambda xa: F.cross_entropy(student(xa).float(), target, ignore_index=-1),
                                steps=steps, step_size=alpha, step_rule="sign", eps=eps, box=box, clamp=True,
                                random_start=bool(self.hp["random_start"]))

    def training_step(self, batches, stepper):
        batch = batches["source"]
        x, y = batch["video"], batch["label"]
        with stepper.autocast():
            f_clean = self.model(x)
        s_logits, loss_s = self._distill_student(x, f_clean, y, stepper)
        target = f_clean.detach().argmax(1) if self.hp["attack_target"] == "video" else y
        x_adv = self.attack(x, target)
        with stepper.autocast():
            f_adv = self.model(x_adv)
            beta = float(self.hp["beta"])
            loss = (1 - beta) * self.ce(f_clean, y) + beta * self.ce(f_adv, y)
        stepper.step(loss, "model")
        with torch.no_grad():
            kl = kl_rows(f_clean.detach(), s_logits).mean().item()
        return {"loss": loss.item(), "acc": self.accuracy(f_clean.detach(), y),
                "acc_adv": self.accuracy(f_adv.detach(), y), "student_loss": loss_s, "kl_student": kl,
                "student_agree": (s_logits.argmax(1) == f_clean.detach().argmax(1)).float().mean().item()}


@register_method("drl-pgd")
class DRLPGD(DRLAdversarial):
    description = ("DRL Algorithm 1 with a PGD attack (random start, attack_steps projected steps of size "
                   "alpha) against the spatial student.")
    HPARAMS = {**DRLAdversarial.HPARAMS,
               "attack_steps": HParam(5, "projected gradient steps"),
               "random_start": HParam(True, "uniform random start in the eps-ball")}


@register_method("drl-distill")
class DRLDistill(_StudentMixin, _DRLBase):
    description = ("DRL Algorithm 2: min-max; the student minimises KL(f(x)||s(x)), the model minimises "
                   "CE - lam KL(f(x)||s(x)).")
    HPARAMS = {**_STUDENT_HP,
               "lam": HParam(0.5, "weight of the (maximised) KL between the model and the spatial student")}

    def __init__(self, model, num_classes, hparams, **kw):
        super().__init__(model, num_classes, hparams, **kw)
        self._build_student()

    def training_step(self, batches, stepper):
        batch = batches["source"]
        x, y = batch["video"], batch["label"]
        with stepper.autocast():
            f_logits = self.model(x)
        s_logits, loss_s = self._distill_student(x, f_logits, y, stepper)
        with stepper.autocast():
            ce = self.ce(f_logits, y)
            kl = kl_rows(f_logits, s_logits).mean()
            loss = ce - float(self.hp["lam"]) * kl
        stepper.step(loss, "model")
        return {"loss": loss.item(), "ce": ce.item(), "kl_student": kl.item(), "student_loss": loss_s,
                "acc": self.accuracy(f_logits.detach(), y),
                "student_agree": (s_logits.argmax(1) == f_logits.detach().argmax(1)).float().mean().item()}


class _DRLPerturbed(_DRLBase):
    """Algorithm 3: the video model on a frozen / shuffled clip plays the spatial student."""

    HPARAMS = {
        "lam": HParam(0.5, "weight of the (maximised) KL(f(x) || f(x~))"),
        "detach_perturbed": HParam(True, "no gradient through f(x~) (the released code); false: through both"),
        "weighting": HParam("none", "per-clip weight of the KL: none, or static = 1 - exp(-relu(CE(f(x~),y) - "
                            "CE(f(x),y))) (the released code's 'scale' option)", choices=("none", "static")),
    }

    def perturbed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def training_step(self, batches, stepper):
        batch = batches["source"]
        x, y = batch["video"], batch["label"]
        xt = self.perturbed(x)
        with stepper.autocast():
            f_logits = self.model(x)
            if self.hp["detach_perturbed"]:
                with torch.no_grad():
                    t_logits = self.model(xt)
            else:
                t_logits = self.model(xt)
            ce_rows = F.cross_entropy(f_logits.float(), y, ignore_index=-1, reduction="none")
            kl = kl_rows(f_logits, t_logits)
            if self.hp["weighting"] == "static":
                ce_t = F.cross_entropy(t_logits.float().detach(), y, ignore_index=-1, reduction="none")
                w = (1 - torch.exp(-torch.relu(ce_t - ce_rows.detach()))).detach()
                kl_term = (w * kl).mean()
            else:
                kl_term = kl.mean()
            m = (y >= 0).float()
            ce = (ce_rows * m).sum() / m.sum().clamp_min(1)
            loss = ce - float(self.hp["lam"]) * kl_term
        stepper.step(loss, "model")
        return {"loss": loss.item(), "ce": ce.item(), "kl": kl.mean().item(),
                "acc": self.accuracy(f_logits.detach(), y),
                "agree_perturbed": (t_logits.argmax(1) == f_logits.argmax(1)).float().mean().item()}


@register_method("drl-freeze")
class DRLFreeze(_DRLPerturbed):
    description = "DRL Algorithm 3 with frozen clips: CE - lam KL(f(x) || f(one frame repeated))."
    HPARAMS = {**_DRLPerturbed.HPARAMS,
               "frame": HParam("first", "frame repeated: first (the released code), middle or random",
                               choices=("first", "middle", "random"))}

    def perturbed(self, x):
        return freeze_frames(x, self.hp["frame"])  # random uses the engine's per-step torch seed


@register_method("drl-shuffle")
class DRLShuffle(_DRLPerturbed):
    description = "DRL Algorithm 3 with shuffled clips: CE - lam KL(f(x) || f(frames permuted))."
    HPARAMS = {**_DRLPerturbed.HPARAMS,
               "permute": HParam("batch", "one permutation per batch (the released code) or per clip",
                                 choices=("batch", "clip"))}

    def perturbed(self, x):
        order = random_permutations(x.shape[0], x.shape[2], self.hp["permute"])
        return shuffle_frames(x, order=order)


__all__ = ["DRLAdversarial", "DRLPGD", "DRLDistill", "DRLFreeze", "DRLShuffle", "PixelBox", "kl_rows"]
