"""Pseudo-label selection policies over per-sample predictions (numpy, no torch).

Every policy returns the *indices* of the selected samples in increasing order, so a selection is a
deterministic function of its inputs (no RNG), and ties are broken towards the earlier sample.

``select(probs, ...)`` is the self-training rule of ``vdgtool pseudolabel`` (and of CFB's memory
bank through ``top_per_class``): score every row (``conf`` = max_k p, ``margin`` = p(1) - p(2),
``entropy`` = 1 - H(p) / log K), keep rows scoring at least the threshold, then optionally balance
per predicted class (``fraction``: the top ceil(q * n_k) of each class, n_k = pool rows predicted k,
CBST style; ``cap``: at most ceil(cap_factor * |S| / K) per class; ``top_per_class``: at most N per
class), and optionally add a previous round's selection (labels from the newest prediction). Ground
truth never enters ``select``; ``Selection.summary(true_labels=...)`` reports precision as a
diagnostic only.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from vdgtool.errors import ConfigError

SCORES = ("conf", "margin", "entropy")
#: scores within this of the threshold pass it: stores keep float32 probabilities, so a mean of 0.9 and 0.7
#: reads 0.79999995 and must still pass 0.8
SCORE_TOL = 1e-6
BALANCES = ("none", "fraction", "cap")


def _top_n_per_class(pred: np.ndarray, conf: np.ndarray, caps) -> np.ndarray:
    """Indices of the ``caps`` (an int, or one per class) most confident samples of each predicted class."""
    if pred.size == 0:
        return np.zeros(0, dtype=np.int64)
    # sort by class, then by confidence descending, then by index ascending (stable lexsort)
    order = np.lexsort((np.arange(pred.size), -conf, pred))
    cls = pred[order]
    first = np.r_[0, np.flatnonzero(cls[1:] != cls[:-1]) + 1]
    rank = np.arange(pred.size) - np.repeat(first, np.diff(np.r_[first, pred.size]))
    limit = caps[cls] if isinstance(caps, np.ndarray) else int(caps)
    return np.sort(order[rank < limit]).astype(np.int64)


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
    return _top_n_per_class(pred, conf, int(n))


def _ceil(x: float) -> int:
    """ceil without float noise: 0.2 * 10 is 2, not 3."""
    return int(math.ceil(round(float(x), 9)))


def check_probs(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ConfigError(f"predictions must be a (rows, classes) matrix, got shape {p.shape}",
                          "pass the probabilities of a predictions store")
    if p.size and (not np.isfinite(p).all() or p.min() < -1e-6 or p.max() > 1 + 1e-6):
        raise ConfigError("predictions hold values outside [0, 1] or non-finite values",
                          "pass softmax probabilities (the 'probs' array), not logits")
    return p


def confidence(probs, score: str = "conf") -> np.ndarray:
    """Per-row score in [0, 1]: ``conf`` max_k p, ``margin`` p(1) - p(2), ``entropy`` 1 - H(p) / log K.

    ``entropy`` is the spec's -H(p) rescaled so that 1 is one-hot and 0 uniform: the ranking is the
    same and one threshold scale serves all three scores.
    """
    p = check_probs(probs)
    if score not in SCORES:
        raise ConfigError(f"unknown confidence score '{score}'", f"use one of {', '.join(SCORES)}")
    n, k = p.shape
    if n == 0:
        return np.zeros(0)
    if score == "conf":
        return p.max(axis=1)
    if score == "margin":
        if k == 1:
            return np.ones(n)
        top2 = -np.partition(-p, 1, axis=1)[:, :2]
        return top2[:, 0] - top2[:, 1]
    if k == 1:
        return np.ones(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    return np.clip(1.0 - h / math.log(k), 0.0, 1.0)


def parse_schedule(value) -> tuple[float, ...]:
    """``"0.2,0.4,0.6"`` / a number / a sequence -> fractions in (0, 1], one per round."""
    if value is None:
        return ()
    parts = str(value).split(",") if isinstance(value, str) else (
        list(value) if isinstance(value, (list, tuple)) else [value])
    try:
        out = tuple(float(x) for x in parts if str(x).strip() != "")
    except ValueError:
        raise ConfigError(f"cannot read the fraction schedule {value!r}", "write fractions like 0.2,0.4,0.6") from None
    bad = [q for q in out if not 0.0 < q <= 1.0]
    if not out or bad:
        raise ConfigError(f"fraction {bad[0] if bad else value!r} is outside (0, 1]",
                          "write fractions in (0, 1], e.g. 0.2,0.4,0.6")
    return out


def schedule_value(schedule: Sequence[float], round_index: int) -> float:
    """The fraction of round ``round_index`` (1-based); rounds past the schedule repeat its last value."""
    if not schedule:
        raise ConfigError("an empty fraction schedule", "pass --fraction, e.g. 0.2,0.4,0.6")
    if int(round_index) < 1:
        raise ConfigError(f"round {round_index} is not a round number", "rounds count from 1")
    return float(schedule[min(int(round_index), len(schedule)) - 1])


@dataclasses.dataclass(frozen=True)
class Selection:
    """The rows a policy selected from a pool of ``n_pool`` predictions."""

    indices: np.ndarray     # (S,) int64, increasing: rows of the probability matrix
    labels: np.ndarray      # (S,) int64 pseudo-labels: argmax of the (newest) prediction
    conf: np.ndarray        # (S,) float64 scores of the selected rows
    counts: np.ndarray      # (K,) selected rows per class
    predicted: np.ndarray   # (K,) pool rows predicted as each class (n_k)
    above: np.ndarray       # (K,) pool rows predicted as each class that pass the threshold
    n_pool: int
    rule: dict

    def __len__(self) -> int:
        return int(self.indices.size)

    @property
    def coverage(self) -> float:
        return len(self) / self.n_pool if self.n_pool else 0.0

    def summary(self, class_names: Sequence[str] | None = None, true_labels=None) -> dict:
        """Per-class counts, coverage, and (with ``true_labels`` of the pool rows, -1 = unknown) the
        pseudo-label precision on the selection: a diagnostic, never an input of the selection."""
        k = self.counts.size
        names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
        if len(names) != k:
            raise ConfigError(f"{len(names)} class names for {k} prediction columns", "pass one name per class")
        rows = [{"class": names[c], "predicted": int(self.predicted[c]), "above_threshold": int(self.above[c]),
                 "selected": int(self.counts[c])} for c in range(k)]
        d = {"n_pool": int(self.n_pool), "n_selected": len(self), "coverage": self.coverage,
             "mean_conf": float(self.conf.mean()) if len(self) else None, "rule": dict(self.rule),
             "per_class": rows, "precision": None, "n_labelled_selected": 0}
        if true_labels is not None:
            y = np.asarray(true_labels, dtype=np.int64).reshape(-1)
            if y.size != self.n_pool:
                raise ConfigError(f"{y.size} ground-truth labels for a pool of {self.n_pool}", "pass one per row")
            ys = y[self.indices]
            known = ys >= 0
            ok = known & (ys == self.labels)
            d["n_labelled_selected"] = int(known.sum())
            d["precision"] = float(ok.sum() / known.sum()) if known.any() else None
            for c, r in enumerate(rows):
                m = known & (self.labels == c)
                r["precision"] = float(ok[m].sum() / m.sum()) if m.any() else None
            d["precision_note"] = "diagnostic: ground-truth labels of the pool, never used to select"
        return d


def select(probs, *, threshold: float = 0.9, score: str = "conf", balance: str = "none",
           fraction: float | None = None, cap_factor: float = 1.0, top_per_class: int | None = None,
           previous=None) -> Selection:
    """Select pseudo-labelled rows of a pool from its (rows, K) class probabilities.

    1. score every row (``confidence``) and predict ŷ = argmax (the first maximum);
    2. S = {i : score_i >= threshold} (up to ``SCORE_TOL``, float32 noise);
    3. ``balance="fraction"``: per predicted class k keep the top ceil(fraction * n_k) of S by score,
       n_k = pool rows predicted k (pick ``fraction`` per round with ``schedule_value``);
       ``balance="cap"``: at most ceil(cap_factor * |S| / K) rows per class;
    4. ``top_per_class=N``: at most N rows per class (after 3);
    5. ``previous`` (indices of an earlier selection of the same pool rows): S ∪ previous, labels
       and scores of every row from ``probs`` (the newest prediction).

    Within a class higher scores win and equal scores keep the earlier row, so the result depends on
    nothing but the inputs.
    """
    p = check_probs(probs)
    n, k = p.shape
    if balance not in BALANCES:
        raise ConfigError(f"unknown balance '{balance}'", f"use one of {', '.join(BALANCES)}")
    try:
        tau = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold {threshold!r} is not a number", "pass a threshold in [0, 1]") from None
    if not 0.0 <= tau <= 1.0:
        raise ConfigError(f"threshold {threshold} is outside [0, 1]",
                          "every score (conf, margin, entropy) lies in [0, 1]; pass a threshold there")
    if balance == "fraction":
        if fraction is None:
            raise ConfigError("balance 'fraction' needs a fraction", "pass --fraction q (e.g. 0.2 in round 1)")
        if not 0.0 < float(fraction) <= 1.0:
            raise ConfigError(f"fraction {fraction} is outside (0, 1]", "pass a fraction in (0, 1]")
    elif fraction is not None:
        raise ConfigError(f"fraction {fraction} has no effect without balance 'fraction'",
                          "add --balance fraction, or drop --fraction")
    if balance == "cap" and not float(cap_factor) > 0:
        raise ConfigError(f"cap factor {cap_factor} must be positive", "pass a cap factor > 0 (1.0 = |S| / K)")
    if top_per_class is not None and int(top_per_class) < 1:
        raise ConfigError(f"top-per-class {top_per_class} must be at least 1", "pass a positive count")

    c = confidence(p, score)
    pred = p.argmax(axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
    predicted = np.bincount(pred, minlength=k)
    sel = np.flatnonzero(c >= tau - SCORE_TOL)
    above = np.bincount(pred[sel], minlength=k)
    if balance == "fraction":
        caps = np.array([_ceil(float(fraction) * m) for m in predicted], dtype=np.int64)
        sel = sel[_top_n_per_class(pred[sel], c[sel], caps)]
    elif balance == "cap":
        sel = sel[_top_n_per_class(pred[sel], c[sel], _ceil(float(cap_factor) * sel.size / k))]
    if top_per_class is not None:
        sel = sel[_top_n_per_class(pred[sel], c[sel], int(top_per_class))]
    n_prev = 0
    if previous is not None:
        prev = np.asarray(previous.indices if isinstance(previous, Selection) else previous).reshape(-1)
        if prev.size and (prev.dtype.kind not in "iu" or prev.min() < 0 or prev.max() >= n):
            raise ConfigError(f"the previous selection has rows outside this pool of {n}",
                              "accumulate selections of the same pool (same rows, same order)")
        n_prev = int(prev.size)
        sel = np.union1d(sel, prev.astype(np.int64))
    sel = np.sort(sel).astype(np.int64)
    rule = {"score": score, "threshold": tau, "balance": balance,
            "fraction": None if fraction is None else float(fraction),
            "cap_factor": float(cap_factor) if balance == "cap" else None,
            "top_per_class": None if top_per_class is None else int(top_per_class),
            "accumulated_from": n_prev if previous is not None else None}
    return Selection(indices=sel, labels=pred[sel], conf=c[sel], counts=np.bincount(pred[sel], minlength=k),
                     predicted=predicted, above=above, n_pool=n, rule=rule)


__all__ = ["BALANCES", "SCORES", "Selection", "check_probs", "confidence", "parse_schedule", "schedule_value",
           "select", "top_per_class"]
