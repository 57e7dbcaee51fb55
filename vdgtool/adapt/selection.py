"""Pseudo-label selection policies over per-sample predictions (numpy, no torch).

Every policy returns the *indices* of the selected samples in increasing order, so a selection is a
deterministic function of its inputs (no RNG), and ties are broken towards the earlier sample.
"""

from __future__ import annotations

import numpy as np

from vdgtool.errors import ConfigError


def top_per_class(pred: np.ndarray, conf: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` most confident samples of each predicted class.

    ``pred`` (N,) int predicted classes, ``conf`` (N,) float confidences. Within a class, higher
    confidence first; equal confidences keep the earlier sample (the semantics of a capacity-``n``
    min-heap that replaces its minimum only on a strictly larger value, as the CFB release's bank does).
    A class with fewer than ``n`` samples keeps all of them.
    """
    pred = np.asarray(pred).reshape(-1)
    conf = np.asarray(conf, dtype=np.float64).reshape(-1)
    if pred.shape != conf.shape:
        raise ConfigError(f"{pred.shape[0]} predictions but {conf.shape[0]} confidences", "pass one per sample")
    if int(n) < 1:
        raise ConfigError(f"top-per-class n={n} must be at least 1", "pass a positive count")
    if pred.size == 0:
        return np.zeros(0, dtype=np.int64)
    # sort by class, then by confidence descending, then by index ascending (stable lexsort)
    order = np.lexsort((np.arange(pred.size), -conf, pred))
    cls = pred[order]
    first = np.r_[0, np.flatnonzero(cls[1:] != cls[:-1]) + 1]
    rank = np.arange(pred.size) - np.repeat(first, np.diff(np.r_[first, pred.size]))
    return np.sort(order[rank < int(n)]).astype(np.int64)


__all__ = ["top_per_class"]
