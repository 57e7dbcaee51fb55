"""``VideoModel``: the interface every registered model implements.

Input ``x`` is float ``(B, C, T, H, W)``, already normalised as ``model.input_spec`` says.
``forward(x) = forward_head(forward_features(x))``; ``forward_features`` returns pooled ``(B, D)``
features with ``D = num_features``.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from vdgtool.errors import CheckpointError, ConfigError
from vdgtool.utils.log import get_logger

log = get_logger("models")


class VideoModel(nn.Module):
    """Base class. Subclasses set ``num_features``/``num_classes``, implement ``forward_features`` and
    keep their classifier at the dotted attribute path ``classifier_path`` (a module whose state-dict
    keys are the classifier's, e.g. ``"fc"`` or ``"logits.conv3d"``), built by ``_build_classifier``."""

    classifier_path: str = "fc"
    model_name: str = ""
    input_spec = None  # set by create_model
    create_kwargs: dict = {}

    def __init__(self):
        super().__init__()
        self.num_classes = 0
        self.num_features = 0

    # -- forward ---------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.get_classifier()(self.head_drop(feats))

    def forward(self, x: torch.Tensor, with_features: bool = False):
        """Logits (B, num_classes); with ``with_features`` the pair (logits, pooled features), from one
        pass (so a DDP-wrapped model can give a method both)."""
        f = self.forward_features(x)
        logits = self.forward_head(f)
        return (logits, f) if with_features else logits

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse an input that is not (B, C, T, H, W) with the model's channel count."""
        c = getattr(self, "in_channels", None)
        if x.dim() != 5 or (c is not None and x.shape[1] != c):
            raise ConfigError(
                f"{self.model_name or type(self).__name__} expects input (B, {c or 'C'}, T, H, W), "
                f"got shape {tuple(x.shape)}", "feed clips as (batch, channels, frames, height, width)")

    # -- classifier ------------------------------------------------------------------------------
    def _build_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes)

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_path)

    def _set_classifier(self, module: nn.Module) -> None:
        parent, _, leaf = self.classifier_path.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, leaf, module)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one for ``num_classes`` classes."""
        old = self.get_classifier()
        new = self._build_classifier(int(num_classes))
        p = next(old.parameters(), None)
        if p is not None:
            new = new.to(device=p.device, dtype=p.dtype)
        self._set_classifier(new)
        self.num_classes = int(num_classes)

    def classifier_parameters(self) -> Iterator[nn.Parameter]:
        return self.get_classifier().parameters()

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        head = {id(p) for p in self.classifier_parameters()}
        return (p for p in self.parameters() if id(p) not in head)

    # -- weights ---------------------------------------------------------------------------------
    def classifier_keys(self) -> list[str]:
        prefix = self.classifier_path + "."
        return [k for k in self.state_dict() if k.startswith(prefix)]

    def adapt_state_dict(self, sd: dict) -> dict:
        """Hook for subclasses to rename foreign key layouts; default strips DDP/wrapper prefixes."""
        own = self.state_dict()
        for prefix in ("module.", "model.", "net."):
            if sd and not any(k in own for k in sd) and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
        return sd

    def load_pretrained(self, state_dict: dict, source: str = "state dict") -> None:
        """Load backbone (and classifier when its shape fits) from a state dict, strictly.

        A classifier with another class count is left freshly initialised (logged); any other
        missing, unexpected or mis-shaped key raises :class:`CheckpointError` naming a few of them.
        """
        sd = self.adapt_state_dict(dict(state_dict))
        own = self.state_dict()
        head = set(self.classifier_keys())
        skipped_head = [k for k in head if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
        if skipped_head:
            n_src = sd[skipped_head[0]].shape[0]
            log.info("%s: classifier of %s has %d outputs, model has %d classes: classifier re-initialised",
                     self.model_name, source, n_src, self.num_classes)
        for k in skipped_head:
            sd.pop(k)
        bad_shape = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items()
                     if k in own and tuple(v.shape) != tuple(own[k].shape)]
        missing = [k for k in own if k not in sd and k not in head and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in sd if k not in own]
        if bad_shape or missing or unexpected:
            parts = []
            if bad_shape:
                parts.append(f"{len(bad_shape)} shape mismatches ({'; '.join(bad_shape[:3])})")
            if missing:
                parts.append(f"{len(missing)} missing keys ({', '.join(missing[:3])})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:3])})")
            raise CheckpointError(
                f"{source} does not fit model {self.model_name or type(self).__name__}: {'; '.join(parts)}",
                "check that the checkpoint was saved from the same model name, backbone and input channels")
        missing_head = [k for k in head if k not in sd]
        if missing_head and not skipped_head:
            log.info("%s: %s has no classifier weights: classifier freshly initialised", self.model_name, source)
        sd = {k: v.to(dtype=own[k].dtype) if v.is_floating_point() else v for k, v in sd.items()}
        self.load_state_dict(sd, strict=False)


def inflate_in_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first-layer weight ``(O, C, ...)`` to ``in_channels`` inputs: the channel mean repeated
    (the TSN "cross-modality" initialisation used for optical-flow networks)."""
    if weight.shape[1] == in_channels:
        return weight
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, *([1] * (weight.dim() - 2))) * (weight.shape[1] / in_channels)
