"""Test-time ensembles of separately trained runs (``vdgtool eval CKPT --ensemble RUN ...``).

The APN paper trains four models with gamma in {0.001, 0.01, 0.1, 1} and combines them "using the ensemble
strategy of the original ADA method" (Volpi et al. 2018). Rules:

* ``maxconf``: each clip takes the prediction (the whole softmax vector) of the member whose softmax has
  the highest maximum probability; ties go to the member listed first.
* ``mean``: the mean of the members' softmax vectors.
"""

from __future__ import annotations

import numpy as np

from vdgtool.errors import ConfigError, InputError

ENSEMBLE_RULES = ("maxconf", "mean")


def combine(probs: list[np.ndarray], rule: str = "maxconf") -> tuple[np.ndarray, np.ndarray | None]:
    """``(scores (N, C), chosen (N,) member index or None)`` from the members' softmax scores (each (N, C))."""
    if rule not in ENSEMBLE_RULES:
        raise ConfigError(f"unknown ensemble rule '{rule}'", f"use one of {', '.join(ENSEMBLE_RULES)}")
    if not probs:
        raise ConfigError("an ensemble needs at least one member", "pass CKPT and --ensemble RUN")
    p = np.stack([np.asarray(q, dtype=np.float64) for q in probs])  # (K, N, C)
    if rule == "mean":
        return p.mean(0), None
    chosen = p.max(2).argmax(0)  # argmax returns the first of equal maxima
    return p[chosen, np.arange(p.shape[1])], chosen


def member_predictions(ckpts: list[str], stores: list[str], keys: list[str], class_names: list[str], *,
                       device, num_clips: int, num_crops: int, batch_size: int, workers: int, amp: str,
                       seed: int) -> list[dict]:
    """Each member's ``{"checkpoint", "probs"}`` on ``stores``, rows ordered as ``keys``."""
    from vdgtool.evaluate.predict import predict_dataset
    from vdgtool.evaluate.run import _dataset, load_predictor

    out = []
    for ck in ckpts:
        model, classes, _ = load_predictor(ck, device)
        if classes != class_names:
            raise ConfigError(f"ensemble member {ck} has other classes ({len(classes)} vs {len(class_names)})",
                              "ensemble runs trained on the same label space")
        ds = _dataset(stores, model.input_specs(), class_names, num_clips, num_crops, seed)
        p = predict_dataset(model, ds, device=device, batch_size=batch_size, workers=workers, amp=amp,
                            desc="eval (ensemble)")
        pos = {k: i for i, k in enumerate(p["keys"])}
        missing = [k for k in keys if k not in pos]
        if missing:
            raise InputError(f"ensemble member {ck} did not predict {len(missing)} videos (e.g. {missing[0]})",
                             "evaluate every member on the same stores")
        out.append({"checkpoint": ck, "probs": p["probs"][np.array([pos[k] for k in keys])]})
    return out


__all__ = ["ENSEMBLE_RULES", "combine", "member_predictions"]
