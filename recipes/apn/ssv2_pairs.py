"""Something-Something "doing" vs "pretending" pairs for the APN recipe, from the official SSv2 files.

    python recipes/apn/ssv2_pairs.py --labels something-something-v2-labels.json -o lists/ \\
        [--train something-something-v2-train.json --validation something-something-v2-validation.json \\
         --videos 20bn-something-something-v2/] [--rule exact|exact-or-prefix]

The paper's 20 category pairs are in an unavailable supplement; this script derives them by a rule.
For every label starting with "Pretending" it takes the pretended action: the text after "Pretending
to [be]" / "Pretending or failing to" / "Pretending or trying and failing to", without the clause that
says it is pretended (", but something is empty", "without actually <verb>ing it", "that is not
<adjective>"), with "air" read as "something" ("spread air onto something" pretends "spread something
onto something"). Its doing counterpart is the label that reads the same with the verb as a gerund
("put something behind something" -> "Putting something behind something").

* ``--rule exact`` (default): only pretended actions with exactly one such label. On SSv2 this gives
  20 pairs (the paper's count) and leaves out "Pretending to be tearing something that is not tearable"
  (two tearing labels, neither plain) and "Pretending to poke something" (eight poking labels).
* ``--rule exact-or-prefix``: as exact, and where no label matches exactly, every label that starts
  with the gerund and the object ("Tearing something into two pieces", "Tearing something just a
  little bit") is merged into one doing class: 22 categories.

Writes ``ssv2_pairs.tsv`` (category, doing label(s), pretending label, their ids). With --train /
--validation it also writes ``ssv2_doing_{train,val}.csv`` and ``ssv2_pretending_{train,val}.csv``
(vdgtool manifests from the official splits, labelled by category, domains ``doing`` / ``pretending``;
paths ``<videos>/<id>.webm``). S->T trains on doing, T->S on pretending.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from splitlib import write_manifest  # noqa: E402

PREFIXES = ("pretending or trying and failing to ", "pretending or failing to ", "pretending to be ",
            "pretending to ")
QUALIFIERS = (r",? but something is empty$", r" without actually \w+ it$", r" that is not \w+$")


def normalise(label: str) -> str:
    """Lower case, template brackets removed, spaces collapsed ("[something]" -> "something")."""
    return " ".join(label.replace("[", "").replace("]", "").lower().split())


def pretended_action(label: str) -> tuple[str, str] | None:
    """``(verb, object phrase)`` of a "Pretending ..." label, or None for any other label."""
    text = normalise(label)
    for p in PREFIXES:
        if text.startswith(p):
            rest = text[len(p):]
            break
    else:
        return None
    for q in QUALIFIERS:
        rest = re.sub(q, "", rest)
    rest = re.sub(r"\bair\b", "something", rest)
    verb, _, obj = rest.partition(" ")
    return verb, obj


def gerunds(verb: str) -> set[str]:
    if verb.endswith("ing"):
        return {verb}
    out = {verb + "ing", verb + verb[-1] + "ing"}  # open -> opening, put -> putting
    if verb.endswith("e") and not verb.endswith("ee"):
        out.add(verb[:-1] + "ing")  # close -> closing
    return out


def make_pairs(labels: dict[str, int], rule: str = "exact") -> list[dict]:
    """``labels``: label text -> id. Returns one dict per category, in pretending-label id order."""
    if rule not in ("exact", "exact-or-prefix"):
        raise SystemExit(f"--rule {rule!r}: use exact or exact-or-prefix")
    doing = {normalise(t): t for t in labels if pretended_action(t) is None}
    pairs = []
    for pretend in sorted(labels, key=lambda t: labels[t]):
        act = pretended_action(pretend)
        if act is None:
            continue
        verb, obj = act
        heads = gerunds(verb)
        cands = [(n, t) for n, t in doing.items() if n.split(" ", 1)[0] in heads]
        exact = [t for n, t in cands if n.split(" ", 1)[1:] == [obj]]
        if len(exact) == 1:
            chosen = exact
        elif rule == "exact-or-prefix" and not exact:
            chosen = sorted((t for n, t in cands if n.split(" ", 1)[1:2] and
                             (n.split(" ", 1)[1] + " ").startswith(obj + " ")), key=lambda t: labels[t])
        else:
            chosen = []
        if not chosen:
            continue
        # a merged category is named by the gerund the labels use and the pretended object
        category = chosen[0] if len(chosen) == 1 else f"{chosen[0].split(' ', 1)[0]} {obj}"
        pairs.append({"category": category, "doing": chosen, "pretending": pretend,
                      "doing_ids": [labels[t] for t in chosen], "pretending_id": labels[pretend]})
    return pairs


def _load_labels(path: str) -> dict[str, int]:
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    if isinstance(raw, dict):  # the official format: {"label text": "id"}
        return {str(k): int(v) for k, v in raw.items()}
    raise SystemExit(f"{path}: expected the SSv2 label file, a JSON object {{label: id}}")


def _split_rows(path: str, pairs: list[dict], videos: str) -> dict[str, list]:
    with open(path, encoding="utf-8") as f:
        entries = json.load(f)
    to_cat = {}
    for p in pairs:
        to_cat.update({normalise(t): ("doing", p["category"]) for t in p["doing"]})
        to_cat[normalise(p["pretending"])] = ("pretending", p["category"])
    rows: dict[str, list] = {"doing": [], "pretending": []}
    for e in entries:
        hit = to_cat.get(normalise(e.get("template", "")))
        if hit:
            rows[hit[0]].append((os.path.join(videos, f"{e['id']}.webm"), hit[1], hit[0]))
    return rows


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", required=True, help="something-something-v2-labels.json")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--rule", default="exact", choices=("exact", "exact-or-prefix"))
    ap.add_argument("--train", help="something-something-v2-train.json (writes *_train.csv)")
    ap.add_argument("--validation", help="something-something-v2-validation.json (writes *_val.csv)")
    ap.add_argument("--videos", default="", help="folder of the <id>.webm videos (prefix of the paths)")
    a = ap.parse_args(argv)
    pairs = make_pairs(_load_labels(a.labels), a.rule)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "ssv2_pairs.tsv"), "w", encoding="utf-8") as f:
        f.write("# category\tdoing label(s)\tpretending label\tdoing id(s)\tpretending id\n")
        for p in pairs:
            f.write("\t".join([p["category"], ",".join(p["doing"]), p["pretending"],
                               ",".join(map(str, p["doing_ids"])), str(p["pretending_id"])]) + "\n")
    for split, path in (("train", a.train), ("val", a.validation)):
        if path:
            for domain, rows in _split_rows(path, pairs, a.videos).items():
                write_manifest(os.path.join(a.out, f"ssv2_{domain}_{split}.csv"), rows)
    print(f"{len(pairs)} categories ({a.rule}) -> {os.path.join(a.out, 'ssv2_pairs.tsv')}")
    return pairs


if __name__ == "__main__":
    main()
