"""Two-stream training: an RGB network and a flow network trained jointly on paired items, late fusion.

The streams share no parameters; each is trained by cross-entropy on its own clip (the flow term
weighted by ``flow_weight``), one optimizer over both. Prediction fuses the streams: the mean of the
two softmax distributions (``fusion=softmax``, the usual two-stream late fusion and the CFB release's
``Acc_sf``) or the sum of logits (``fusion=logits``). Validation and ``eval`` report the fused
accuracy and each stream's beside it. The base the CFB method builds on.
"""

from __future__ import annotations

import torch

from vdgtool.errors import ConfigError
from vdgtool.methods.base import HParam, Method, register_method
from vdgtool.methods.da import DA_HPARAMS
from vdgtool.methods.erm import DAMixin


def fuse(logits: dict[str, torch.Tensor], how: str = "softmax") -> dict[str, torch.Tensor]:
    """Late fusion of per-stream logits: ``{"logits", "probs", "streams"}``."""
    streams = {k: v.float() for k, v in logits.items()}
    if how == "softmax":
        probs = torch.stack([v.softmax(-1) for v in streams.values()]).mean(0)
        fused = probs.clamp_min(1e-12).log()
    elif how == "logits":
        fused = torch.stack(list(streams.values())).sum(0)
        probs = fused.softmax(-1)
    else:
        raise ConfigError(f"unknown fusion '{how}'", "use softmax or logits")
    return {"logits": fused, "probs": probs, "streams": streams}


@register_method("two-stream")
class TwoStream(DAMixin, Method):
    description = ("RGB + flow networks trained jointly on paired items (--flow), late fusion of their "
                   "softmax scores; with --hp da=... a domain-adaptation term per stream on --target.")
    NETWORKS = {"rgb": "main", "flow": "flow"}
    INPUTS = ("rgb", "flow")
    HPARAMS = {
        "fusion": HParam("softmax", "late fusion: mean of softmax scores or sum of logits",
                         choices=("softmax", "logits")),
        "flow_weight": HParam(1.0, "weight of the flow stream's cross-entropy", min=0.0),
        "label_smoothing": HParam(0.0, "label smoothing of both cross-entropies", min=0.0, max=1.0),
        **DA_HPARAMS,
    }

    def __init__(self, networks, num_classes, hparams, **kw):
        super().__init__(networks, num_classes, hparams, **kw)
        self._build_da()

    def training_step(self, batches, stepper):
        src = batches["source"]
        y, w = src["label"], src.get("weight")
        ls = float(self.hp["label_smoothing"])
        metrics, logits = {}, {}
        with stepper.autocast():
            loss = 0.0
            for net, key, weight in (("rgb", "rgb", 1.0), ("flow", "flow", float(self.hp["flow_weight"]))):
                x = src[key]
                if self._da_kind() == "none":
                    out = getattr(self, net)(x)
                    lg = out
                else:
                    xt = batches["target"][key]
                    out, feats = getattr(self, net)(torch.cat([x, xt]), with_features=True)
                    n = x.shape[0]
                    lg = out[:n]
                    term, m = self.da_loss(net, feats[:n], feats[n:], lg, out[n:])
                    loss = loss + term
                    metrics.update({f"{net}_{k}": v for k, v in m.items()})
                ce = self.ce(lg, y, ls, weight=w)
                loss = loss + weight * ce
                logits[net] = lg.detach()
                metrics[f"{net}_ce"] = ce.item()
        stepper.step(loss, "model")
        fused = fuse(logits, self.hp["fusion"])
        return {"loss": loss.item(), "acc": self.accuracy(fused["logits"], y),
                "acc_rgb": self.accuracy(logits["rgb"], y), "acc_flow": self.accuracy(logits["flow"], y), **metrics}

    @torch.no_grad()
    def predict(self, batch):
        return fuse({"rgb": self.net("rgb")(batch["rgb"]), "flow": self.net("flow")(batch["flow"])},
                    self.hp["fusion"])


__all__ = ["TwoStream", "fuse"]
