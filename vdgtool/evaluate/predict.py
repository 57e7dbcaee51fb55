"""Running a model over a dataset: per-video logits averaged over test views (clips x crops)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from vdgtool.utils.log import progress


def make_loader(dataset, batch_size: int, workers: int, sampler=None, shuffle=False, drop_last=False,
                device=None):
    from vdgtool.data import collate_views

    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle,
                                       num_workers=workers, collate_fn=collate_views, drop_last=drop_last,
                                       pin_memory=bool(device is not None and torch.device(device).type == "cuda"),
                                       persistent_workers=False)


def autocast_for(device, amp: str = "auto"):
    dev = torch.device(device)
    if dev.type != "cuda" or amp == "off":
        return contextlib.nullcontext
    if amp in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return lambda: torch.autocast("cuda", dtype=torch.float16)


@torch.no_grad()
def predict_dataset(model, dataset, *, device="cpu", batch_size: int = 16, workers: int = 0, amp: str = "auto",
                    features: bool = False, desc: str = "predict") -> dict:
    """Logits (N, C) per video, averaged over views; optionally pooled features (N, D).

    With several views per video (multi-clip / multi-crop), softmax probabilities are averaged
    ("probs") and logits are averaged ("logits").
    """
    model.eval()
    loader = make_loader(dataset, batch_size, workers, device=device)
    ac = autocast_for(device, amp)
    logits_all, probs_all, feats_all, labels, domains, keys, idx = [], [], [], [], [], [], []
    for batch in progress(loader, desc=desc, unit="batch"):
        x = batch["video"].to(device, non_blocking=True)
        multi = x.dim() == 6
        if multi:
            b, v = x.shape[:2]
            x = x.flatten(0, 1)
        with ac():
            if features:
                f = model.forward_features(x)
                lg = model.forward_head(f)
            else:
                lg = model(x)
        lg = lg.float()
        pr = lg.softmax(-1)
        if multi:
            lg = lg.view(b, v, -1).mean(1)
            pr = pr.view(b, v, -1).mean(1)
            if features:
                f = f.float().view(b, v, -1).mean(1)
        logits_all.append(lg.cpu())
        probs_all.append(pr.cpu())
        if features:
            feats_all.append(f.float().cpu())
        labels.append(torch.as_tensor(batch["label"]))
        domains.append(torch.as_tensor(batch["domain"]))
        keys += list(batch["key"])
        idx.append(torch.as_tensor(batch["index"]))
    out = {
        "logits": torch.cat(logits_all).numpy() if logits_all else np.zeros((0, 0), np.float32),
        "probs": torch.cat(probs_all).numpy() if probs_all else np.zeros((0, 0), np.float32),
        "labels": torch.cat(labels).numpy() if labels else np.zeros(0, np.int64),
        "domains": torch.cat(domains).numpy() if domains else np.zeros(0, np.int64),
        "index": torch.cat(idx).numpy() if idx else np.zeros(0, np.int64),
        "keys": keys,
    }
    if features:
        out["features"] = torch.cat(feats_all).numpy() if feats_all else np.zeros((0, 0), np.float32)
    return out
