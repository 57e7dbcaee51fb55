"""Few-shot evaluation: the "Baseline" of Chen et al. (ICLR 2019) as used by the DRL paper.

Frozen features; per N-way K-shot episode a new linear classifier is trained on the support set and
tested on the query set. All episodes are solved at once as a batched linear problem (E, D, N).
Episodes are named by video keys and saved to a JSON file so other models are evaluated on the
same episodes.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from vdgtool.errors import ConfigError, InputError


def make_episodes(keys: list[str], labels: np.ndarray, class_names: list[str], *, ways: int, shots: int,
                  queries: int, episodes: int, seed: int) -> list[dict]:
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


def solve_episodes(feats: np.ndarray, key_pos: dict[str, int], episodes: list[dict], *, steps: int = 100,
                   lr: float = 0.01, weight_decay: float = 1e-3, device="cpu") -> np.ndarray:
    """Accuracy of each episode with a linear classifier trained on its support set."""
    x = torch.as_tensor(feats, dtype=torch.float32, device=device)
    x = torch.nn.functional.normalize(x, dim=1)
    e = len(episodes)
    ways = len(episodes[0]["support"])
    shots = len(episodes[0]["support"][0])
    queries = len(episodes[0]["query"][0])
    try:
        s_idx = torch.tensor([[key_pos[k] for cl in ep["support"] for k in cl] for ep in episodes], device=device)
        q_idx = torch.tensor([[key_pos[k] for cl in ep["query"] for k in cl] for ep in episodes], device=device)
    except KeyError as exc:
        raise InputError(f"episode file names video {exc} which is not in the store",
                         "use the episodes with the store they were made from") from None
    xs, xq = x[s_idx], x[q_idx]  # (E, N*K, D), (E, N*Q, D)
    ys = torch.arange(ways, device=device).repeat_interleave(shots).expand(e, -1)
    yq = torch.arange(ways, device=device).repeat_interleave(queries).expand(e, -1)
    w = torch.zeros(e, x.shape[1], ways, device=device, requires_grad=True)
    b = torch.zeros(e, 1, ways, device=device, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    scale = 10.0  # features are L2-normalised; a temperature keeps the logits in a useful range
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            logits = scale * torch.bmm(xs, w) + b
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, ways), ys.reshape(-1))
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = (scale * torch.bmm(xq, w) + b).argmax(-1)
        return (pred == yq).float().mean(1).cpu().numpy()


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
             shots: int = 1, queries: int = 15, episodes: int = 600, seed: int = 0, episodes_file: str | None = None,
             steps: int = 100, device="cpu") -> dict:
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
    acc = solve_episodes(features, {k: i for i, k in enumerate(keys)}, eps, steps=steps, device=device)
    ci = 1.96 * acc.std(ddof=1) / np.sqrt(len(acc)) if len(acc) > 1 else float("nan")
    return {"ways": ways, "shots": shots, "queries": queries, "episodes": len(eps), "episode_source": source,
            "episodes_file": episodes_file, "acc": float(acc.mean()), "ci95": float(ci)}
