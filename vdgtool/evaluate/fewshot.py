"""Few-shot evaluation: the "Baseline" of Chen et al. (ICLR 2019) as used by the DRL paper.

Frozen features; per N-way K-shot episode a new linear classifier is trained on the support set and
tested on the query set. All episodes are solved at once as a batched linear problem (E, D, N).
Episodes are named by video keys and saved to a JSON file so other models are evaluated on the
same episodes.

Solvers:

* ``release`` (default; the DRL release's ``models/fsl.py`` ``CloserBaseline`` with
  ``configs/{sthv2,jester}-fs``): raw pooled features; every test view (clip) of a support video is
  its own training example; ``nn.Linear`` with bias, SGD (lr 0.01, momentum 0.9, dampening 0.9, weight
  decay 1e-3), 100 epochs of mini-batches of 4 in a fresh random order per epoch; a query video's
  logits are averaged over its views.
* ``fast``: view-averaged features, L2-normalised and scaled by 10, Adam (lr 0.01, weight decay 1e-3),
  100 full-batch steps.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from vdgtool.errors import ConfigError, InputError

SOLVERS = ("release", "fast")


def make_episodes(keys: list[str], labels: np.ndarray, class_names: list[str], *, ways: int, shots: int,
                  queries: int, episodes: int, seed: int) -> list[dict]:
    for name, v in (("ways", ways), ("shots", shots), ("queries", queries), ("episodes", episodes)):
        if int(v) < 1:
            raise ConfigError(f"--{name} {v} must be at least 1", f"pass --{name} >= 1")
    if ways < 2:
        raise ConfigError(f"--ways {ways}: an episode needs at least 2 classes", "pass --ways >= 2")
    rng = np.random.default_rng(seed)
    by_class = {c: np.flatnonzero(labels == c) for c in np.unique(labels[labels >= 0])}
    eligible = [c for c, idx in by_class.items() if len(idx) >= shots + queries]
    if len(eligible) < ways:
        raise ConfigError(f"only {len(eligible)} classes have {shots}+{queries} videos for a {ways}-way episode",
                          "lower --ways/--shots/--queries or use a larger store")
    out = []
    for _ in range(episodes):
        cls = rng.choice(eligible, size=ways, replace=False)
        ep = {"classes": [class_names[int(c)] for c in cls], "support": [], "query": []}
        for c in cls:
            pick = rng.choice(by_class[c], size=shots + queries, replace=False)
            ep["support"].append([keys[i] for i in pick[:shots]])
            ep["query"].append([keys[i] for i in pick[shots:]])
        out.append(ep)
    return out


def _episode_index(key_pos: dict[str, int], episodes: list[dict], part: str, device) -> torch.Tensor:
    try:
        return torch.tensor([[key_pos[k] for cl in ep[part] for k in cl] for ep in episodes], device=device)
    except KeyError as exc:
        raise InputError(f"episode file names video {exc} which is not in the store",
                         "use the episodes with the store they were made from") from None


def _solve_release(x, s_idx, q_idx, ways, shots, *, epochs, batch_size, lr, momentum, dampening, weight_decay, gen,
                   chunk: int = 64):
    """SGD mini-batches on every (support video, view) pair; query logits averaged over views."""
    e, n_s = s_idx.shape
    v, d = x.shape[1], x.shape[2]
    xf = x.reshape(-1, d)  # (N * V, D): row i * V + j is view j of video i
    views = torch.arange(v, device=x.device)
    sup = (s_idx[:, :, None] * v + views).reshape(e, n_s * v)  # each view its own example
    ys = torch.arange(ways, device=x.device).repeat_interleave(shots * v)
    bound = 1.0 / math.sqrt(d)  # nn.Linear's default initialisation
    w = ((torch.rand(e, d, ways, generator=gen) * 2 - 1) * bound).to(x.device).requires_grad_(True)
    b = ((torch.rand(e, 1, ways, generator=gen) * 2 - 1) * bound).to(x.device).requires_grad_(True)
    opt = torch.optim.SGD([w, b], lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
    size = sup.shape[1]
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.argsort(torch.rand(e, size, generator=gen), dim=1).to(x.device)  # per episode
            for i in range(0, size, batch_size):
                pos = order[:, i:i + batch_size]
                xb = xf[torch.gather(sup, 1, pos)]  # (E, b, D)
                logits = torch.bmm(xb, w) + b
                # each episode's mean loss; summed, so every episode gets its own gradient
                loss = F.cross_entropy(logits.reshape(-1, ways), ys[pos].reshape(-1), reduction="none")
                opt.zero_grad()
                loss.view(e, -1).mean(1).sum().backward()
                opt.step()
    acc = []
    with torch.no_grad():
        for c in range(0, e, chunk):
            q = q_idx[c:c + chunk]
            xq = x[q]  # (e', W*Q, V, D)
            logits = torch.einsum("eqvd,edn->eqvn", xq, w[c:c + chunk]) + b[c:c + chunk, :, None]
            pred = logits.mean(2).argmax(-1)
            yq = torch.arange(ways, device=x.device).repeat_interleave(q.shape[1] // ways)
            acc.append((pred == yq).float().mean(1))
    return torch.cat(acc)


def _solve_fast(x, s_idx, q_idx, ways, shots, *, steps, lr, weight_decay):
    x = F.normalize(x.mean(1), dim=1)
    e = s_idx.shape[0]
    xs, xq = x[s_idx], x[q_idx]  # (E, N*K, D), (E, N*Q, D)
    ys = torch.arange(ways, device=x.device).repeat_interleave(shots).expand(e, -1)
    yq = torch.arange(ways, device=x.device).repeat_interleave(q_idx.shape[1] // ways).expand(e, -1)
    w = torch.zeros(e, x.shape[1], ways, device=x.device, requires_grad=True)
    b = torch.zeros(e, 1, ways, device=x.device, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    scale = 10.0  # features are L2-normalised; a temperature keeps the logits in a useful range
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            logits = scale * torch.bmm(xs, w) + b
            F.cross_entropy(logits.reshape(-1, ways), ys.reshape(-1)).backward()
            opt.step()
    with torch.no_grad():
        pred = (scale * torch.bmm(xq, w) + b).argmax(-1)
        return (pred == yq).float().mean(1)


def solve_episodes(feats: np.ndarray, key_pos: dict[str, int], episodes: list[dict], *, solver: str = "release",
                   epochs: int = 100, batch_size: int = 4, lr: float = 0.01, momentum: float = 0.9,
                   dampening: float = 0.9, weight_decay: float = 1e-3, steps: int = 100, seed: int = 0,
                   device="cpu") -> np.ndarray:
    """Accuracy of each episode with a linear classifier trained on its support set.

    ``feats``: (N, D) features per video, or (N, V, D) per test view (clip). ``solver`` ``release``
    uses ``epochs``, ``batch_size``, ``lr``, ``momentum``, ``dampening``, ``weight_decay``; ``fast``
    uses ``steps``, ``lr`` and ``weight_decay`` (see the module docstring).
    """
    if solver not in SOLVERS:
        raise ConfigError(f"unknown few-shot solver {solver!r}", f"use one of {', '.join(SOLVERS)}")
    if not episodes:
        raise InputError("no episodes to solve", "pass --episodes >= 1")
    x = torch.as_tensor(np.asarray(feats), dtype=torch.float32, device=device)
    if x.dim() == 2:
        x = x[:, None]
    ways, shots = len(episodes[0]["support"]), len(episodes[0]["support"][0])
    s_idx = _episode_index(key_pos, episodes, "support", device)
    q_idx = _episode_index(key_pos, episodes, "query", device)
    gen = torch.Generator().manual_seed(int(seed))
    if solver == "release":
        acc = _solve_release(x, s_idx, q_idx, ways, shots, epochs=epochs, batch_size=batch_size, lr=lr,
                             momentum=momentum, dampening=dampening, weight_decay=weight_decay, gen=gen)
    else:
        acc = _solve_fast(x, s_idx, q_idx, ways, shots, steps=steps, lr=lr, weight_decay=weight_decay)
    return acc.cpu().numpy()


def read_episodes(path: str) -> list[dict]:
    """An episode file: a JSON list of {"classes", "support": [[key]*K]*N, "query": [[key]*Q]*N}, all alike."""
    remedy = "pass an episode file written by vdgtool eval --few-shot, or delete it to generate new episodes"
    try:
        with open(path, encoding="utf-8") as f:
            eps = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"episode file {path} is not readable JSON ({' '.join(str(exc).split())[:100]})",
                         remedy) from None
    if not isinstance(eps, list) or not eps:
        raise InputError(f"{path} holds no episodes", remedy)

    def shape(ep):
        if not isinstance(ep, dict):
            return None
        sup, qry = ep.get("support"), ep.get("query")
        if not (isinstance(sup, list) and isinstance(qry, list) and sup and len(sup) == len(qry)):
            return None
        if not all(isinstance(c, list) and c and all(isinstance(k, str) for k in c) for c in sup + qry):
            return None
        k, q = {len(c) for c in sup}, {len(c) for c in qry}
        return (len(sup), k.pop(), q.pop()) if len(k) == 1 and len(q) == 1 else None

    first = shape(eps[0])
    bad = next((i for i, ep in enumerate(eps) if first is None or shape(ep) != first), None)
    if bad is not None:
        raise InputError(f"episode {bad} of {path} is not an N-way K-shot episode like the first", remedy)
    return eps


def few_shot(features: np.ndarray, keys: list[str], labels: np.ndarray, class_names: list[str], *, ways: int = 5,
             shots: int = 1, queries: int = 5, episodes: int = 1000, seed: int = 0, episodes_file: str | None = None,
             solver: str = "release", epochs: int = 100, steps: int = 100, device="cpu") -> dict:
    """Mean accuracy (and 95% CI) of N-way K-shot episodes on frozen ``features`` ((N, D) or (N, V, D)).

    Defaults are the DRL release's: 1000 episodes of 5 queries per class, the ``release`` solver.
    """
    if episodes_file and os.path.exists(episodes_file):
        eps = read_episodes(episodes_file)
        ways, shots, queries = len(eps[0]["support"]), len(eps[0]["support"][0]), len(eps[0]["query"][0])
        source = "loaded"
    else:
        eps = make_episodes(keys, labels, class_names, ways=ways, shots=shots, queries=queries, episodes=episodes,
                            seed=seed)
        source = "generated"
        if episodes_file:
            with open(episodes_file + ".partial", "w") as f:
                json.dump(eps, f)
            os.replace(episodes_file + ".partial", episodes_file)
    views = int(np.asarray(features).shape[1]) if np.asarray(features).ndim == 3 else 1
    acc = solve_episodes(features, {k: i for i, k in enumerate(keys)}, eps, solver=solver, epochs=epochs, steps=steps,
                         seed=seed, device=device)
    ci = 1.96 * acc.std(ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else float("nan")
    return {"ways": ways, "shots": shots, "queries": queries, "episodes": len(eps), "episode_source": source,
            "episodes_file": episodes_file, "views": views, "solver": solver,
            **({"epochs": epochs, "batch_size": 4} if solver == "release" else {"steps": steps}),
            "acc": float(acc.mean()), "ci95": float(ci)}


__all__ = ["SOLVERS", "few_shot", "make_episodes", "solve_episodes"]
