"""Table of the temporal-toy runs: each target's test accuracy (mean ± SE over seeds) per selection rule.

    python recipes/apn/toy_table.py OUT --seeds 0 1 --arms tsn trn apn

OUT/seed<S>/<arm>/ are vdgtool run directories whose --val stores are named like the toy's splits
(source_val, <target>_val, <target>_test). Selection: ``val`` = the epoch with the best source_val
accuracy; ``oracle`` = per target, the epoch with the best <target>_val accuracy (the released APN code
selects on target accuracy). Ties go to the later epoch (vdgtool collect's rule).
"""

from __future__ import annotations

import argparse
import math

from vdgtool.evaluate.collect import read_run, select_epoch

TARGETS = ("control", "onset", "tempo", "absence")


def _ms(v: list[float]) -> str:
    m = sum(v) / len(v)
    if len(v) < 2:
        return f"{100 * m:.1f}"
    se = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))
    return f"{100 * m:.1f} ± {100 * se:.1f}"


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
            rows.append((arm, rule, *cells))
    return rows


def main(argv=None) -> None:
    from tabulate import tabulate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seeds", nargs="+", required=True)
    ap.add_argument("--arms", nargs="+", required=True)
    a = ap.parse_args(argv)
    print(f"seeds: {' '.join(a.seeds)}; top-1 % on each target's test split (mean ± SE over seeds)")
    print(tabulate(table(a.out, a.seeds, a.arms),
                   headers=("arm", "select", "source_val", *(f"{t}_test" for t in TARGETS))))


if __name__ == "__main__":
    main()
