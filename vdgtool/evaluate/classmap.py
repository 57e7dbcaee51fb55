"""Evaluating a classifier of one label space on data of another (``vdgtool eval --class-map``).

The zero-shot baseline of Ani-GIFs (B0): a Kinetics-400 classifier tested on the GIFs of the classes
both datasets share. A class map lists ``model_class,target_class`` pairs (CSV or tab-separated; a
single column maps a class to the same name; ``#`` comments and a ``model_class,target_class``
header are skipped). The predictor's output is restricted to the mapped model classes and regrouped
into the target classes: a target's score is the summed probability of the model classes mapped to
it (``logsumexp`` of their logits), renormalised over the target classes, so the argmax runs over
the shared classes only. Classes of the data that map to no model class are refused, naming the
class, and so are map entries naming a class the model does not have.
"""

from __future__ import annotations

import csv

import torch
import torch.nn as nn

from vdgtool.errors import ConfigError, InputError

_HEADERS = {("model_class", "target_class"), ("source", "target"), ("model", "target"), ("from", "to")}


def read_class_map(path: str) -> list[tuple[str, str, int]]:
    """``[(model_class, target_class, line), ...]`` of a class-map file."""
    from vdgtool.video.manifest import read_text_lines

    import os

    if not os.path.isfile(path):
        raise InputError(f"class map {path} does not exist", "pass a CSV of model_class,target_class lines")
    out = []
    for n, line in enumerate(read_text_lines(path, "class map"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t") if "\t" in line else next(csv.reader([line]))
        fields = [f.strip() for f in fields]
        if len(fields) > 2 or not fields[0]:
            raise InputError(f"{path} line {n}: '{line.strip()}' is not 'model_class,target_class'",
                             "write one model_class,target_class pair per line (quote names holding a comma)")
        if tuple(f.lower() for f in fields) in _HEADERS and not out:
            continue
        out.append((fields[0], fields[1] if len(fields) == 2 and fields[1] else fields[0], n))
    if not out:
        raise InputError(f"class map {path} maps no class", "write one model_class,target_class pair per line")
    return out


def build_class_map(path: str, model_classes: list[str], data_classes: list[str]) -> tuple[list[str], list[list[int]]]:
    """(target classes, model indices of each target class) for data whose classes are ``data_classes``.

    The target classes are the map's targets that the data has, in the map's order; every data class
    must be one of them."""
    pos = {c: i for i, c in enumerate(model_classes)}
    groups: dict[str, list[int]] = {}
    seen: dict[str, tuple[str, int]] = {}
    for mc, tc, line in read_class_map(path):
        if mc not in pos:
            near = [c for c in model_classes if c.lower().replace("_", " ") == mc.lower().replace("_", " ")]
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(f"class map {path} line {line}: '{mc}' is not a class of the model "
                              f"({len(model_classes)} classes){hint}",
                              "use the model's class names exactly (--model-classes lists them in output order)")
        if mc in seen and seen[mc][0] != tc:
            raise ConfigError(f"class map {path} maps '{mc}' twice (lines {seen[mc][1]} and {line})",
                              "map every model class to one target class")
        seen[mc] = (tc, line)
        if pos[mc] not in groups.setdefault(tc, []):
            groups[tc].append(pos[mc])
    unmapped = [c for c in data_classes if c not in groups]
    if unmapped:
        more = f" (and {len(unmapped) - 1} more)" if len(unmapped) > 1 else ""
        raise ConfigError(f"class '{unmapped[0]}'{more} of the data maps to no class of the model in {path}",
                          "add a 'model_class,target_class' line for it, or evaluate a store without that class "
                          "(vdgtool extract --classes / a CSV of the shared classes)")
    targets = [t for t in groups if t in set(data_classes)]
    return targets, [groups[t] for t in targets]


class ClassMapPredictor(nn.Module):
    """A predictor (method or model) whose outputs are regrouped into target classes."""

    def __init__(self, inner, groups: list[list[int]]):
        super().__init__()
        self.inner = inner
        self.INPUTS = tuple(inner.INPUTS)
        self.groups = [list(g) for g in groups]
        n_model = max(i for g in groups for i in g) + 1
        m = torch.zeros(n_model, len(groups))
        for j, g in enumerate(groups):
            m[g, j] = 1.0
        self.register_buffer("membership", m, persistent=False)  # (K_model, K_target), for probabilities

    def _logits(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.stack([logits[:, g].float().logsumexp(1) for g in self.groups], 1)

    def _probs(self, probs: torch.Tensor) -> torch.Tensor:
        p = probs.float()[:, : self.membership.shape[0]] @ self.membership.to(probs.device)
        return p / p.sum(1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def predict(self, batch: dict) -> dict:
        out = self.inner.predict(batch)
        res = {"logits": self._logits(out["logits"])}
        if out.get("probs") is not None:
            res["probs"] = self._probs(out["probs"])
        if out.get("streams"):
            res["streams"] = {k: self._logits(v) for k, v in out["streams"].items()}
        return res

    @torch.no_grad()
    def features(self, batch: dict) -> torch.Tensor:
        return self.inner.features(batch)

    def input_specs(self) -> dict:
        return self.inner.input_specs()


__all__ = ["ClassMapPredictor", "build_class_map", "read_class_map"]
