"""Figures: training curves of runs, 2-D embeddings of feature stores, per-class bar charts.

All need the ``plot`` extra (matplotlib; scikit-learn for t-SNE); UMAP is used when ``umap-learn`` is
installed and asked for. Figures are written with the Agg backend (no display needed).
"""

from __future__ import annotations

import json
import os

import numpy as np

from vdgtool.errors import ConfigError, InputError, require

EMBEDDINGS = ("tsne", "umap", "pca")
_MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*")
_STYLES = ("-", "--", ":", "-.")


def _pyplot():
    require("matplotlib", "plot", "plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def read_history(run_dir: str) -> list[dict]:
    """The epoch records of a run's results.jsonl (method event lines skipped)."""
    res = os.path.join(run_dir, "results.jsonl")
    if not os.path.exists(res):
        raise InputError(f"{run_dir} has no results.jsonl", "pass run directories written by vdgtool train")
    out = []
    with open(res) as f:
        for line in f:
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError:
                    raise InputError(f"{res}: a damaged line", "re-run or resume the run") from None
                if isinstance(rec, dict) and "event" not in rec and "epoch" in rec:
                    out.append(rec)
    if not out:
        raise InputError(f"{run_dir} has no finished epoch yet", "wait for the first epoch")
    return out


def _run_labels(run_dirs: list[str]) -> list[str]:
    """Shortest unique tail of each run path (seed0/erm, seed1/erm, ...)."""
    parts = [os.path.normpath(os.path.abspath(d)).split(os.sep) for d in run_dirs]
    for k in range(1, max(len(p) for p in parts) + 1):
        labels = ["/".join(p[-k:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(d) for d in run_dirs]


def plot_curves(run_dirs: list[str], path: str, *, labels: list[str] | None = None, metric: str = "top1",
                title: str | None = None) -> dict:
    """Training loss (left) and validation ``metric`` per store (right) over epochs, one colour per run."""
    plt = _pyplot()
    hists = [read_history(d) for d in run_dirs]
    labels = labels or _run_labels(run_dirs)
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    stores: list[str] = []
    for h in hists:
        for rec in h:
            stores += [s for s in (rec.get("val") or {}) if s not in stores]
    for i, (h, lab) in enumerate(zip(hists, labels)):
        c = colors[i % len(colors)]
        ep = [r["epoch"] + 1 for r in h if isinstance(r.get("train_loss"), (int, float))]
        loss = [r["train_loss"] for r in h if isinstance(r.get("train_loss"), (int, float))]
        if loss:
            ax_l.plot(ep, loss, color=c, marker="." if len(ep) < 30 else None, label=lab)
        for j, s in enumerate(stores):
            pts = [(r["epoch"] + 1, r["val"][s][metric]) for r in h
                   if s in (r.get("val") or {}) and isinstance(r["val"][s].get(metric), (int, float))]
            if pts:
                x, y = zip(*pts)
                ax_a.plot(x, [100 * v for v in y], color=c, linestyle=_STYLES[j % len(_STYLES)],
                          marker="." if len(x) < 30 else None, label=f"{lab}: {s}")
    ax_l.set_title("training loss")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("loss")
    ax_l.grid(alpha=0.3)
    ax_l.legend(fontsize=7)
    ax_a.set_title(f"validation {metric} per store (line style = store)")
    ax_a.set_xlabel("epoch")
    ax_a.set_ylabel(f"{metric} (%)")
    ax_a.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_l, ax_a):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if stores:
        ax_a.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    _save(fig, path)
    return {"path": path, "runs": len(run_dirs), "stores": stores, "epochs": [len(h) for h in hists]}


def embed(features: np.ndarray, method: str = "tsne", *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """(N, D) features -> (N, 2): t-SNE (scikit-learn), UMAP (umap-learn) or PCA; L2-normalised, PCA to
    50 dimensions first for t-SNE / UMAP."""
    if method not in EMBEDDINGS:
        raise ConfigError(f"unknown embedding '{method}'", f"use one of {', '.join(EMBEDDINGS)}")
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or len(x) < 3:
        raise InputError(f"need at least 3 feature vectors to embed, got shape {x.shape}", "pass larger stores")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x = x - x.mean(0)
    # PCA by SVD (no extra needed); t-SNE / UMAP then run on at most 50 dimensions
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    if method == "pca":
        return x @ vt[:2].T
    x50 = x @ vt[: min(50, vt.shape[0])].T
    if method == "umap":
        umap = require("umap", "plot", "--embedding umap (pip install umap-learn)")
        return np.asarray(umap.UMAP(n_components=2, random_state=seed).fit_transform(x50))
    require("sklearn", "plot", "t-SNE")
    from sklearn.manifold import TSNE

    perp = float(min(perplexity, max(2.0, (len(x) - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(x50)


def load_features(stores: list[str], max_points: int | None = None, seed: int = 0) -> dict:
    """Features, class and domain names and the store of every row, from one or more feature stores."""
    from vdgtool.stores.table import TableStore

    feats, cls, dom, src = [], [], [], []
    rng = np.random.default_rng(seed)
    per = None if not max_points else max(1, max_points // len(stores))
    names = _run_labels(stores) if len(set(os.path.basename(s) for s in stores)) < len(stores) else \
        [os.path.splitext(os.path.basename(s))[0] for s in stores]
    for p, name in zip(stores, names):
        st = TableStore(p, "features")
        try:
            n = len(st)
            rows = np.arange(n) if per is None or n <= per else np.sort(rng.choice(n, per, replace=False))
            f = st.array("features", rows)
            lab = st.meta["label"][rows]
            dm = st.meta["domain"][rows]
            cls += [st.classes[i] if 0 <= i < len(st.classes) else "(unlabelled)" for i in lab]
            dom += [st.domains[i] if 0 <= i < len(st.domains) else name for i in dm]
            src += [name] * len(rows)
            feats.append(np.asarray(f, dtype=np.float32))
        finally:
            st.close()
    if len({f.shape[1] for f in feats}) > 1:
        raise InputError(f"the feature stores have different dimensions ({sorted({f.shape[1] for f in feats})})",
                         "embed features of one model (vdgtool features with the same checkpoint)")
    return {"features": np.concatenate(feats), "class": cls, "domain": dom, "store": src}


def plot_features(stores: list[str], path: str, *, by: str = "domain", method: str = "tsne",
                  max_points: int | None = 3000, seed: int = 0, title: str | None = None) -> dict:
    """A 2-D embedding of the videos of feature stores, coloured by domain or class (marker = store)."""
    if by not in ("domain", "class"):
        raise ConfigError(f"--by {by}", "use --by domain or --by class")
    plt = _pyplot()
    d = load_features(stores, max_points, seed)
    xy = embed(d["features"], method, seed=seed)
    colour_of = d[by]
    groups = sorted(set(colour_of), key=str)
    store_names = list(dict.fromkeys(d["store"]))
    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    colour_arr = np.array(colour_of, dtype=object)
    store_arr = np.array(d["store"], dtype=object)
    for j, sname in enumerate(store_names):
        for i, g in enumerate(groups):
            m = (colour_arr == g) & (store_arr == sname)
            if m.any():
                lab = str(g) if len(store_names) == 1 else f"{g} [{sname}]"
                ax.scatter(xy[m, 0], xy[m, 1], s=14, color=cmap(i % cmap.N), marker=_MARKERS[j % len(_MARKERS)],
                           alpha=0.8, label=lab, edgecolors="none")
    name = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}[method]
    ax.set_title(title or f"{name} of {len(xy)} video features, colour = {by}"
                 + (", marker = store" if len(store_names) > 1 else ""))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    _save(fig, path)
    return {"path": path, "points": int(len(xy)), "embedding": method, "by": by, "groups": [str(g) for g in groups],
            "stores": store_names}


def plot_per_class(per_class: dict, path: str, *, key: str = "score", title: str = "", xlabel: str | None = None,
                   reference: float | None = None, reference_label: str = "all clips") -> str:
    """Horizontal bars per class, sorted high to low; ``per_class`` maps class -> number or -> dict holding
    ``key`` (and optionally ``n``, shown beside the class name). ``reference`` draws a vertical line
    (e.g. the overall score). Used by ``score --plot`` with ``res["per_class"]``."""
    plt = _pyplot()
    items = []
    for c, v in per_class.items():
        val = v.get(key) if isinstance(v, dict) else v
        if isinstance(val, (int, float)) and np.isfinite(val):
            n = v.get("n") if isinstance(v, dict) else None
            items.append((str(c) + (f" (n={n})" if n is not None else ""), float(val)))
    if not items:
        raise InputError("no per-class values to plot", "score a store with labelled videos")
    items.sort(key=lambda t: t[1])
    h = max(2.5, 0.28 * len(items) + 1.2)
    fig, ax = plt.subplots(figsize=(7, min(h, 60)))
    ax.barh(range(len(items)), [v for _, v in items], color="tab:blue")
    ax.set_yticks(range(len(items)), [c for c, _ in items], fontsize=8 if len(items) < 40 else 5)
    if reference is not None and np.isfinite(reference):
        ax.axvline(reference, color="tab:red", linestyle="--", label=f"{reference_label}: {reference:.3g}")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(xlabel or key)
    ax.set_title(title or f"{key} per class")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
