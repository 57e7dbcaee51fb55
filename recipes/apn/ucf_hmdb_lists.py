"""UCF101 <-> HMDB51 manifests for the APN recipe, through the 12-class map (ucf_hmdb_classes.tsv).

    python recipes/apn/ucf_hmdb_lists.py --ucf UCF101/ --hmdb HMDB51/ -o lists/ [--val-fraction 0.3]

``--ucf`` / ``--hmdb`` are folder trees ROOT/<dataset class>/<video or frame folder> (the datasets'
own layout). Only the mapped classes are read; each video is labelled with its *shared* class name.
Writes ``ucf_train.csv``, ``ucf_val.csv``, ``ucf_all.csv`` and the same for ``hmdb`` (vdgtool CSV
manifests, domains ``ucf`` / ``hmdb``). U->H trains on ucf_train, selects on ucf_val, tests on hmdb_all
(the released code's protocol); H->U swaps them.

Split: ``--val-fraction 0.3`` is the paper's 70/30 (the released lists are 80/20: 0.2). By default the
UCF101 clips of one group (``v_<Class>_gXX_cYY``: the same actor and scene) stay on one side (the
released UCF split is random and shares 255 groups between train and val, which makes source
validation optimistic); ``--no-group`` splits clip by clip, as the released lists do. Stratified by
shared class; seeded (``--seed``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from splitlib import split_train_val, write_manifest  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
VIDEO_EXTS = (".avi", ".mp4", ".webm", ".mkv", ".mov")


def read_class_map(path: str) -> list[tuple[str, list[str], list[str]]]:
    """``[(shared, [ucf classes], [hmdb classes])]`` in file order (= the released label ids)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 3 or not all(p.strip() for p in parts):
                raise SystemExit(f"{path}:{n}: expected shared<TAB>ucf[,ucf]<TAB>hmdb[,hmdb], got {line!r}")
            out.append((parts[0].strip(), [c.strip() for c in parts[1].split(",")],
                        [c.strip() for c in parts[2].split(",")]))
    names = [r[0] for r in out]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: a shared class is listed twice")
    return out


def _videos(root: str, cls: str) -> list[str]:
    d = os.path.join(root, cls)
    if not os.path.isdir(d):
        raise SystemExit(f"{root} has no class folder {cls!r} (needed by the class map)")
    return sorted(n for n in os.listdir(d) if not n.startswith(".")
                  and (os.path.isdir(os.path.join(d, n)) or n.lower().endswith(VIDEO_EXTS)))


def ucf_group(name: str) -> str:
    m = re.match(r"v_(.+)_g(\d+)_c\d+", name)
    return f"{m.group(1)}_g{m.group(2)}" if m else name


def dataset_items(root: str, cmap, column: int, domain: str) -> list[tuple[str, str, str]]:
    rows = []
    for entry in cmap:
        for cls in entry[column]:
            for name in _videos(root, cls):
                rows.append((os.path.join(root, cls, name), entry[0], domain))
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ucf", required=True, help="UCF101 root: ROOT/<class>/<video>")
    ap.add_argument("--hmdb", required=True, help="HMDB51 root: ROOT/<class>/<video>")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--class-map", default=os.path.join(HERE, "ucf_hmdb_classes.tsv"))
    ap.add_argument("--val-fraction", type=float, default=0.3, help="paper 0.3; released lists 0.2")
    ap.add_argument("--no-group", dest="group", action="store_false", help="split UCF101 clip by clip")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    cmap = read_class_map(a.class_map)
    counts = {}
    for domain, root, column in (("ucf", a.ucf, 1), ("hmdb", a.hmdb, 2)):
        rows = dataset_items(root, cmap, column, domain)
        group = (lambda r: ucf_group(os.path.basename(r[0]))) if domain == "ucf" and a.group else None
        train, val = split_train_val(rows, a.val_fraction, a.seed, group=group, stratify=lambda r: r[1])
        for split, part in (("train", train), ("val", val), ("all", rows)):
            counts[f"{domain}_{split}"] = write_manifest(os.path.join(a.out, f"{domain}_{split}.csv"), part)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


if __name__ == "__main__":
    main()
