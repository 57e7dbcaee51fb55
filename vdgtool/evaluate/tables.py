"""Render a :func:`vdgtool.evaluate.collect.collect` result: table, markdown, latex, csv or json.

Every form carries the caption (metric, mean ± SE over seeds, the model-selection rule, what defines a
group), so a number copied into a paper keeps its selection rule.
"""

from __future__ import annotations

import csv
import io
import json

FORMATS = ("table", "markdown", "latex", "csv", "json")
#: options named under the terminal table when every run shares them (the full list is in --format json)
HEADLINE = ("model", "method", "epochs", "batch_size", "lr", "optimizer", "schedule", "data", "val", "init",
            "pretrained", "num_frames", "size")


def _columns(res: dict) -> list[tuple[str, str]]:
    """(cell key, header) per result column: one per store, or per store and rule with compare."""
    if len(res["rules"]) > 1:
        return [(f"{s}@{r}", f"{s} ({r})") for s in res["stores"] for r in res["rules"]]
    return [(s, s) for s in res["stores"]]


def _cell(c: dict | None, runs: int, digits: int, latex: bool = False) -> str:
    if not c:
        return ""
    m = f"{100 * c['mean']:.{digits}f}"
    if c["se"] is None:
        txt = f"${m}$" if latex else m
    else:
        se = f"{100 * c['se']:.{digits}f}"
        txt = f"${m} \\pm {se}$" if latex else f"{m} ± {se}"
    if c["n"] != runs:
        txt += f" (n={c['n']})"
    return txt


def _grid(res: dict, digits: int, latex: bool = False) -> tuple[list[str], list[list[str]]]:
    cols = _columns(res)
    gkeys = res["group_by"]
    headers = [*gkeys, "seeds", *[h for _, h in cols]] if gkeys else ["runs", "seeds", *[h for _, h in cols]]
    rows = []
    for r in res["rows"]:
        first = [r[g] for g in gkeys] if gkeys else ["all"]
        n = f"{r['runs']}" + ("*" if r["unfinished"] else "")
        rows.append([*first, n, *[_cell(r.get(k), r["runs"], digits, latex) for k, _ in cols]])
    return headers, rows


def _latex_escape(s: str) -> str:
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
           "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "$": r"\$"}
    return "".join(rep.get(ch, ch) for ch in str(s))


def to_latex(res: dict, digits: int = 1, label: str = "tab:results") -> str:
    headers, rows = _grid(res, digits, latex=True)
    ng = max(1, len(res["group_by"]))
    spec = "l" * ng + "r" * (len(headers) - ng)
    lines = [r"\begin{table}[t]", r"\centering",
             r"\caption{" + _latex_escape(res["caption"]).replace("±", r"$\pm$") + "}",
             r"\label{" + label + "}", r"\begin{tabular}{" + spec + "}", r"\toprule",
             " & ".join(_latex_escape(h) for h in headers) + r" \\", r"\midrule"]
    for r in rows:
        lines.append(" & ".join(c if c.startswith("$") else _latex_escape(c) for c in r) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def to_csv(res: dict) -> str:
    """Long form: one line per group, store and rule (mean and SE as fractions, not percent)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    gkeys = res["group_by"]
    w.writerow([*gkeys, "store", "selection", "metric", "mean", "se", "n", "runs", "seeds", "unfinished"])
    multi = len(res["rules"]) > 1
    for r in res["rows"]:
        for s in res["stores"]:
            for ru in res["rules"]:
                c = r.get(f"{s}@{ru}" if multi else s)
                if not c:
                    continue
                w.writerow([*[r[g] for g in gkeys], s, ru, res["metric"], f"{c['mean']:.6g}",
                            "" if c["se"] is None else f"{c['se']:.6g}", c["n"], r["runs"],
                            " ".join(str(x) for x in r["seeds"]), r["unfinished"]])
    return buf.getvalue().rstrip("\n")


def render(res: dict, fmt: str = "table", digits: int = 2) -> str:
    """The result as text in one of :data:`FORMATS`."""
    from tabulate import tabulate

    if fmt == "json":
        return json.dumps(res, indent=2, default=str)
    if fmt == "csv":
        return to_csv(res)
    if fmt == "latex":
        return to_latex(res, digits)
    headers, rows = _grid(res, digits)
    if fmt == "markdown":
        return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True) + f"\n\nTable: {res['caption']}"
    text = res["caption"] + "\n" + tabulate(rows, headers=headers, disable_numparse=True)
    if res.get("constant"):
        from vdgtool.evaluate.collect import label

        same = ", ".join(f"{k}={label(res['constant'][k])}" for k in HEADLINE if k in res["constant"])
        if same:
            text += f"\nsame in every run: {same}"
    return text
