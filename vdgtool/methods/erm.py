"""Empirical risk minimisation, optionally with a domain-adaptation term on an unlabelled target stream,
and the domain-adaptation baselines as methods (``dann``, ``dan``, ``mcc``, ``bnm``, ``entropy``)."""

from __future__ import annotations

import torch

from vdgtool.methods.base import HParam, Method, register_method
from vdgtool.methods.da import DA_HPARAMS, DomainAlignment


class DAMixin:
    """Adds the ``da``/``da_weight`` term of :mod:`vdgtool.methods.da` to a method.

    ``self.da_modules`` maps a network name to its :class:`DomainAlignment` (one per stream).
    """

    def _da_kind(self) -> str:
        return str(self.hp.get("da", "none"))

    def _build_da(self) -> None:
        self.da_modules = torch.nn.ModuleDict()
        if self._da_kind() != "none":
            for n in self.NETWORKS:
                self.da_modules[n] = DomainAlignment(self._da_kind(), int(self.net(n).num_features), self.hp)

    def wants_target(self) -> bool:
        return self._da_kind() != "none"

    def requires_target(self) -> bool:
        return self._da_kind() != "none"

    def extra_modules(self):
        return {"da_modules": self.da_modules} if len(self.da_modules) else {}

    def da_loss(self, name: str, fs, ft, ls, lt) -> tuple[torch.Tensor, dict]:
        return self.da_modules[name].loss(fs, ft, ls, lt, self.progress)


@register_method("erm")
class ERM(DAMixin, Method):
    description = ("Empirical risk minimisation (cross-entropy); with --hp da=dann|dan|mcc|bnm|fbnm|entropy a "
                   "domain-adaptation term on the --target stream.")
    HPARAMS = {"label_smoothing": HParam(0.0, "label smoothing of the cross-entropy", min=0.0, max=1.0),
               **DA_HPARAMS}

    def __init__(self, networks, num_classes, hparams, **kw):
        super().__init__(networks, num_classes, hparams, **kw)
        self._build_da()

    def training_step(self, batches, stepper):
        src = batches["source"]
        x, y = src["video"], src["label"]
        w = src.get("weight")
        metrics = {}
        with stepper.autocast():
            if self._da_kind() == "none":
                logits = self.model(x)
                loss = self.ce(logits, y, self.hp["label_smoothing"], weight=w)
            else:
                # one forward over source + target (shared batch statistics, as DANN/DAN implementations do)
                xt = batches["target"]["video"]
                out, feats = self.model(torch.cat([x, xt]), with_features=True)
                n = x.shape[0]
                logits, lt = out[:n], out[n:]
                ce = self.ce(logits, y, self.hp["label_smoothing"], weight=w)
                term, metrics = self.da_loss("model", feats[:n], feats[n:], logits, lt)
                loss = ce + term
                metrics["ce"] = ce.item()
        stepper.step(loss, "model")
        return {"loss": loss.item(), "acc": self.accuracy(logits.detach(), y), **metrics}


#: the options of each term (the others do not apply to it)
_DA_OPTIONS = {"dann": ("da_schedule", "disc_hidden"), "dan": ("da_schedule", "da_input", "mmd_kernels", "mmd_kernel_mul"),
               "mcc": ("da_schedule", "mcc_temperature"), "bnm": ("da_schedule",), "entropy": ("da_schedule",)}


def _da_method(kind: str, lam: float, doc: str):
    hp = {k: v for k, v in DA_HPARAMS.items() if k in _DA_OPTIONS[kind]}
    hp = {"label_smoothing": ERM.HPARAMS["label_smoothing"],
          "lam": HParam(lam, f"weight of the {kind} term", min=0.0), **hp}

    class _DA(ERM):
        description = doc
        HPARAMS = hp

        def __init__(self, networks, num_classes, hparams, **kw):
            hparams = {**hparams, "da": kind, "da_weight": hparams["lam"]}
            super().__init__(networks, num_classes, hparams, **kw)

    _DA.__name__ = _DA.__qualname__ = kind.upper()
    return register_method(kind)(_DA)


DANN = _da_method("dann", 1.0, "DANN: domain classifier behind a gradient reversal layer (Ganin's ramp); "
                               "ERM + lam x domain loss. Needs --target.")
DAN = _da_method("dan", 1.0, "DAN: ERM + lam x multi-kernel MMD between source and target pooled features. "
                             "Needs --target.")
MCC = _da_method("mcc", 1.0, "MCC: ERM + lam x minimum class confusion of target predictions (T=2.5). "
                             "Needs --target.")
BNM = _da_method("bnm", 1.0, "BNM: ERM - lam x nuclear norm of the target prediction matrix / B. Needs --target.")
ENTROPY = _da_method("entropy", 0.1, "Entropy minimisation: ERM + lam x mean target prediction entropy. "
                                     "Needs --target.")

__all__ = ["ERM", "DAMixin", "DANN", "DAN", "MCC", "BNM", "ENTROPY"]
