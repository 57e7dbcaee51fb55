"""The category-aware flow memory bank of MM 2024 ("CFB"; docs/cfb.md, spec §2), as references.

Per class up to ``capacity`` (N) entries, filled from the fused predictions of the current model on
the unlabelled target videos: the confidence of video i is ``s_i = max_c P_i[c]`` with
``P_i = mean_t(softmax_rgb + softmax_flow)`` (:func:`fuse_scores`, range (0, 2]), its class is the
pseudo-label ``argmax_c P_i[c]``, and every class keeps its N most confident videos
(:func:`vdgtool.adapt.selection.top_per_class`: ties keep the earlier video, as the release's
min-heap). :meth:`FlowBank.rebuild` starts from scratch each time (the release keeps nothing from one
epoch to the next). An entry is a *reference* (target video key, view index, the caller's item
index), never a flow tensor: the release holds a 6.4 MB tensor per entry (≈5 GB for E→H, ≈39 GB for
B→U), a reference costs tens of bytes (``benchmarks/bank/``).

Retrieval (:meth:`FlowBank.retrieve`) for a batch of *source* labels returns, per sample, the
references whose flows the caller averages: one for ``random`` (uniform over the class's entries,
independently per sample, with replacement: the paper's "Random 1/N"), one for ``top-k`` (uniform
over the k most confident), all of them for ``mean`` ("Mean N"); an empty tuple when the class's
bank is empty, meaning "keep the sample's own flow".

``state_dict()`` holds only lists, numbers and strings, so a checkpoint with it loads with
``torch.load(weights_only=True)``. True target labels, when the caller has them, are stored beside
the entries for the per-class purity diagnostic and are never used to build or query the bank.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple, Sequence

import numpy as np

from vdgtool.adapt.selection import top_per_class
from vdgtool.errors import CheckpointError, ConfigError

RETRIEVAL_MODES = ("random", "top-k", "mean")
STATE_VERSION = 1
#: fixed bytes of one entry's numeric fields (view, index, class, true label: int64; confidence: float64)
NUMERIC_BYTES_PER_ENTRY = 5 * 8


class BankEntry(NamedTuple):
    """One bank entry: which target flow to read, and why it is here."""

    key: str           # target video key (the durable reference)
    view: int          # view index within the pass that scored it (0 for a single centre view)
    index: int         # the caller's item index in the target dataset of that pass (-1: unknown)
    confidence: float  # fused confidence s_i in (0, 2]
    label: int         # bank class = the pseudo-label
    true_label: int    # hidden true label for diagnostics (-1: unknown)


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def _softmax(z: np.ndarray, axis: int) -> np.ndarray:
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def fuse_scores(logits_rgb, logits_flow) -> np.ndarray:
    """``P = mean_t(softmax(z_rgb) + softmax(z_flow))`` (N, C) from logits (N, C) or per time step (N, C, T).

    Softmax over classes at each time step, summed over the two streams, averaged over time (the
    release's ``Acc_sf`` score; rows sum to 2). Accepts numpy arrays or torch tensors.
    """
    zr, zf = _to_numpy(logits_rgb).astype(np.float64), _to_numpy(logits_flow).astype(np.float64)
    if zr.shape != zf.shape or zr.ndim not in (2, 3):
        raise ConfigError(f"logits of shapes {zr.shape} and {zf.shape} cannot be fused",
                          "pass RGB and flow logits of the same shape, (N, C) or (N, C, T)")
    p = _softmax(zr, 1) + _softmax(zf, 1)
    return p.mean(axis=2) if p.ndim == 3 else p


def _uniform(generator, n: int) -> np.ndarray:
    """``n`` float64 uniforms in [0, 1) from a numpy Generator or a torch Generator."""
    if isinstance(generator, np.random.Generator):
        return generator.random(n)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(generator, torch.Generator):
        return torch.rand(n, generator=generator, dtype=torch.float64).numpy()
    raise ConfigError(f"retrieval needs a numpy or torch random generator, got {type(generator).__name__}",
                      "pass np.random.default_rng(seed) or a seeded torch.Generator()")


class FlowBank:
    """Per-class top-N bank of target flow references (see the module docstring).

    ``view_spec`` describes, in plain values, how an entry's flow is read (e.g. ``{"frames": 16,
    "source_frames": 32, "crop": "centre"}``); it travels with the state so a resumed run reads the
    same view.
    """

    def __init__(self, num_classes: int, capacity: int, *, view_spec: dict | None = None):
        if int(num_classes) < 1:
            raise ConfigError(f"flow bank num_classes={num_classes} must be at least 1", "pass the class count")
        if int(capacity) < 1:
            raise ConfigError(f"flow bank capacity N={capacity} must be at least 1", "the paper uses N=60")
        self.num_classes, self.capacity = int(num_classes), int(capacity)
        self.view_spec: dict = dict(view_spec or {})
        self.builds = 0
        self.last_stats: dict[str, Any] = {}
        self._entries: list[list[BankEntry]] = [[] for _ in range(self.num_classes)]

    # -- contents -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return sum(len(e) for e in self._entries)

    def entries(self, cls: int) -> tuple[BankEntry, ...]:
        """Entries of class ``cls``, most confident first (ties: earlier item first)."""
        return tuple(self._entries[self._check_class(cls)])

    def fill(self) -> list[int]:
        """Number of entries per class."""
        return [len(e) for e in self._entries]

    def clear(self) -> None:
        self._entries = [[] for _ in range(self.num_classes)]

    def _check_class(self, c: int) -> int:
        c = int(c)
        if not 0 <= c < self.num_classes:
            raise ConfigError(f"class {c} is outside the bank's {self.num_classes} classes",
                              "pass labels in the training label space")
        return c

    # -- filling --------------------------------------------------------------------------------
    def rebuild(self, scores, keys: Sequence[str], *, views: Sequence[int] | None = None,
                indices: Sequence[int] | None = None, true_labels: Sequence[int] | None = None,
                labels: Sequence[int] | None = None) -> dict:
        """Replace the contents with the top-N most confident target videos per pseudo-label.

        ``scores`` (M, C): fused scores of M target items (:func:`fuse_scores`); ``keys`` their video
        keys; ``views`` their view index (default 0), ``indices`` the caller's item indices (default
        0..M-1); ``true_labels`` hidden labels (-1 unknown) for the diagnostics only. ``labels``
        replaces the pseudo-labels (the bank class of each item; its confidence is then its score for
        that class): the oracle control passes the true labels here. Returns :meth:`stats`.
        """
        s = _to_numpy(scores).astype(np.float64)
        if s.ndim != 2 or s.shape[1] != self.num_classes:
            raise ConfigError(f"bank scores have shape {s.shape}, expected (items, {self.num_classes})",
                              "pass the fused (N, C) scores of fuse_scores()")
        m = s.shape[0]
        keys = [str(k) for k in keys]
        views = [0] * m if views is None else [int(v) for v in views]
        indices = list(range(m)) if indices is None else [int(i) for i in indices]
        truth = [-1] * m if true_labels is None else [int(t) for t in _to_numpy(true_labels).reshape(-1)]
        if not (len(keys) == len(views) == len(indices) == len(truth) == m):
            raise ConfigError(f"{m} scores but {len(keys)} keys, {len(views)} views, {len(indices)} indices, "
                              f"{len(truth)} true labels", "pass one of each per scored target item")
        if not np.all(np.isfinite(s)):
            raise ConfigError("bank scores contain NaN or infinite values", "check the model's predictions")
        pred = argmax = s.argmax(axis=1)
        if labels is not None:
            pred = _to_numpy(labels).reshape(-1).astype(np.int64)
            if len(pred) != m or (m and (pred.min() < 0 or pred.max() >= self.num_classes)):
                raise ConfigError(f"bank labels must be {m} classes in 0..{self.num_classes - 1}",
                                  "pass one known label per scored item (the oracle control needs labelled targets)")
        conf = s[np.arange(m), pred] if m else np.zeros(0)
        keep = top_per_class(pred, conf, self.capacity)
        # within a class: most confident first, ties by item order (the order top_per_class ranks by)
        keep = keep[np.lexsort((keep, -conf[keep], pred[keep]))]
        self.clear()
        for i in keep:
            self._entries[int(pred[i])].append(
                BankEntry(keys[i], views[i], indices[i], float(conf[i]), int(pred[i]), truth[i]))
        self.builds += 1
        known = np.asarray([t >= 0 for t in truth], bool)
        self.last_stats = self._compute_stats(
            pseudo_acc=float((argmax[known] == np.asarray(truth)[known]).mean()) if known.any() else None,
            scored=m)
        return self.stats()

    def permuted(self, perm: Sequence[int]) -> "FlowBank":
        """A copy whose class ``c`` holds the entries of class ``perm[c]`` (the shuffled-class control)."""
        perm = [self._check_class(p) for p in perm]
        if sorted(perm) != list(range(self.num_classes)):
            raise ConfigError(f"{perm} is not a permutation of the {self.num_classes} classes",
                              "pass each class index once")
        out = FlowBank(self.num_classes, self.capacity, view_spec=self.view_spec)
        out.builds, out.last_stats = self.builds, dict(self.last_stats)
        out._entries = [[e._replace(label=c) for e in self._entries[p]] for c, p in enumerate(perm)]
        return out

    # -- retrieval ------------------------------------------------------------------------------
    def retrieve(self, labels, generator, mode: str = "random", k: int = 5) -> list[tuple[BankEntry, ...]]:
        """For each source label, the bank references whose flows replace the sample's own flow.

        ``random``: one entry drawn uniformly from the class (with replacement across the batch);
        ``top-k``: one drawn uniformly from the class's ``k`` most confident; ``mean``: all entries
        of the class (the caller averages their flows). An empty tuple: the class is empty, keep
        the sample's own flow. ``generator`` (numpy or torch) is consumed by exactly one uniform per
        sample in every mode, so the random stream does not depend on the bank's contents.
        """
        if mode not in RETRIEVAL_MODES:
            raise ConfigError(f"unknown bank retrieval {mode!r}", f"use one of {', '.join(RETRIEVAL_MODES)}")
        if mode == "top-k" and int(k) < 1:
            raise ConfigError(f"top-k retrieval needs k >= 1, got {k}", "e.g. k=5")
        lab = [self._check_class(c) for c in _to_numpy(labels).reshape(-1).tolist()]
        u = _uniform(generator, len(lab))
        out: list[tuple[BankEntry, ...]] = []
        for c, ui in zip(lab, u):
            ents = self._entries[c]
            if not ents:
                out.append(())
            elif mode == "mean":
                out.append(tuple(ents))
            else:
                pool = ents if mode == "random" else ents[:int(k)]
                out.append((pool[min(int(ui * len(pool)), len(pool) - 1)],))
        return out

    # -- diagnostics ----------------------------------------------------------------------------
    def _compute_stats(self, pseudo_acc: float | None, scored: int) -> dict:
        fill = self.fill()
        purity: list[float | None] = []
        right = known = 0
        for c, ents in enumerate(self._entries):
            t = [e.true_label for e in ents if e.true_label >= 0]
            purity.append(sum(x == c for x in t) / len(t) if t else None)
            right += sum(x == c for x in t)
            known += len(t)
        return {"entries": len(self), "fill": fill, "empty_classes": sum(f == 0 for f in fill),
                "purity": purity, "overall_purity": right / known if known else None,
                "pseudo_label_accuracy": pseudo_acc, "scored": scored, "builds": self.builds}

    def stats(self) -> dict:
        """Per-class fill; purity (share of entries whose hidden true label is the bank class) per class
        and overall, and the accuracy of all pseudo-labels of the last rebuild, when true labels were
        given (None otherwise). A diagnostic: nothing here feeds back into the bank."""
        return dict(self.last_stats) if self.last_stats else self._compute_stats(None, 0)

    def nbytes(self) -> int:
        """Payload bytes of the references: UTF-8 keys plus the fixed numeric fields (see benchmarks/bank)."""
        return sum(len(e.key.encode()) + NUMERIC_BYTES_PER_ENTRY for ents in self._entries for e in ents)

    def python_nbytes(self) -> int:
        """Approximate Python heap bytes of the entries (tuples, strings, numbers), for the benchmark."""
        total = 0
        for ents in self._entries:
            total += sys.getsizeof(ents)
            for e in ents:
                total += sys.getsizeof(e) + sum(sys.getsizeof(f) for f in e)
        return total

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain lists / numbers / strings (``torch.load(weights_only=True)`` safe), entries in order."""
        flat = [e for ents in self._entries for e in ents]
        return {"version": STATE_VERSION, "num_classes": self.num_classes, "capacity": self.capacity,
                "view_spec": dict(self.view_spec), "builds": self.builds,
                "keys": [e.key for e in flat], "views": [e.view for e in flat], "indices": [e.index for e in flat],
                "confidences": [e.confidence for e in flat], "labels": [e.label for e in flat],
                "true_labels": [e.true_label for e in flat],
                "last_stats": {k: (list(v) if isinstance(v, list) else v) for k, v in self.last_stats.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` exactly (same entries, same order, same statistics)."""
        try:
            version = int(state["version"])
            if version > STATE_VERSION:
                raise CheckpointError(f"flow bank state version {version} is newer than this vdgtool reads "
                                      f"({STATE_VERSION})", "upgrade vdgtool")
            if int(state["num_classes"]) != self.num_classes or int(state["capacity"]) != self.capacity:
                raise CheckpointError(
                    f"flow bank state has {state['num_classes']} classes x N={state['capacity']}, this bank "
                    f"{self.num_classes} x N={self.capacity}", "resume with the same classes and bank size")
            cols = [state[f] for f in ("keys", "views", "indices", "confidences", "labels", "true_labels")]
            if len({len(c) for c in cols}) != 1:
                raise CheckpointError("flow bank state columns have different lengths", "the checkpoint is damaged")
            entries: list[list[BankEntry]] = [[] for _ in range(self.num_classes)]
            for key, view, index, conf, label, truth in zip(*cols):
                e = BankEntry(str(key), int(view), int(index), float(conf), self._check_class(label), int(truth))
                entries[e.label].append(e)
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise CheckpointError(f"flow bank state cannot be read ({exc})", "the checkpoint is damaged") from exc
        if any(len(e) > self.capacity for e in entries):
            raise CheckpointError("flow bank state holds more entries in a class than its capacity",
                                  "the checkpoint is damaged")
        self._entries = entries
        self.view_spec = dict(state.get("view_spec", {}))
        self.builds = int(state.get("builds", 0))
        self.last_stats = dict(state.get("last_stats", {}))


__all__ = ["FlowBank", "BankEntry", "fuse_scores", "RETRIEVAL_MODES"]
