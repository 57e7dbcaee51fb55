"""Gather results across runs (seeds, methods) into one table: mean ± standard error.

Model selection (which epoch of each run is reported) is explicit, as in DomainBed:

* ``last``   the final epoch;
* ``val``    the epoch with the best accuracy on the source validation store (the first ``--val``);
* ``oracle`` the epoch with the best accuracy on a target store (``--target``): an upper bound that
  peeks at target labels, never the default.
"""

from __future__ import annotations

import json
import os

import numpy as np

from vdgtool.errors import ConfigError, InputError

RULES = ("last", "val", "oracle")


def read_run(run_dir: str) -> dict:
    res = os.path.join(run_dir, "results.jsonl")
    cfgp = os.path.join(run_dir, "config.json")
    if not os.path.exists(res) or not os.path.exists(cfgp):
        raise InputError(f"{run_dir} is not a vdgtool run directory (no results.jsonl / config.json)",
                         "pass directories written by vdgtool train")
    with open(cfgp) as f:
        cfg = json.load(f)
    with open(res) as f:
        hist = [json.loads(line) for line in f if line.strip()]
    hist = [h for h in hist if "event" not in h]  # method events (augmentation added, bank rebuilt, ...)
    if not hist:
        raise InputError(f"{run_dir} has no finished epoch", "wait for the run or resume it")
    return {"dir": run_dir, "config": cfg, "history": hist, "done": os.path.exists(os.path.join(run_dir, "done"))}


def select_epoch(hist: list[dict], rule: str, source: str | None, target: str | None) -> dict:
    if rule == "last":
        return hist[-1]
    name = source if rule == "val" else target
    if not name:
        raise ConfigError(f"selection rule '{rule}' needs a {'source' if rule == 'val' else 'target'} store name",
                          "pass --source NAME / --target NAME (the file name of a --val store without .h5)")
    scored = [h for h in hist if name in (h.get("val") or {})]
    if not scored:
        have = sorted({k for h in hist for k in (h.get("val") or {})})
        raise ConfigError(f"no epoch has validation results for '{name}'", f"the runs have: {', '.join(have)}")
    return max(scored, key=lambda h: (h["val"][name]["top1"], h["epoch"]))


def _label(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(os.path.basename(str(x)) for x in v)
    return str(v)


def collect(run_dirs: list[str], rule: str = "val", source: str | None = None, target: str | None = None,
            group_by: tuple[str, ...] = ("method", "model")) -> dict:
    if rule not in RULES:
        raise ConfigError(f"unknown selection rule '{rule}'", f"use one of {', '.join(RULES)}")
    runs = [read_run(d) for d in run_dirs]
    groups: dict[tuple, list] = {}
    for r in runs:
        vals = list((r["history"][-1].get("val") or {}).keys())
        src = source or (vals[0] if vals else None)
        tgt = target or (vals[-1] if vals else None)
        ep = select_epoch(r["history"], rule, src, tgt)
        key = tuple(_label(r["config"].get(g)) for g in group_by)
        groups.setdefault(key, []).append({"dir": r["dir"], "epoch": ep["epoch"], "val": ep.get("val") or {},
                                           "seed": r["config"].get("seed")})
    rows = []
    for key, items in groups.items():
        stores = sorted({s for it in items for s in it["val"]})
        row = dict(zip(group_by, key))
        row["runs"] = len(items)
        row["seeds"] = sorted({it["seed"] for it in items})
        for s in stores:
            v = np.array([it["val"][s]["top1"] for it in items if s in it["val"]], dtype=float)
            row[s] = {"mean": float(v.mean()), "se": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0,
                      "n": int(len(v))}
        rows.append(row)
    return {"selection": rule, "source": source, "target": target, "rows": rows}
