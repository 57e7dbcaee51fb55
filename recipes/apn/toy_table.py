"""Table of the temporal-toy runs: each target's test accuracy (mean ± SE over seeds) per selection rule.

    python recipes/apn/toy_table.py OUT --seeds 0 1 --arms tsn trn apn

OUT/seed<S>/<arm>/ are vdgtool run directories whose --val stores are named like the toy's splits
(source_val, <target>_val, <target>_test). Selection: ``val`` = the epoch with the best source_val
accuracy; ``oracle`` = per target, the epoch with the best <target>_val accuracy (the released APN code
selects on target accuracy). Ties go to the later epoch (vdgtool collect's rule).
"""

from __future__ import annotations

import argparse
import json
import math
import os

from vdgtool.evaluate.collect import read_run, select_epoch

TARGETS = ("control", "onset", "tempo", "absence")


def _ms(v: list[float], digits: int = 1) -> str:
    if not v:
        return ""
    m = sum(v) / len(v)
    m = 0.0 if abs(m) < 1e-9 else m  # no "-0.0"
    if len(v) < 2:
        return f"{100 * m:.{digits}f}"
    se = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))
    return f"{100 * m:.{digits}f} ± {100 * se:.{digits}f}"


def table(out: str, seeds: list[str], arms: list[str]) -> list[tuple]:
    rows = []
    for arm in arms:
        hists = [read_run(f"{out}/seed{s}/{arm}")["history"] for s in seeds]
        for rule in ("val", "oracle"):
            cells = []
            src = [select_epoch(h, "val", "source_val")["val"]["source_val"]["top1"] for h in hists]
            cells.append(_ms(src) if rule == "val" else "")
            for t in TARGETS:
                acc = []
                for h in hists:
                    ep = select_epoch(h, "val", "source_val") if rule == "val" else \
                        select_epoch(h, "oracle", f"{t}_val")
                    acc.append(ep["val"][f"{t}_test"]["top1"])
                cells.append(_ms(acc))
            cells.append(_pert(hists) if rule == "val" else "")
            rows.append((arm, rule, *cells))
    return rows


def _accs(out: str, seed: str, arm: str, rule: str) -> list[float]:
    """One run's test accuracy per target (``rule``: val or oracle selection)."""
    h = read_run(f"{out}/seed{seed}/{arm}")["history"]
    return [(select_epoch(h, "val", "source_val") if rule == "val" else select_epoch(h, "oracle", f"{t}_val"))
            ["val"][f"{t}_test"]["top1"] for t in TARGETS]


def paired_table(out: str, seeds: list[str], pairs: list[str], rule: str = "val") -> list[tuple]:
    """``A:B`` -> per target, the per-seed difference A - B (same data and seed), mean ± SE, and how many
    seeds A won / tied / lost: the paired comparison is tighter than two independent means."""
    rows = []
    for pair in pairs:
        a, b = pair.split(":")
        diffs = [[x - y for x, y in zip(_accs(out, s, a, rule), _accs(out, s, b, rule))] for s in seeds]
        cells = []
        for i in range(len(TARGETS)):
            d = [r[i] for r in diffs]
            won, lost = sum(x > 1e-9 for x in d), sum(x < -1e-9 for x in d)
            cells.append(f"{_ms(d)} ({won}/{len(d) - won - lost}/{lost})")
        rows.append((f"{a} − {b}", rule, *cells))
    return rows


def _pert(hists: list[list[dict]]) -> str:
    """Per level, the per-clip ||x_adv - x|| / ||x|| in % (mean over the epochs, then mean ± SE over seeds)."""
    levels = sorted({k[5:-5] for h in hists for e in h for k in (e.get("method") or {})
                     if k.startswith("pert_") and k.endswith("_mean")})
    out = []
    for lvl in levels:
        per_run = [sum(e["method"][f"pert_{lvl}_mean"] for e in h) / len(h) for h in hists
                   if all(f"pert_{lvl}_mean" in (e.get("method") or {}) for e in h)]
        out.append(f"{lvl} {_ms(per_run, 2)}")
    return "; ".join(out)


def ensemble_table(out: str, seeds: list[str]) -> list[tuple]:
    """The gamma ensemble (recipes/apn/toy_ada.py --ensemble): each rule, the members' mean and the best member."""
    res = {}
    for s in seeds:
        p = f"{out}/seed{s}/gamma_ensemble.json"
        if os.path.isfile(p):
            with open(p) as f:
                res[s] = json.load(f)
    if not res:
        return []
    rows = []
    for rule in ("maxconf", "mean"):
        rows.append((f"ensemble {rule}", len(res), *(_ms([r[rule][t]["top1"] for r in res.values()]) for t in TARGETS)))
    members = [[[m["top1"] for m in r["maxconf"][t]["ensemble"]["members"]] for t in TARGETS] for r in res.values()]
    rows.append(("members: mean", len(res), *(_ms([sum(m[i]) / len(m[i]) for m in members]) for i in range(4))))
    rows.append(("members: best (per target, hindsight)", len(res),
                 *(_ms([max(m[i]) for m in members]) for i in range(4))))
    chosen = [[m["chosen"] for m in r["maxconf"][t]["ensemble"]["members"]] for r in res.values() for t in TARGETS]
    tot = [sum(c[i] for c in chosen) for i in range(len(chosen[0]))]
    rows.append(("maxconf: share of clips per member", len(res), " / ".join(f"{100 * c / sum(tot):.0f}%" for c in tot),
                 "", "", ""))
    return rows


def main(argv=None) -> None:
    from tabulate import tabulate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seeds", nargs="+", required=True)
    ap.add_argument("--arms", nargs="+", required=True)
    ap.add_argument("--format", default="simple", help="tabulate format (github for README tables)")
    ap.add_argument("--paired", nargs="*", default=[], metavar="A:B",
                    help="also the per-seed differences A - B (mean ± SE; seeds won/tied/lost), both selection rules")
    ap.add_argument("--no-ensemble", action="store_true", help="leave out the gamma-ensemble table")
    a = ap.parse_args(argv)
    print(f"seeds: {' '.join(a.seeds)}; top-1 % on each target's test split (mean ± SE over seeds)")
    print(tabulate(table(a.out, a.seeds, a.arms),
                   headers=("arm", "select", "source_val", *(f"{t}_test" for t in TARGETS), "pert % (ADA runs)"),
                   tablefmt=a.format))
    if a.paired:
        print("\npaired differences, points (per seed: same data, same seed); in brackets seeds won/tied/lost")
        rows = [r for rule in ("val", "oracle") for r in paired_table(a.out, a.seeds, a.paired, rule)]
        print(tabulate(rows, headers=("A − B", "select", *(f"{t}_test" for t in TARGETS)), tablefmt=a.format))
    ens = [] if a.no_ensemble else ensemble_table(a.out, a.seeds)
    if ens:
        print("\ngamma ensemble (best.pt of gamma = 0.001, 0.01, 0.1, 1; source-val selection)")
        print(tabulate(ens, headers=("", "seeds", *(f"{t}_test" for t in TARGETS)), tablefmt=a.format))


if __name__ == "__main__":
    main()
