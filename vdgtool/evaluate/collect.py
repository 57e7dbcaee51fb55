"""Gather results across runs (seeds, methods, hyper-parameters) into one table: mean ± standard error.

Grouping is by options, never silent: every option (a key of ``config.json``) that differs between the
runs defines the groups (``group_by="auto"``), so runs with another ``--hp``, ``--init`` or ``--lr`` are
never averaged together. Runtime options (output, seed, workers, device, ...) never group. A path that
differs only by the run's own seed (``data/seed0/train.h5`` vs ``data/seed1/train.h5``) is the same
option per seed. With an explicit ``group_by`` list, runs of a group that differ in another option are
refused (add it to the grouping, or ``ignore`` it knowingly). Two runs of a group with the same seed
are refused too (they would count twice).

Model selection (which epoch of each run is reported) is explicit, as in DomainBed:

* ``val``    the epoch with the best accuracy on the source validation store (the first ``--val``);
* ``last``   the final epoch;
* ``oracle`` each store's own best epoch (or, with ``target``, the epoch best on that store): an upper
  bound that peeks at the labels of the store it reports, never the default.
"""

from __future__ import annotations

import json
import math
import os
import re

from vdgtool.errors import ConfigError, InputError

RULES = ("val", "last", "oracle")
METRICS = ("top1", "mean_class")

#: config.json keys that never define a group: where and how a run ran, not what it is
#: (train.config.RESUMABLE_CHANGES, the seed, records derived from other options, provenance)
RUNTIME_KEYS = frozenset({"output", "seed", "workers", "device", "logger", "allow_nonfinite", "save_every",
                          "provenance", "resumed", "input_spec", "networks", "inputs",
                          "hp"})  # "hp" is in "hparams" (resolved, with defaults)
_PATH_EXT = (".h5", ".pt", ".pth", ".txt", ".csv", ".json", ".toml", ".lst")


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
    """A run directory's config and epoch records (method event lines, which carry "event", and a trailing
    partial line are skipped; see :func:`read_results`)."""
    res = os.path.join(run_dir, "results.jsonl")
    cfgp = os.path.join(run_dir, "config.json")
    if not os.path.isfile(res) or not os.path.isfile(cfgp):
        raise InputError(f"{run_dir} is not a vdgtool run directory (no results.jsonl / config.json)",
                         "pass directories written by vdgtool train (or a sweep directory holding them)")
    try:
        with open(cfgp, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{cfgp} is not readable JSON ({' '.join(str(exc).split())[:120]})",
                         "the run directory is damaged; re-run it, or leave it out") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{cfgp} is not a JSON object", "the run directory is damaged; re-run it, or leave it out")
    hist = read_results(res)
    if not hist:
        raise InputError(f"{run_dir} has no finished epoch", "wait for the run, resume it, or leave it out")
    return {"dir": run_dir, "config": cfg, "history": hist, "done": os.path.exists(os.path.join(run_dir, "done"))}


def find_runs(paths: list[str], max_depth: int = 4) -> list[str]:
    """Run directories among ``paths``; a directory that is not a run (a sweep) is searched for runs."""
    out: list[str] = []
    for p in paths:
        if os.path.exists(os.path.join(p, "config.json")) or not os.path.isdir(p):
            out.append(p)
            continue
        found = []
        base = p.rstrip(os.sep).count(os.sep)
        for root, dirs, files in os.walk(p):
            if "config.json" in files and "results.jsonl" in files:
                found.append(root)
                dirs[:] = []
                continue
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("checkpoints", "tb", "wandb"))
            if root.count(os.sep) - base >= max_depth:
                dirs[:] = []
        if not found:
            raise InputError(f"{p} holds no vdgtool run directory", "pass run directories (with config.json)")
        out += sorted(found)
    return out


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):  # an empty dict ({} hparams) leaves no key: the same as absent
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _looks_like_path(s: str) -> bool:
    return "/" in s or os.sep in s or s.lower().endswith(_PATH_EXT)


def _seed_templates(v: str, seed) -> list[str]:
    """``v`` and every way of writing the run's seed in it as '{seed}' (one occurrence, or all)."""
    if seed is None or not isinstance(v, str) or not _looks_like_path(v):
        return [v]
    spots = [m.span() for m in re.finditer(rf"(?<!\d){int(seed)}(?!\d)", v)]
    out = [v]
    for a, b in spots:
        out.append(v[:a] + "{seed}" + v[b:])
    if len(spots) > 1:
        out.append(re.sub(rf"(?<!\d){int(seed)}(?!\d)", "{seed}", v))
    return out


def _same_per_seed(values: list, seeds: list) -> list:
    """Write each run's path with its own seed as '{seed}' where that makes runs agree.

    For every run the candidates are the value and its seed templates; the template shared by most
    runs wins (greedy), so ``data/seed0/x.h5`` and ``data/seed1/x.h5`` become one option while a path
    that merely contains the digit of a seed (``/tmp/sweep0/real.h5`` for every seed) stays as it is.
    """
    if all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
        cols = [_same_per_seed([v[j] for v in values], seeds) for j in range(len(values[0]))]
        return [[c[i] for c in cols] for i in range(len(values))]
    cands = [_seed_templates(v, s) for v, s in zip(values, seeds)]
    out: list = [None] * len(values)
    todo = set(range(len(values)))
    while todo:
        count: dict[str, list[int]] = {}
        for i in sorted(todo):
            for c in dict.fromkeys(_canon(x) for x in cands[i]):
                count.setdefault(c, []).append(i)
        best = max(count, key=lambda c: (len(count[c]), "{seed}" not in c, c))
        for i in count[best]:
            out[i] = json.loads(best)
            todo.discard(i)
    return out


def run_options(cfg: dict) -> dict:
    """The options that identify a run's condition: flattened config.json without the runtime keys."""
    return _flat({k: v for k, v in cfg.items() if k not in RUNTIME_KEYS and not (k == "hp" and "hparams" in cfg)})


def runs_options(cfgs: list[dict]) -> list[dict]:
    """:func:`run_options` of several runs, with per-seed paths written the same way (see _same_per_seed)."""
    opts = [run_options(c) for c in cfgs]
    seeds = [c.get("seed") for c in cfgs]
    for k in sorted({k for o in opts for k in o}):
        vals = [o.get(k) for o in opts]
        if len({_canon(v) for v in vals}) > 1:
            for o, v in zip(opts, _same_per_seed(vals, seeds)):
                if k in o or v is not None:
                    o[k] = v
    return opts


def _canon(v) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def label(v) -> str:
    """Short display form of an option value (paths by file name)."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple)):
        if len(v) > 4:
            return f"{len(v)} items"
        return ",".join(label(x) for x in v) if v else "-"
    if isinstance(v, str) and _looks_like_path(v):
        parts = [q for q in v.replace(os.sep, "/").split("/") if q]
        return "/".join(parts[-2:]) if len(parts) > 1 and parts[-1] in (
            "last.pt", "best.pt", "preempt.pt") else (parts[-1] if parts else v)
    return str(v)


def select_epoch(hist: list[dict], rule: str, store: str | None, metric: str = "top1") -> dict:
    """The epoch record chosen by ``rule`` ("last", or the best ``metric`` on ``store``)."""
    if rule == "last":
        return hist[-1]
    if not store:
        raise ConfigError(f"selection rule '{rule}' needs a store name",
                          "pass --source NAME / --target NAME (the file name of a --val store without .h5)")
    scored = [h for h in hist if store in (h.get("val") or {}) and _finite((h["val"][store] or {}).get(metric))]
    if not scored:
        have = sorted({k for h in hist for k in (h.get("val") or {})})
        raise ConfigError(f"no epoch has validation results for '{store}'",
                          f"the runs have: {', '.join(have) or 'no validation stores'}")
    return max(scored, key=lambda h: (h["val"][store][metric], h["epoch"]))


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _stores(run: dict) -> list[str]:
    seen: list[str] = []
    for h in run["history"]:
        for s in h.get("val") or {}:
            if s not in seen:
                seen.append(s)
    return seen


def _selected(run: dict, rule: str, source: str | None, target: str | None, metric: str) -> dict:
    """{store: (value, epoch)} of one run under one selection rule."""
    stores = _stores(run)
    out = {}
    if rule == "oracle" and not target:
        for s in stores:
            ep = select_epoch(run["history"], "oracle", s, metric)
            out[s] = (ep["val"][s][metric], ep["epoch"])
        return out
    name = (source or (stores[0] if stores else None)) if rule == "val" else target
    ep = select_epoch(run["history"], rule, name, metric)
    for s, m in (ep.get("val") or {}).items():
        if _finite((m or {}).get(metric)):
            out[s] = (m[metric], ep["epoch"])
    return out


def rule_text(rule: str, source: str | None, target: str | None, sources: list[str]) -> str:
    if rule == "last":
        return "last epoch"
    if rule == "val":
        src = source or (sources[0] if len(sources) == 1 else "the first --val of each run")
        return f"best epoch on the source validation store {src}"
    if target:
        return f"best epoch on {target}: peeks at target labels, an upper bound"
    return "each store's own best epoch: peeks at the labels it reports, an upper bound"


def _stats(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1) / n) if n > 1 else None  # undefined
    return {"mean": mean, "se": se, "n": n}


def _implied(keys: list[str], opts: list[dict]) -> tuple[list[str], list[str]]:
    """Split ordered keys into (needed, implied): a key is implied when the keys before it already fix its
    value (method fixes its default hyper-parameters, often the lr and init of an arm)."""
    kept: list[str] = []
    implied: list[str] = []
    for k in keys:
        by: dict[str, set] = {}
        for o in opts:
            by.setdefault(_canon([o.get(g) for g in kept]), set()).add(_canon(o.get(k)))
        (kept if any(len(v) > 1 for v in by.values()) else implied).append(k)
    return kept, implied


def group_runs(runs: list[dict], group_by: str | tuple | list | None = "auto", ignore=()) -> tuple[list, list, dict]:
    """(group keys, [(key values, runs)], options shared by every run, implied keys)."""
    opts = runs_options([r["config"] for r in runs])
    keys = sorted({k for o in opts for k in o})
    ignore = set(ignore or ())
    differing = [k for k in keys if k not in ignore and len({_canon(o.get(k)) for o in opts}) > 1]
    constant = {k: opts[0].get(k) for k in keys if k not in differing and k not in ignore}
    if group_by in (None, "auto", ()) or group_by == ["auto"]:
        first = ("method", "model")
        gkeys = sorted(differing, key=lambda k: (k not in first, first.index(k) if k in first else 0,
                                                 not k.startswith("hparams."), k))
        gkeys, implied = _implied(gkeys, opts)
    else:
        implied = []
        gkeys = [g for g in (group_by.split(",") if isinstance(group_by, str) else group_by) if g]
        unknown = [g for g in gkeys if g not in keys]
        if unknown:
            raise ConfigError(f"--group-by {','.join(unknown)}: no run has such an option",
                              f"use config.json keys, e.g. {', '.join(differing or keys[:6])}")
    groups: dict[str, tuple[list, list]] = {}
    for r, o in zip(runs, opts):
        vals = [o.get(g) for g in gkeys]
        groups.setdefault(_canon(vals), (vals, []))[1].append((r, o))
    out = []
    for vals, members in groups.values():
        if len(members) > 1:
            mixed = [k for k in differing if k not in gkeys and k not in implied
                     and len({_canon(o.get(k)) for _, o in members}) > 1]
            if mixed:
                ex = "; ".join(f"{k}: {', '.join(sorted({label(o.get(k)) for _, o in members}))}" for k in mixed[:3])
                raise ConfigError(f"runs of group ({', '.join(f'{g}={label(v)}' for g, v in zip(gkeys, vals)) or 'all'})"
                                  f" differ in {', '.join(mixed)} ({ex}), which would be averaged",
                                  f"add {','.join(mixed)} to --group-by, use --group-by auto, or --ignore "
                                  f"{','.join(mixed)} to average over it knowingly")
            seen: dict = {}
            for r, o in members:  # the same run twice (a copy, or a re-run elsewhere) would count twice
                s = r["config"].get("seed")
                ident = (_canon(s), _canon(o))
                if ident in seen:
                    raise ConfigError(f"two runs of one group have seed {s} and the same options ({seen[ident]} and "
                                      f"{r['dir']})", "pass each run once, or tell them apart by an option")
                seen[ident] = r["dir"]
        out.append((vals, [r for r, _ in members], {k: members[0][1].get(k) for k in implied}))
    return gkeys, out, constant, implied


def collect(run_dirs: list[str], rule: str = "val", source: str | None = None, target: str | None = None,
            group_by: str | tuple | list | None = "auto", *, ignore=(), metric: str = "top1",
            compare: bool = False, done_only: bool = False) -> dict:
    """Mean ± SE (over seeds) per group of runs and per validation store.

    Returns ``{"rows": [{<group key>: label, "runs", "seeds", "unfinished", <store>: {"mean", "se", "n"}}],
    "group_by", "stores", "selection", "rules", "constant", "caption", ...}``; with ``compare`` every
    row also has ``<store>@<rule>`` cells for all three rules (``rules`` lists them).
    """
    if rule not in RULES:
        raise ConfigError(f"unknown selection rule '{rule}'", f"use one of {', '.join(RULES)}")
    if metric not in METRICS:
        raise ConfigError(f"unknown metric '{metric}'", f"use one of {', '.join(METRICS)}")
    runs = [read_run(d) for d in find_runs(list(run_dirs))]
    skipped = []
    if done_only:
        skipped = [r["dir"] for r in runs if not r["done"]]
        runs = [r for r in runs if r["done"]]
    if not runs:
        raise InputError("no finished run to collect", "wait for the runs, or leave out --done-only")
    gkeys, groups, constant, implied = group_runs(runs, group_by, ignore)
    rules = list(RULES) if compare else [rule]
    stores: list[str] = []
    for r in runs:
        stores += [s for s in _stores(r) if s not in stores]
    sources = sorted({source or (_stores(r) or [None])[0] for r in runs} - {None})
    rows = []
    for vals, members, implied_vals in groups:
        row: dict = {g: label(v) for g, v in zip(gkeys, vals)}
        row["options"] = {**dict(zip(gkeys, vals)), **implied_vals}
        row["runs"] = len(members)
        row["seeds"] = sorted((r["config"].get("seed") for r in members), key=lambda s: (s is None, s))
        row["unfinished"] = sum(not r["done"] for r in members)
        row["dirs"] = [r["dir"] for r in members]
        for ru in rules:
            picked = [_selected(r, ru, source, target, metric) for r in members]
            for s in stores:
                v = [p[s][0] for p in picked if s in p]
                if v:
                    cell = {**_stats(v), "epochs": [p[s][1] for p in picked if s in p]}
                    row[s if not compare else f"{s}@{ru}"] = cell
                    if compare and ru == rule:
                        row[s] = cell
        rows.append(row)
    res = {"selection": rule, "rules": rules, "source": source, "target": target, "metric": metric,
           "group_by": gkeys, "implied": implied, "stores": stores, "sources": sources, "constant": constant, "rows": rows,
           "skipped_unfinished": skipped, "runs": len(runs)}
    res["caption"] = caption(res)
    return res


def caption(res: dict) -> str:
    metric = {"top1": "Top-1 accuracy", "mean_class": "Mean class accuracy"}[res["metric"]]
    if len(res["rules"]) > 1:
        sel = "; ".join(f"{r} ({rule_text(r, res['source'], res['target'], res['sources'])})" for r in res["rules"])
    else:
        sel = f"{res['selection']} ({rule_text(res['selection'], res['source'], res['target'], res['sources'])})"
    groups = ", ".join(res["group_by"]) if res["group_by"] else "none (all runs share their options)"
    if res.get("implied"):
        hp = [k for k in res["implied"] if k.startswith("hparams.")]
        other = [k for k in res["implied"] if not k.startswith("hparams.")]
        named = other + (hp if len(hp) <= 2 else [f"{len(hp)} method hyper-parameters (hparams.*)"])
        groups += f" (which also fix {', '.join(named)})"
    text = f"{metric} (%), mean ± SE over seeds (n = seeds per cell). Model selection: {sel}. Groups by: {groups}."
    if any(r["unfinished"] for r in res["rows"]):
        text += " * = includes unfinished runs."
    return text
