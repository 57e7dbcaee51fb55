"""Pseudo-label selection over prediction stores (``vdgtool pseudolabel select``).

A predictions store (``vdgtool eval -o``) holds one row per evaluated clip view group, keyed by video;
``read_predictions`` averages the rows of each key. ``select_predictions`` applies a selection policy
(``vdgtool.adapt.selection.select``) and writes a predictions store holding only the selected videos:
arrays ``probs`` (their averaged class probabilities; the pseudo-label is the argmax) and ``conf``
(the selection score), with the ground-truth label column withheld (-1), so nothing downstream can
train on a pool label by mistake. The summary reports pseudo-label precision when the parent store
has ground truth, as a diagnostic.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from vdgtool.adapt.selection import Selection, confidence, select
from vdgtool.errors import ConfigError, InputError, StoreError
from vdgtool.stores.table import TableStore, TableStoreWriter
from vdgtool.utils.provenance import make_provenance


@dataclasses.dataclass
class PredictionTable:
    """The rows of a predictions store, one per video key (rows of a key averaged), in first-seen order."""

    path: str
    keys: list[str]
    probs: np.ndarray          # (N, K) float64
    labels: np.ndarray         # (N,) ground truth in the store's classes, -1 = unknown (diagnostics only)
    domains: np.ndarray        # (N,) index into ``domain_names``, -1 = none
    videos: np.ndarray         # (N,) row of the video in the parent clip store
    rows_per_key: np.ndarray   # (N,) how many store rows were averaged
    classes: list[str]
    domain_names: list[str]
    conventions: dict
    provenance: dict

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())


def read_predictions(path: str) -> PredictionTable:
    """Read a predictions store: ``probs`` (or the softmax of ``logits``), averaged over the rows of a key."""
    path = os.fspath(path)
    with TableStore(path, kind="predictions") as ts:
        if "probs" in ts.array_names:
            probs = np.asarray(ts.array("probs"), dtype=np.float64)
        elif "logits" in ts.array_names:
            lg = np.asarray(ts.array("logits"), dtype=np.float64)
            probs = np.exp(lg - lg.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
        else:
            raise StoreError(f"{path} has neither 'probs' nor 'logits' (it has: {', '.join(ts.array_names)})",
                             "pass a predictions store written by vdgtool eval -o")
        meta = ts.meta
        classes, domain_names = list(ts.classes), list(ts.domains)
        conventions, provenance = dict(ts.conventions), dict(ts.provenance)
    if probs.ndim != 2:
        raise StoreError(f"{path}: predictions must be (rows, classes), got shape {probs.shape}", "re-create it")
    if not classes or probs.shape[1] != len(classes):
        raise StoreError(f"{path} has {probs.shape[1]} prediction columns but {len(classes)} class names",
                         "re-create it with vdgtool eval -o")
    keys = np.asarray(meta["key"], dtype=object).astype(str)
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")          # first-seen order of the keys
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    g = rank[inv]                                     # row -> key position
    n = order.size
    counts = np.bincount(g, minlength=n)
    sums = np.zeros((n, probs.shape[1]))
    np.add.at(sums, g, probs)
    pick = first[order]                               # first row of each key
    return PredictionTable(path=path, keys=[str(k) for k in uniq[order]], probs=sums / np.maximum(counts, 1)[:, None],
                           labels=np.asarray(meta["label"], dtype=np.int64)[pick],
                           domains=np.asarray(meta["domain"], dtype=np.int64)[pick],
                           videos=np.asarray(meta["video"], dtype=np.int64)[pick], rows_per_key=counts,
                           classes=classes, domain_names=domain_names, conventions=conventions, provenance=provenance)


def _previous_indices(table: PredictionTable, previous: str) -> np.ndarray:
    prev = read_predictions(previous)
    if prev.classes != table.classes:
        raise ConfigError(f"{previous} has classes {prev.classes[:4]}... but {table.path} has {table.classes[:4]}...",
                          "accumulate selections made from predictions of the same model and label space")
    pos = {k: i for i, k in enumerate(table.keys)}
    missing = [k for k in prev.keys if k not in pos]
    if missing:
        raise InputError(f"{len(missing)} videos of {previous} (e.g. {missing[0]}) are not in {table.path}",
                         "accumulate selections of the same pool")
    return np.array([pos[k] for k in prev.keys], dtype=np.int64)


def select_table(table: PredictionTable, *, previous: str | None = None, **rule) -> Selection:
    """``select`` on a prediction table; ``previous``: a selected store of the same pool to accumulate with."""
    prev = _previous_indices(table, previous) if previous else None
    return select(table.probs, previous=prev, **rule)


def write_selection(table: PredictionTable, sel: Selection, out: str, *, overwrite: bool = False,
                    parents: tuple[str, ...] = (), extra_conventions: dict | None = None) -> str:
    """Write the selected rows of ``table`` as a predictions store (``probs``, ``conf``; labels withheld)."""
    conv = dict(table.conventions)
    conv.update({"selection": dict(sel.rule), "parent_store": os.path.abspath(table.path),
                 "ground_truth": "withheld (label column -1)", "rows": "one per video key, views averaged",
                 "scores": "probs", "pseudo_label": "argmax of probs"})
    conv.update(extra_conventions or {})
    idx = sel.indices
    with TableStoreWriter(out, "predictions", classes=table.classes, domains=table.domain_names, conventions=conv,
                          provenance=make_provenance(parents=[table.path, *parents]), overwrite=overwrite) as w:
        w.append({"probs": table.probs[idx].astype(np.float32), "conf": sel.conf.astype(np.float32)},
                 key=[table.keys[i] for i in idx], video=table.videos[idx], clip=np.zeros(idx.size, np.int32),
                 label=np.full(idx.size, -1, np.int32), domain=table.domains[idx])
    return out


def select_predictions(preds: str, out: str, *, threshold: float = 0.9, score: str = "conf", balance: str = "none",
                       fraction: float | None = None, cap_factor: float = 1.0, top_per_class: int | None = None,
                       accumulate: str | None = None, overwrite: bool = False) -> dict:
    """Select pseudo-labelled videos from ``preds`` and write them to ``out``; return the summary.

    An empty selection raises :class:`InputError` (naming the best score) and writes nothing.
    """
    table = read_predictions(preds)
    if not len(table):
        raise InputError(f"{preds} has no rows", "evaluate the pool first: vdgtool eval CKPT --data POOL -o PREDS")
    rule = {"threshold": threshold, "score": score, "balance": balance, "fraction": fraction,
            "cap_factor": cap_factor, "top_per_class": top_per_class}
    sel = select_table(table, previous=accumulate, **rule)
    if not len(sel):
        best = float(confidence(table.probs, score).max())
        raise InputError(f"no video of {preds} reaches {score} >= {threshold:g} (the highest {score} is {best:.3f})",
                         f"lower --threshold (e.g. --threshold {max(0.0, np.floor(best * 100) / 100):.2f})")
    write_selection(table, sel, out, overwrite=overwrite, parents=(accumulate,) if accumulate else ())
    d = sel.summary(table.classes, table.labels if table.has_labels else None)
    d.update({"store": out, "parent": preds, "accumulated_with": accumulate,
              "rows_averaged": int(table.rows_per_key.sum())})
    return d


__all__ = ["PredictionTable", "read_predictions", "select_predictions", "select_table", "write_selection"]
