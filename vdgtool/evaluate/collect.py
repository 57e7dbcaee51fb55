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


def read_results(path: str) -> list[dict]:
    """The epoch records of a ``results.jsonl``.

    Skipped: a trailing partial line (a run that is writing, or was killed mid-line) and event lines
    (records with an ``"event"`` key, which methods append beside the epochs). A damaged line before the
    last one is an error naming it.
    """
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").split("\n")
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc.strerror})", "check the path and its permissions") from None
    last = max((i for i, ln in enumerate(lines) if ln.strip()), default=-1)
    hist = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if i == last:  # being written (or cut by a kill): not an epoch yet
                continue
            raise InputError(f"{path} line {i + 1} is not JSON", "the run directory is damaged; re-run or "
                             "remove the line") from None
        if not isinstance(rec, dict):
            raise InputError(f"{path} line {i + 1} is not a JSON object", "the run directory is damaged")
        if "event" in rec:
            continue
        if not isinstance(rec.get("epoch"), (int, float)) or not isinstance(rec.get("val") or {}, dict):
            raise InputError(f"{path} line {i + 1} is not an epoch record (no 'epoch' / 'val')",
                             "pass run directories written by vdgtool train")
        hist.append(rec)
    return hist


def read_run(run_dir: str) -> dict:
    res = os.path.join(run_dir, "results.jsonl")
    cfgp = os.path.join(run_dir, "config.json")
    if not os.path.isfile(res) or not os.path.isfile(cfgp):
        raise InputError(f"{run_dir} is not a vdgtool run directory (no results.jsonl / config.json)",
                         "pass directories written by vdgtool train")
    try:
        with open(cfgp, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{cfgp} is not readable JSON ({' '.join(str(exc).split())[:120]})",
                         "the run directory is damaged; re-run it") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{cfgp} is not a JSON object", "the run directory is damaged; re-run it")
    hist = read_results(res)
    if not hist:
        raise InputError(f"{run_dir} has no finished epoch", "wait for the run or resume it")
    return {"dir": run_dir, "config": cfg, "history": hist, "done": os.path.exists(os.path.join(run_dir, "done"))}


def _top1(h: dict, name: str) -> float:
    v = (h.get("val") or {}).get(name)
    v = v.get("top1") if isinstance(v, dict) else None
    return float(v) if isinstance(v, (int, float)) and v == v else float("-inf")


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
        raise ConfigError(f"no epoch has validation results for '{name}'",
                          f"the runs have: {', '.join(have) or 'no validation results'}")
    return max(scored, key=lambda h: (_top1(h, name), h["epoch"]))


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
            v = np.array([_top1(it, s) for it in items if s in it["val"]], dtype=float)
            v = v[np.isfinite(v)]
            if not len(v):
                continue
            row[s] = {"mean": float(v.mean()), "se": float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0,
                      "n": int(len(v))}
        rows.append(row)
    return {"selection": rule, "source": source, "target": target, "rows": rows}
