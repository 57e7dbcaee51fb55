"""Domain-adaptation losses on any model, and the methods that add them to ERM.

Losses (all on a batch of source and/or unlabelled target clips):

* DANN (Ganin & Lempitsky 2015; Ganin et al. JMLR 2016): a domain classifier on pooled features
  behind a gradient reversal layer; the reversal coefficient follows Ganin's schedule
  ``lam_p = 2 / (1 + exp(-10 p)) - 1`` (p = share of training done) times the weight.
* DAN / MK-MMD (Long et al. 2015): multi-kernel Gaussian MMD between source and target pooled features
  (biased estimator; ``kernel_num`` bandwidths ``sigma^2 * kernel_mul^k`` centred on the mean pairwise
  squared distance, the convention of the DAN and ST-I2V code).
* MCC (Jin et al. 2020): minimum class confusion of the target predictions at temperature 2.5.
* BNM (Cui et al. 2020): minus the nuclear norm of the target prediction matrix divided by the batch
  size; ``fbnm`` is the fast approximation the ST-I2V code uses (sum of the largest column L2 norms).
* Entropy minimisation (Grandvalet & Bengio 2005): mean prediction entropy on the target.

Each is a method (``--method dann --hp lam=0.1``) and a term any method can add
(``--hp da=mcc --hp da_weight=0.3``): see :class:`DomainAlignment`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vdgtool.errors import ConfigError
from vdgtool.methods.base import HParam

DA_KINDS = ("none", "dann", "dan", "mcc", "bnm", "fbnm", "entropy")


# -- the losses --------------------------------------------------------------------------------------
class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = float(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coeff * grad, None


def grad_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-coeff`` backward (the gradient reversal layer)."""
    return _GradReverse.apply(x, coeff)


def ganin_lambda(p: float, gamma: float = 10.0) -> float:
    """Ganin's ramp ``2 / (1 + exp(-gamma p)) - 1`` from 0 (p = 0) towards 1 (p = 1)."""
    return 2.0 / (1.0 + math.exp(-gamma * float(p))) - 1.0


def gaussian_kernel_matrix(x: torch.Tensor, y: torch.Tensor, kernel_mul: float = 2.0, kernel_num: int = 5,
                           sigma2: float | None = None) -> torch.Tensor:
    """Sum of ``kernel_num`` Gaussian kernels over the rows of ``[x; y]`` ((n+m) x (n+m)).

    Bandwidths ``sigma2 * kernel_mul**(k - kernel_num // 2)``; ``sigma2`` defaults to the mean pairwise
    squared distance (computed without gradient, as the DAN code does).
    """
    z = torch.cat([x, y]).float()
    d2 = torch.cdist(z, z).pow(2)
    if sigma2 is None:
        n = z.shape[0]
        sigma2 = float(d2.detach().sum() / max(1, n * n - n))
    sigma2 = max(float(sigma2), 1e-12)
    base = sigma2 / (kernel_mul ** (kernel_num // 2))
    return sum(torch.exp(-d2 / (base * kernel_mul ** k)) for k in range(int(kernel_num)))


def mk_mmd(fs: torch.Tensor, ft: torch.Tensor, kernel_mul: float = 2.0, kernel_num: int = 5) -> torch.Tensor:
    """Multi-kernel MMD^2 (biased) between source rows ``fs`` and target rows ``ft``; 0 for equal batches."""
    if fs.shape[0] == 0 or ft.shape[0] == 0:
        return fs.new_zeros(())
    k = gaussian_kernel_matrix(fs.flatten(1), ft.flatten(1), kernel_mul, kernel_num)
    n = fs.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - k[:n, n:].mean() - k[n:, :n].mean()


def mcc_loss(logits_t: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """Minimum Class Confusion (Jin et al., ECCV 2020) of target logits (B, C)."""
    b, c = logits_t.shape
    p = F.softmax(logits_t.float() / temperature, dim=1)
    h = -(p * torch.log(p + 1e-5)).sum(1)
    w = 1.0 + torch.exp(-h)
    w = (b * w / w.sum()).detach()
    cov = (p * w[:, None]).t() @ p
    cov = cov / cov.sum(dim=1, keepdim=True)
    return (cov.sum() - torch.trace(cov)) / c


def bnm_loss(logits_t: torch.Tensor) -> torch.Tensor:
    """Batch Nuclear-norm Maximisation (Cui et al., CVPR 2020): ``-||softmax(Z)||_* / B``."""
    p = F.softmax(logits_t.float(), dim=1)
    return -torch.linalg.matrix_norm(p, ord="nuc") / p.shape[0]


def fbnm_loss(logits_t: torch.Tensor) -> torch.Tensor:
    """Fast BNM (Cui et al. 2021, the ST-I2V code's ``bnm``): minus the sum of the ``min(B, C)`` largest
    column L2 norms of the prediction matrix, over the batch size."""
    p = F.softmax(logits_t.float(), dim=1)
    norms = torch.sort(torch.sqrt((p ** 2).sum(0)), descending=True)[0]
    return -norms[: min(p.shape)].sum() / p.shape[0]


def entropy_loss(logits_t: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of the target predictions."""
    lp = F.log_softmax(logits_t.float(), dim=1)
    return -(lp.exp() * lp).sum(1).mean()


class DomainClassifier(nn.Module):
    """Ganin's domain discriminator: (Linear, ReLU, Dropout) x 2, Linear -> 1 logit (source = 1)."""

    def __init__(self, in_features: int, hidden: int = 1024, dropout: float = 0.5):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(hidden, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f.float()).squeeze(1)


# -- the term methods add ----------------------------------------------------------------------------
DA_HPARAMS = {
    "da": HParam("none", "domain-adaptation term added to the loss (needs --target)", choices=DA_KINDS),
    "da_weight": HParam(1.0, "weight of the domain-adaptation term (DANN: times Ganin's ramp)", min=0.0),
    "da_input": HParam("features", "dan: pooled features or logits (the ST-I2V code uses time-averaged logits)",
                       choices=("features", "logits")),
    "da_schedule": HParam("auto", "weight ramp: ganin = 2/(1+exp(-10p))-1, constant; auto = ganin for dann only",
                          choices=("auto", "ganin", "constant")),
    "mcc_temperature": HParam(2.5, "MCC temperature", min=1e-6),
    "mmd_kernels": HParam(5, "MK-MMD: number of Gaussian kernels", min=1),
    "mmd_kernel_mul": HParam(2.0, "MK-MMD: ratio between consecutive bandwidths", min=1.0),
    "disc_hidden": HParam(1024, "DANN: hidden width of the domain classifier", min=1),
}


class DomainAlignment(nn.Module):
    """One domain-adaptation term (``kind``) on a network's features/logits; holds DANN's classifier.

    ``loss(fs, ft, ls, lt, progress)`` -> (weighted loss, metrics): source/target pooled features and
    logits of one step (``fs``/``ls`` may be unused, e.g. MCC reads only the target logits).
    """

    def __init__(self, kind: str, in_features: int, hp: dict):
        super().__init__()
        if kind not in DA_KINDS:
            raise ConfigError(f"unknown domain-adaptation term '{kind}'", f"use one of {', '.join(DA_KINDS)}")
        self.kind = kind
        self.hp = hp
        self.disc = DomainClassifier(in_features, int(hp.get("disc_hidden", 1024))) if kind == "dann" else None

    def weight(self, progress) -> float:
        w = float(self.hp.get("da_weight", 1.0))
        sched = self.hp.get("da_schedule", "auto")
        if sched == "ganin" or (sched == "auto" and self.kind == "dann"):
            w *= ganin_lambda(progress.fraction)
        return w

    def loss(self, fs, ft, ls, lt, progress) -> tuple[torch.Tensor, dict]:
        w = self.weight(progress)
        k = self.kind
        if k == "dann":
            # the reversal layer carries the weight: the classifier itself learns at full strength
            f = torch.cat([fs, ft]).flatten(1)
            d = self.disc(grad_reverse(f, w))
            lab = torch.cat([torch.ones(len(fs)), torch.zeros(len(ft))]).to(d.device)
            term = F.binary_cross_entropy_with_logits(d, lab)
            acc = ((d > 0).float() == lab).float().mean().item()
            return term, {"da_dann": term.item(), "domain_acc": acc, "da_coeff": w}
        if k == "dan":
            a, b = (fs, ft) if self.hp.get("da_input", "features") == "features" else (ls, lt)
            term = mk_mmd(a.flatten(1), b.flatten(1), float(self.hp.get("mmd_kernel_mul", 2.0)),
                          int(self.hp.get("mmd_kernels", 5)))
        elif k == "mcc":
            term = mcc_loss(lt, float(self.hp.get("mcc_temperature", 2.5)))
        elif k == "bnm":
            term = bnm_loss(lt)
        elif k == "fbnm":
            term = fbnm_loss(lt)
        elif k == "entropy":
            term = entropy_loss(lt)
        else:
            return lt.new_zeros(()), {}
        return w * term, {f"da_{k}": term.item(), "da_coeff": w}


__all__ = ["DA_HPARAMS", "DA_KINDS", "DomainAlignment", "DomainClassifier", "bnm_loss", "entropy_loss",
           "fbnm_loss", "ganin_lambda", "gaussian_kernel_matrix", "grad_reverse", "mcc_loss", "mk_mmd"]
