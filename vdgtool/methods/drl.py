"""Dynamic Representation Learning (Li & Vasconcelos, "Improving Video Model Transfer with Dynamic
Representation Learning", CVPR 2022): training objectives that push a video model away from what a
purely spatial model can explain. See docs/drl.md (defaults, and every difference from the paper and
from the released code, ``github:JerryYLi/video-drl``).

* ``drl-fgsm`` / ``drl-pgd`` (Algorithm 1, adversarial augmentation): a spatial student ``s`` (an
  ImageNet-pretrained ResNet-18 per frame) is distilled from the video model ``f`` (its own optimizer
  "student"); an ε-bounded perturbation adversarial to ``s`` is computed, by default on the paper's
  objective ``KL(f(x) || s(x_adv))`` (Eq. 8; ``attack_target=video``: the release's CE against
  ``argmax f(x)``; ``label``: CE against the ground truth). FGSM as released: 5 signed steps of ε/5 along
  raw gradients accumulated with momentum 1; PGD as released: random start, 7 projected steps of
  α = 0.008; ε = 0.03 (pixel units). ``f`` is trained on ``(1-β)·CE(f(x), y) + β·CE(f(x_adv), y)``.
* ``drl-distill`` (Algorithm 2, min-max): ``s`` minimises ``λ·KL(f(x) || s(x)) + CE(s(x), y)`` (the
  release's gradient reversal of ``-λ·KL - CE``); ``f`` minimises ``CE(f(x), y) - λ·KL(f(x) || s(x))``.
* ``drl-freeze`` / ``drl-shuffle`` (Algorithm 3, training-free student): ``s(x) := f(x~)`` with
  ``x~`` the frozen (first frame repeated) or shuffled (one permutation per batch) clip; ``f``
  minimises ``CE(f(x), y) - λ·KL(f(x) || f(x~))``.

Inputs are normalised tensors; ε and α are in pixel units of [0, 1] and are divided by the input
spec's std per channel (the release's ``scale``). Perturbed clips are not clamped to valid pixels
unless ``clamp=true`` (the release does not clamp). DRL runs as a fine-tune via
``vdgtool train --init BASELINE.pt`` (the release's protocol).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vdgtool.errors import ConfigError
from vdgtool.evaluate.dynamic import (FRAME_CHOICES, PERMUTE_CHOICES, freeze_frames, random_permutations,
                                      shuffle_frames)
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

    def _student_kl_weight(self) -> float:
        """Weight of KL(f || s) in the student loss (Algorithm 1: 1; Algorithm 2: lam, as released)."""
        return 1.0

    def _build_student(self):
        train = not self.inference  # a checkpoint holds the trained student: never fetch weights to predict
        self.student = build_spatial_student(self.hp["student"] or None, self.num_classes, self.spec(),
                                             pretrained=bool(self.hp["student_pretrained"]) and train,
                                             weights=(self.hp["student_weights"] or None) if train else None)

    def parameter_groups(self):
        return {"model": [p for p in self.model.parameters() if p.requires_grad],
                "student": [p for p in self.student.parameters() if p.requires_grad]}

    def extra_modules(self):
        return {"student": self.student}

    def _distill_student(self, x, f_logits, y, stepper):
        """One student step on ``w·KL(f(x) || s(x)) + student_ce·CE(s(x), y)``; returns s(x) logits (detached)."""
        with stepper.autocast():
            s_logits = self.student(x)
        loss = self._student_kl_weight() * kl_rows(f_logits.detach(), s_logits).mean()
        if self.hp["student_ce"]:
            loss = loss + self.hp["student_ce"] * self.ce(s_logits, y)
        stepper.step(loss, "student")
        return s_logits.detach(), loss.item()


def _student_hp(ce_default: float, ce_help: str) -> dict:
    return {
        "student": HParam("", "spatial student: a registry model (frame2d:resnet18, test_frame2d) or timm:NAME; "
                              "empty = frame2d:resnet18.tv_in1k (the release's ImageNet ResNet-18 per frame)"),
        "student_pretrained": HParam(True, "start the student from ImageNet weights (timm download, or "
                                           "student_weights offline); false = from scratch"),
        "student_weights": HParam("", "local ImageNet weights of the student's 2D backbone (a timm or "
                                      "torchvision state dict), for offline machines", unit="path"),
        "student_lr_mult": HParam(1.0, "student learning rate = --lr x this", min=0.0),
        "student_ce": HParam(ce_default, ce_help, min=0.0),
    }


_PIX = "pixel scale 0-1"


@register_method("drl-fgsm")
class DRLAdversarial(_StudentMixin, _DRLBase):
    description = ("DRL Algorithm 1: a spatial student is distilled from the model; the model also trains on "
                   "clips perturbed (iterative FGSM with momentum, as released) against the student.")
    HPARAMS = {
        **_student_hp(0.0, "student loss = KL(f(x)||s(x)) + student_ce CE(s(x), y); 0 = the release's "
                           "Algorithm 1 (distillation only)"),
        "beta": HParam(0.5, "weight of the perturbed clips: (1-beta) CE(f(x),y) + beta CE(f(x_adv),y)",
                       min=0.0, max=1.0),
        "eps": HParam(0.03, "L-inf bound of the perturbation (the release: 0.03, about 7.7/255, its reading of the "
                            "paper's 'eps = 8' on the 0-255 scale)", min=0.0, unit=_PIX),
        "attack_steps": HParam(5, "signed ascent steps (the release's FGSM: 5; 1 = single-step FGSM)", min=1),
        "alpha": HParam(0.0, "step size; 0 = eps / attack_steps (the release's FGSM)", min=0.0, unit=_PIX),
        "momentum": HParam(1.0, "momentum mu of the accumulated gradient a = mu a + g (the release: 1; "
                                "0 = none)", min=0.0),
        "momentum_norm": HParam("none", "none: raw gradients accumulated (the release); l1: each gradient "
                                        "normalised by its mean |g| (MI-FGSM)", choices=("none", "l1")),
        "random_start": HParam(False, "start at a uniform random point of the eps-ball"),
        "clamp": HParam(False, "clamp perturbed clips to valid pixels [0, 1] (the release does not)"),
        "attack_target": HParam("kl", "attack loss on the student s: kl = KL(f(x) || s(x_adv)), the video "
                                      "model's soft output (Eq. 8, the paper); video = CE(s(x_adv), argmax "
                                      "f(x)) (the release); label = CE(s(x_adv), y)",
                                choices=("kl", "video", "label")),
    }

    def __init__(self, model, num_classes, hparams, **kw):
        super().__init__(model, num_classes, hparams, **kw)
        self._build_student()

    def attack(self, x: torch.Tensor, f_logits: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """ε-bounded perturbation of ``x`` adversarial to the student: it maximises ``attack_target``'s
        loss (``f_logits``: the video model's logits on ``x``; ``y``: labels, for ``label``)."""
        box = PixelBox(self.spec(), x.device)
        eps = box.scale(float(self.hp["eps"]))
        steps = int(self.hp["attack_steps"])
        alpha = box.scale(float(self.hp["alpha"]) or float(self.hp["eps"]) / steps)
        student = self.net("student")
        p = f_logits.detach().float()
        kind = self.hp["attack_target"]
        if kind == "label" and y is None:
            raise ConfigError("attack_target=label needs the labels", "pass y, or use attack_target=kl")

        def loss_fn(xa):
            s = student(xa).float()
            if kind == "kl":
                return kl_rows(p, s).mean()
            return F.cross_entropy(s, p.argmax(1) if kind == "video" else y, ignore_index=-1)

        with frozen(student):
            return pixel_ascent(x, loss_fn, steps=steps, step_size=alpha, step_rule="sign", eps=eps, box=box,
                                clamp=bool(self.hp["clamp"]), momentum=float(self.hp["momentum"]),
                                momentum_norm=self.hp["momentum_norm"], random_start=bool(self.hp["random_start"]))

    def training_step(self, batches, stepper):
        batch = batches["source"]
        x, y = batch["video"], batch["label"]
        with stepper.autocast():
            f_clean = self.model(x)
        s_logits, loss_s = self._distill_student(x, f_clean, y, stepper)
        x_adv = self.attack(x, f_clean, y)
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
    description = ("DRL Algorithm 1 with PGD against the spatial student (as released: random start, 7 "
                   "projected signed steps of alpha = 0.008, eps = 0.03).")
    HPARAMS = {**DRLAdversarial.HPARAMS,
               "attack_steps": HParam(7, "projected signed ascent steps (the release: 7)", min=1),
               "alpha": HParam(0.008, "step size (the release: 0.008); 0 = eps / attack_steps", min=0.0, unit=_PIX),
               "momentum": HParam(0.0, "momentum of the accumulated gradient (the release's PGD: none)", min=0.0),
               "random_start": HParam(True, "uniform random start in the eps-ball (the release)")}


@register_method("drl-distill")
class DRLDistill(_StudentMixin, _DRLBase):
    description = ("DRL Algorithm 2: min-max; the student minimises lam KL(f(x)||s(x)) + CE(s(x), y) (as "
                   "released), the model minimises CE - lam KL(f(x)||s(x)).")
    HPARAMS = {**_student_hp(1.0, "student loss = lam KL(f(x)||s(x)) + student_ce CE(s(x), y); 1 = the "
                                  "release (its gradient reversal of -lam KL - CE); the paper's alpha-form "
                                  "alpha KL + (1-alpha) CE is student_ce = lam (1-alpha)/alpha"),
               "lam": HParam(0.5, "weight of the (maximised) KL between the model and the spatial student",
                             min=0.0)}

    def __init__(self, model, num_classes, hparams, **kw):
        super().__init__(model, num_classes, hparams, **kw)
        self._build_student()

    def _student_kl_weight(self) -> float:
        return float(self.hp["lam"])

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
        "lam": HParam(0.5, "weight of the (maximised) KL(f(x) || f(x~))", min=0.0),
        "detach_perturbed": HParam(True, "no gradient through f(x~) (the release); false: through both"),
        "weighting": HParam("none", "weight of the KL: none; static = per-clip w = 1 - exp(-relu(CE(f(x~),y) - "
                                    "CE(f(x),y))) times the clip's KL; static-batch = mean(w) times the batch-mean "
                                    "KL (the release's 'scale' option, literally; no released config uses it)",
                            choices=("none", "static", "static-batch")),
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
            if self.hp["weighting"] in ("static", "static-batch"):
                ce_t = F.cross_entropy(t_logits.float().detach(), y, ignore_index=-1, reduction="none")
                w = (1 - torch.exp(-torch.relu(ce_t - ce_rows.detach()))).detach()
                kl_term = (w * kl).mean() if self.hp["weighting"] == "static" else w.mean() * kl.mean()
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
    description = "DRL Algorithm 3 with frozen clips: CE - lam KL(f(x) || f(first frame repeated))."
    HPARAMS = {**_DRLPerturbed.HPARAMS,
               "frame": HParam("first", "frame repeated: first (the release, and score's default), middle or random",
                               choices=FRAME_CHOICES)}

    def perturbed(self, x):
        return freeze_frames(x, self.hp["frame"])  # random uses the engine's per-step torch seed


@register_method("drl-shuffle")
class DRLShuffle(_DRLPerturbed):
    description = "DRL Algorithm 3 with shuffled clips: CE - lam KL(f(x) || f(frames permuted))."
    HPARAMS = {**_DRLPerturbed.HPARAMS,
               "permute": HParam("batch", "one permutation per batch (the release, and score's default) or per clip",
                                 choices=PERMUTE_CHOICES)}

    def perturbed(self, x):
        order = random_permutations(x.shape[0], x.shape[2], self.hp["permute"])
        return shuffle_frames(x, order=order)


__all__ = ["DRLAdversarial", "DRLPGD", "DRLDistill", "DRLFreeze", "DRLShuffle", "PixelBox", "kl_rows"]
