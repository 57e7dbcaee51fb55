"""Empirical risk minimisation: plain cross-entropy on the labelled training clips."""

from __future__ import annotations

from vdgtool.methods.base import HParam, Method, register_method


@register_method("erm")
class ERM(Method):
    description = "Empirical risk minimisation (cross-entropy)."
    HPARAMS = {"label_smoothing": HParam(0.0, "label smoothing of the cross-entropy")}

    def training_step(self, batch, stepper):
        x, y = batch["video"], batch["label"]
        with stepper.autocast():
            logits = self.model(x)
            loss = self.ce(logits, y, self.hp["label_smoothing"])
        stepper.step(loss, "model")
        return {"loss": loss.item(), "acc": self.accuracy(logits.detach(), y)}
