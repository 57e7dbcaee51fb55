"""Classification metrics on per-video scores."""

from __future__ import annotations

import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    m = labels >= 0
    if not m.any():
        return float("nan")
    s, y = scores[m], labels[m]
    k = min(k, s.shape[1])
    top = np.argpartition(-s, kth=k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == y[:, None], axis=1)))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    m = labels >= 0
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (labels[m], pred[m]), 1)
    return cm


def mean_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    cm = confusion_matrix(pred, labels, num_classes)
    present = cm.sum(1) > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diag(cm)[present] / cm.sum(1)[present]))


def summarize(scores: np.ndarray, labels: np.ndarray, domains: np.ndarray, class_names: list[str],
              domain_names: list[str]) -> dict:
    """top-1, top-5, mean-class accuracy overall, per domain and per class."""
    n_cls = len(class_names)
    pred = scores.argmax(1) if len(scores) else np.zeros(0, np.int64)
    out = {"n": int(np.sum(labels >= 0)), "top1": topk_accuracy(scores, labels, 1),
           "top5": topk_accuracy(scores, labels, 5), "mean_class": mean_class_accuracy(pred, labels, n_cls)}
    out["per_domain"] = {}
    for d, name in enumerate(domain_names):
        m = domains == d
        if m.any():
            out["per_domain"][name] = {"n": int(np.sum(labels[m] >= 0)),
                                       "top1": topk_accuracy(scores[m], labels[m], 1),
                                       "mean_class": mean_class_accuracy(pred[m], labels[m], n_cls)}
    cm = confusion_matrix(pred, labels, n_cls)
    out["per_class"] = {c: {"n": int(cm[i].sum()), "acc": float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None}
                        for i, c in enumerate(class_names)}
    out["confusion"] = cm.tolist()
    return out


def plot_confusion(cm: np.ndarray, class_names: list[str], path: str, title: str = "") -> str:
    from vdgtool.errors import require

    require("matplotlib", "plot", "the confusion-matrix plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * n + 2), max(3.5, 0.35 * n + 1.5)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 40:
        ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
