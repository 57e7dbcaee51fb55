"""Adversarial primitives that methods share (DRL's Algorithm 1, APN's video ADA, image ADA).

* :class:`PixelBox`: conversion between pixel units in [0, 1] and a model's normalised input (per
  channel), and the valid-pixel clamp.
* :func:`pixel_ascent`: the attack loop: ``steps`` ascent steps on ``loss_fn(x_adv)`` from ``x``,
  signed (FGSM / PGD), raw-gradient (ADA's ``x += eta * grad``) or L2-normalised steps, optional
  momentum (raw gradients accumulated, as the DRL release's FGSM, or L1-normalised ones, MI-FGSM),
  random start, projection on an L-inf ball and the pixel clamp. Everything it is given is in the
  model's normalised units; convert bounds with :meth:`PixelBox.scale`.
* :func:`kl_rows`, :func:`frozen`: the KL used by the attack targets, and a context that freezes a
  network's parameters (eval mode, no parameter gradients) while the input is attacked.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vdgtool.errors import ConfigError

STEP_RULES = ("sign", "grad", "l2")
MOMENTUM_NORMS = ("none", "l1")


def kl_rows(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Per-row KL(softmax(p) || softmax(q)), differentiable in both arguments (float32)."""
    lp = F.log_softmax(p_logits.float(), -1)
    lq = F.log_softmax(q_logits.float(), -1)
    return (lp.exp() * (lp - lq)).sum(-1)


class PixelBox:
    """Conversion between pixel units in [0, 1] and the model's normalised input (B, C, T, H, W)."""

    def __init__(self, spec, device, dtype=torch.float32):
        from vdgtool.data.spec import spec_get

        mean = torch.tensor(spec_get(spec, "mean"), device=device, dtype=dtype).view(1, -1, 1, 1, 1)
        std = torch.tensor(spec_get(spec, "std"), device=device, dtype=dtype).view(1, -1, 1, 1, 1)
        self.mean = mean
        self.std = std
        self.lo = (0.0 - mean) / std
        self.hi = (1.0 - mean) / std

    def scale(self, eps: float) -> torch.Tensor:
        """A length in pixel units (e.g. ε = 4/255) -> per-channel length in normalised units."""
        return eps / self.std

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.max(torch.min(x, self.hi), self.lo)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def from_pixels(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self.mean) / self.std


@contextlib.contextmanager
def frozen(*modules: nn.Module):
    """Eval mode and ``requires_grad=False`` for the modules' parameters inside the block (restored after)."""
    states = []
    for m in modules:
        states.append((m, m.training, [(p, p.requires_grad) for p in m.parameters()]))
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    try:
        yield
    finally:
        for m, training, ps in states:
            m.train(training)
            for p, rg in ps:
                p.requires_grad_(rg)


def _per_sample_mean_abs(g: torch.Tensor) -> torch.Tensor:
    return g.abs().flatten(1).mean(1).clamp_min(1e-12).view(-1, *([1] * (g.dim() - 1)))


def pixel_ascent(x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor], *, steps: int,
                 step_size, step_rule: str = "sign", eps=None, box: PixelBox | None = None, clamp: bool = True,
                 momentum: float = 0.0, momentum_norm: str = "l1", random_start: bool = False) -> torch.Tensor:
    """``steps`` ascent steps maximising ``loss_fn(x_adv)`` (a scalar) from ``x``; returns ``x_adv`` (detached).

    ``step_rule``: ``sign`` (FGSM/PGD: ``step_size * sign(g)``), ``grad`` (``step_size * g``, the ADA
    ascent), ``l2`` (``step_size * g / ||g||_2`` per sample). ``momentum`` = mu > 0 steps along the
    accumulated gradient ``a_t = mu * a_(t-1) + n(g_t)``: ``momentum_norm="l1"`` normalises each sample's
    gradient by its mean absolute value (MI-FGSM, Dong et al. 2018), ``"none"`` accumulates the raw
    gradients (the DRL release's FGSM, ``training/utils/adversarial.py``, momentum 1). ``eps``: L-inf
    radius around ``x`` (None: unbounded);
    ``random_start``: start at a uniform point of that ball. ``clamp``: keep valid pixels (needs ``box``).
    ``step_size`` and ``eps`` are in normalised units (scalars or per-channel tensors).
    """
    if step_rule not in STEP_RULES:
        raise ConfigError(f"unknown step rule '{step_rule}'", f"use one of {', '.join(STEP_RULES)}")
    if int(steps) < 1:
        raise ConfigError(f"attack steps={steps} must be at least 1", "use 1 (FGSM) or more")
    if clamp and box is None:
        raise ConfigError("the pixel clamp needs the model's PixelBox", "pass box= or clamp=False")
    if momentum_norm not in MOMENTUM_NORMS:
        raise ConfigError(f"unknown momentum normalisation '{momentum_norm}'", f"use one of {', '.join(MOMENTUM_NORMS)}")
    x0 = x.detach()
    xa = x0.clone()
    if random_start:
        if eps is None:
            raise ConfigError("a random start needs an eps-ball", "pass eps= or random_start=False")
        xa = xa + (torch.rand_like(xa) * 2 - 1) * eps
        if clamp:
            xa = box.clamp(xa)
    acc = torch.zeros_like(xa) if momentum else None
    for _ in range(int(steps)):
        xa.requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(xa)
            (g,) = torch.autograd.grad(loss, xa)
        g = g.detach()
        if momentum:
            acc = momentum * acc + (g / _per_sample_mean_abs(g) if momentum_norm == "l1" else g)
            g = acc
        if step_rule == "sign":
            upd = g.sign()
        elif step_rule == "grad":
            upd = g
        else:
            upd = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (g.dim() - 1)))
        xa = xa.detach() + step_size * upd
        if eps is not None:
            xa = torch.max(torch.min(xa, x0 + eps), x0 - eps)
        if clamp:
            xa = box.clamp(xa)
    return xa.detach()


def relative_norm(x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-clip ``||x_adv - x|| / ||x||`` (L2 over all elements): how strong a perturbation is."""
    d = (x_adv.detach() - x.detach()).flatten(1).norm(dim=1)
    return d / x.detach().flatten(1).norm(dim=1).clamp_min(1e-12)


__all__ = ["MOMENTUM_NORMS", "PixelBox", "STEP_RULES", "frozen", "kl_rows", "pixel_ascent", "relative_norm"]
