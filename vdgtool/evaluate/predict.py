"""Running a model or a method over a dataset: per-video logits averaged over test views (clips x crops).

Everything that predicts (validation inside ``train``, ``eval``, ``score``, ``features``, prediction
stores, a method's own passes over its target pool) goes through :func:`predict_dataset`, which calls
the method's ``predict(batch)``: a two-stream method therefore validates and evaluates fused, with each
stream's scores beside the fused ones.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from vdgtool.runtime import autocast_for, make_loader  # noqa: F401  (re-exported: older import path)
from vdgtool.utils.log import progress


class ModelPredictor(nn.Module):
    """A plain video model seen through the method interface (``predict``/``features``, one input)."""

    INPUTS = ("video",)

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @torch.no_grad()
    def predict(self, batch: dict) -> dict:
        return {"logits": self.model(batch["video"])}

    @torch.no_grad()
    def features(self, batch: dict) -> torch.Tensor:
        return self.model.forward_features(batch["video"]).flatten(1)

    def input_specs(self) -> dict:
        return {"video": self.model.input_spec}


def as_predictor(obj):
    """A method (anything with ``predict`` and ``INPUTS``) as it is; a bare model wrapped."""
    if hasattr(obj, "predict") and hasattr(obj, "INPUTS"):
        return obj
    return ModelPredictor(obj)


def flatten_views(batch: dict, keys) -> tuple[dict, int, int]:
    """Merge the view axis of multi-view clips (B, V, C, T, H, W) into the batch: (batch, B, V)."""
    first = batch[keys[0]]
    if first.dim() != 6:
        return batch, first.shape[0], 1
    b, v = first.shape[:2]
    out = dict(batch)
    for k in keys:
        out[k] = batch[k].flatten(0, 1)
    return out, b, v


@torch.no_grad()
def predict_dataset(model, dataset, *, device="cpu", batch_size: int = 16, workers: int = 0, amp: str = "auto",
                    features: bool = False, desc: str = "predict", indices=None, keep_views: bool = False) -> dict:
    """Logits and probabilities (N, C) per video, averaged over views; optionally pooled features (N, D).

    ``model``: a method (its ``predict(batch)``) or a plain model. With several views per video
    (multi-clip / multi-crop), softmax probabilities are averaged ("probs") and logits are averaged
    ("logits"); a method that fuses streams returns its fused probabilities and, under "streams", each
    stream's averaged probabilities. ``indices`` restricts the pass to some items (e.g. a rank's shard).
    ``keep_views``: features per view, (N, V, D), instead of their mean (few-shot support examples).
    """
    pred = as_predictor(model)
    was_training = pred.training
    pred.eval()
    if indices is not None:
        dataset = torch.utils.data.Subset(dataset, np.asarray(indices, dtype=np.int64).tolist())
    loader = make_loader(dataset, batch_size, workers, device=device)
    ac = autocast_for(device, amp)
    keys_in = tuple(pred.INPUTS)
    logits_all, probs_all, feats_all, labels, domains, keys, idx = [], [], [], [], [], [], []
    streams_all: dict[str, list] = {}
    try:
        for batch in progress(loader, desc=desc, unit="batch"):
            batch = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) and k in keys_in else v)
                     for k, v in batch.items()}
            batch, b, v = flatten_views(batch, keys_in)
            with ac():
                out = pred.predict(batch)
                f = pred.features(batch) if features else None
            lg = out["logits"].float()
            pr = out["probs"].float() if out.get("probs") is not None else lg.softmax(-1)
            lg = lg.view(b, v, -1).mean(1)
            pr = pr.view(b, v, -1).mean(1)
            logits_all.append(lg.cpu())
            probs_all.append(pr.cpu())
            for name, s in (out.get("streams") or {}).items():
                streams_all.setdefault(name, []).append(s.float().softmax(-1).view(b, v, -1).mean(1).cpu())
            if features:
                fv = f.float().view(b, v, -1)
                feats_all.append((fv if keep_views else fv.mean(1)).cpu())
            labels.append(torch.as_tensor(batch["label"]))
            domains.append(torch.as_tensor(batch["domain"]))
            keys += list(batch["key"])
            idx.append(torch.as_tensor(batch["index"]))
    finally:
        pred.train(was_training)
    out = {
        "logits": torch.cat(logits_all).numpy() if logits_all else np.zeros((0, 0), np.float32),
        "probs": torch.cat(probs_all).numpy() if probs_all else np.zeros((0, 0), np.float32),
        "labels": torch.cat(labels).numpy() if labels else np.zeros(0, np.int64),
        "domains": torch.cat(domains).numpy() if domains else np.zeros(0, np.int64),
        "index": torch.cat(idx).numpy() if idx else np.zeros(0, np.int64),
        "keys": keys,
        "streams": {k: torch.cat(v).numpy() for k, v in streams_all.items()},
    }
    if features:
        out["features"] = torch.cat(feats_all).numpy() if feats_all else np.zeros((0, 0), np.float32)
    return out


def merge_predictions(parts: list[dict]) -> dict:
    """Concatenate the outputs of :func:`predict_dataset` over shards, ordered by item index."""
    parts = [p for p in parts if len(p["keys"])]
    if not parts:
        return {"logits": np.zeros((0, 0), np.float32), "probs": np.zeros((0, 0), np.float32),
                "labels": np.zeros(0, np.int64), "domains": np.zeros(0, np.int64), "index": np.zeros(0, np.int64),
                "keys": [], "streams": {}}
    index = np.concatenate([p["index"] for p in parts])
    order = np.argsort(index, kind="stable")
    out = {"index": index[order], "keys": [k for p in parts for k in p["keys"]]}
    out["keys"] = [out["keys"][i] for i in order]
    for k in ("logits", "probs", "labels", "domains", "features"):
        if k in parts[0]:
            out[k] = np.concatenate([p[k] for p in parts])[order]
    out["streams"] = {s: np.concatenate([p["streams"][s] for p in parts])[order] for s in parts[0]["streams"]}
    return out


__all__ = ["ModelPredictor", "as_predictor", "autocast_for", "flatten_views", "make_loader", "merge_predictions",
           "predict_dataset"]
