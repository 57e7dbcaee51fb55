"""Shared helpers of the APN data generators (stdlib + numpy): manifests and seeded train/val splits.

The generators write vdgtool CSV manifests (``path,label,domain``), which ``vdgtool extract`` reads.
"""

from __future__ import annotations

import csv
import os
from typing import Callable, Iterable, Sequence

import numpy as np


def write_manifest(path: str, rows: Iterable[Sequence[str]]) -> int:
    """Write ``path,label,domain`` rows; return how many."""
    rows = list(rows)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "domain"])
        w.writerows(rows)
    return len(rows)


def split_train_val(items: Sequence, val_fraction: float, seed: int, group: Callable | None = None,
                    stratify: Callable | None = None) -> tuple[list, list]:
    """Seeded split of ``items`` into (train, val) with about ``val_fraction`` of them in val.

    ``group(item)``: items of one group stay together (e.g. a UCF101 gXX group, a PKU-MMD sequence);
    default: every item is its own group. ``stratify(item)``: split each stratum (e.g. class)
    separately; ignored when a group spans several strata (a PKU-MMD sequence holds many classes).
    Groups are taken in a seeded random order and go to val while that brings the count closer to the
    target. Which items go where does not depend on the order of ``items``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise SystemExit(f"--val-fraction {val_fraction} must be in [0, 1)")
    group = group or (lambda it: it)  # str(item): stable across runs, unlike id()
    stratify = stratify or (lambda it: "")
    seen: dict = {}
    if any(seen.setdefault(str(group(it)), str(stratify(it))) != str(stratify(it)) for it in items):
        stratify = lambda it: ""  # noqa: E731
    rng = np.random.default_rng(seed)
    strata: dict = {}
    for it in items:
        strata.setdefault(str(stratify(it)), {}).setdefault(str(group(it)), []).append(it)
    val_ids = set()
    for s in sorted(strata):
        groups = strata[s]
        names = sorted(groups)
        target = val_fraction * sum(len(g) for g in groups.values())
        n = 0
        for j in rng.permutation(len(names)):
            size = len(groups[names[j]])
            if abs(n + size - target) < abs(n - target):
                val_ids.update(id(it) for it in groups[names[j]])
                n += size
    train = [it for it in items if id(it) not in val_ids]
    val = [it for it in items if id(it) in val_ids]
    return train, val
