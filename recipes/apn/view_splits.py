"""Camera-view splits of PKU-MMD and NTU RGB+D for the APN recipe (cross-view DG, spec §3.1).

    python recipes/apn/view_splits.py pku --labels Train_Label_PKU_final/ --videos RGB_VIDEO/ -o lists/pku
    python recipes/apn/view_splits.py ntu --videos nturgb+d_rgb/ -o lists/ntu      (or --list names.txt)

The paper's tasks are L->{C,R}, C->{L,R} and R->{L,C}: train on one camera view, test on the other two
(pooled). For every view X in L, C, R this writes ``<name>_X_train.csv`` / ``<name>_X_val.csv`` (the
source split, ``--val-fraction`` 0.3 as the paper's 70/30) and ``<name>_X_all.csv``, and for every task
``<name>_<YZ>_all.csv`` (the two other views pooled, e.g. ``pku_CR_all.csv`` for L->C,R). Manifests are
vdgtool CSVs (``path,label,domain``, the domain being the view letter).

PKU-MMD: one label file per long video, ``<sequence>-<V>.txt`` with V = L, M, R (M is the paper's C),
lines ``label,start_frame,end_frame,confidence``. Every line is one trimmed action instance. The clips
are cut from ``--videos`` (``<sequence>-<V>.avi``) by the written ``cut_clips.sh`` (ffmpeg, one trim
per instance, frame numbers as in the label files, end frame included); the manifests list the cut clips
``<clips>/<V>/<sequence>-<V>_<k>.mp4``, and ``instances.csv`` every instance. Phase 1 has 51 classes;
the paper's "41 classes, about 7,000 clips" match Phase 2 (41 classes, 6,945 instances), which uses the
same label format: point --labels at its label folder.

NTU RGB+D: the labels are in the file names ``SsssCcccPpppRrrrAaaa`` (setup, camera, performer,
replication, action). The three cameras stand at -45, 0 and +45 degrees; camera 1 sees both 45-degree
views of each performance, so it is the centre one (C). Which of cameras 2 and 3 is left is not
documented here: ``--camera-views`` sets the mapping (default 1=C,2=L,3=R). Labels are ``A001``...
(pass ``--classes`` for names: one per line, line k = action k).

``--group`` keeps all clips of one group in the same part of the source split: ``sequence`` (PKU: one
long video; NTU: one setup/performer/replication), ``subject`` (NTU: the performer; PKU file names
carry no subject, so it means the sequence there) or ``none`` (clip by clip, the default, as the
paper's random 70/30 split). Splits are stratified by class and seeded (``--seed``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from splitlib import split_train_val, write_manifest  # noqa: E402

VIEWS = ("L", "C", "R")
PKU_VIEWS = {"L": "L", "M": "C", "R": "R"}
NTU_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


def _class_names(path: str | None) -> list[str] | None:
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def _label(raw: int, names: list[str] | None, prefix: str) -> str:
    if names is None:
        return f"{prefix}{raw:03d}"
    if not 1 <= raw <= len(names):
        raise SystemExit(f"label {raw} is outside the {len(names)} names of --classes (1-based)")
    return names[raw - 1]


def pku_instances(label_dir: str, names: list[str] | None, min_confidence: int = 0) -> list[dict]:
    """Every action instance of a PKU-MMD label folder, in file and line order."""
    out = []
    files = sorted(f for f in os.listdir(label_dir) if f.endswith(".txt"))
    for fn in files:
        m = re.fullmatch(r"(.+)-([LMR])\.txt", fn)
        if not m:
            continue
        seq, view = m.group(1), PKU_VIEWS[m.group(2)]
        with open(os.path.join(label_dir, fn), encoding="utf-8") as f:
            for k, line in enumerate(x for x in f if x.strip()):
                parts = [p.strip() for p in line.split(",")]
                if len(parts) < 3:
                    raise SystemExit(f"{fn}: line {line.strip()!r} is not label,start,end[,confidence]")
                label, start, end = int(parts[0]), int(parts[1]), int(parts[2])
                conf = int(float(parts[3])) if len(parts) > 3 and parts[3] else 0
                if end < start:
                    raise SystemExit(f"{fn}: instance {k} ends before it starts ({start} > {end})")
                if conf < min_confidence:
                    continue
                out.append({"sequence": seq, "view": view, "file_view": m.group(2), "index": k,
                            "label": _label(label, names, "A"), "start": start, "end": end,
                            "confidence": conf, "subject": seq})  # no subject ids in PKU file names
    if not out:
        raise SystemExit(f"{label_dir} holds no <sequence>-<L|M|R>.txt label files")
    return out


def ntu_instances(names_in: list[str], classes: list[str] | None, camera_views: dict[int, str]) -> list[dict]:
    out = []
    for name in sorted(set(names_in)):
        m = NTU_NAME.search(os.path.basename(name))
        if not m:
            continue
        setup, cam, perf, rep, act = (int(g) for g in m.groups())
        if cam not in camera_views:
            raise SystemExit(f"{name}: camera {cam} has no view in --camera-views")
        out.append({"path": name, "view": camera_views[cam], "label": _label(act, classes, "A"),
                    "subject": f"P{perf:03d}", "sequence": f"S{setup:03d}P{perf:03d}R{rep:03d}"})
    if not out:
        raise SystemExit("no NTU RGB+D sample name (SsssCcccPpppRrrrAaaa) found")
    return out


def write_view_splits(items: list[dict], out: str, name: str, val_fraction: float, seed: int, group: str) -> dict:
    key = {"none": None, "sequence": lambda it: it["sequence"], "subject": lambda it: it["subject"]}[group]
    counts = {}
    by_view = {v: [it for it in items if it["view"] == v] for v in VIEWS}
    for v in VIEWS:
        train, val = split_train_val(by_view[v], val_fraction, seed, group=key, stratify=lambda it: it["label"])
        for split, part in (("train", train), ("val", val), ("all", by_view[v])):
            counts[f"{name}_{v}_{split}"] = write_manifest(
                os.path.join(out, f"{name}_{v}_{split}.csv"), ((it["path"], it["label"], v) for it in part))
    for v in VIEWS:
        others = [w for w in VIEWS if w != v]
        rows = [(it["path"], it["label"], it["view"]) for w in others for it in by_view[w]]
        counts[f"{name}_{''.join(others)}_all"] = write_manifest(
            os.path.join(out, f"{name}_{''.join(others)}_all.csv"), rows)
    return counts


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="dataset", required=True)
    for ds in ("pku", "ntu"):
        p = sub.add_parser(ds)
        p.add_argument("-o", "--out", required=True)
        p.add_argument("--classes", help="class names, one per line (line k = label k, 1-based)")
        p.add_argument("--val-fraction", type=float, default=0.3)
        p.add_argument("--group", choices=("none", "sequence", "subject"), default="none")
        p.add_argument("--seed", type=int, default=0)
        if ds == "pku":
            p.add_argument("--labels", required=True, help="folder of <sequence>-<L|M|R>.txt label files")
            p.add_argument("--videos", default="videos", help="folder of the long <sequence>-<V>.avi videos")
            p.add_argument("--clips", help="folder for the cut clips (default OUT/clips)")
            p.add_argument("--ext", default=".avi", help="extension of the long videos")
            p.add_argument("--min-confidence", type=int, default=0)
        else:
            src = p.add_mutually_exclusive_group(required=True)
            src.add_argument("--videos", help="folder of the NTU RGB+D videos")
            src.add_argument("--list", help="text file of sample names or paths, one per line")
            p.add_argument("--camera-views", default="1=C,2=L,3=R")
    a = ap.parse_args(argv)
    names = _class_names(a.classes)
    os.makedirs(a.out, exist_ok=True)
    if a.dataset == "pku":
        items = pku_instances(a.labels, names, a.min_confidence)
        clips = a.clips or os.path.join(a.out, "clips")
        with open(os.path.join(a.out, "cut_clips.sh"), "w", encoding="utf-8") as sh:
            sh.write("#!/usr/bin/env bash\n# one ffmpeg trim per PKU-MMD action instance (end frame included)\n"
                     "set -euo pipefail\n")
            for v in VIEWS:
                sh.write(f"mkdir -p '{os.path.join(clips, v)}'\n")
            for it in items:
                src = os.path.join(a.videos, f"{it['sequence']}-{it['file_view']}{a.ext}")
                it["path"] = os.path.join(clips, it["view"], f"{it['sequence']}-{it['file_view']}_{it['index']:03d}.mp4")
                sh.write(f"[ -f '{it['path']}' ] || ffmpeg -nostdin -v error -i '{src}' -vf "
                         f"'trim=start_frame={it['start']}:end_frame={it['end'] + 1},setpts=PTS-STARTPTS' "
                         f"-an '{it['path']}'\n")
        with open(os.path.join(a.out, "instances.csv"), "w", encoding="utf-8") as f:
            f.write("clip,label,view,sequence,start,end,confidence\n")
            for it in items:
                f.write(f"{it['path']},{it['label']},{it['view']},{it['sequence']},{it['start']},{it['end']},"
                        f"{it['confidence']}\n")
    else:
        views = {}
        for part in a.camera_views.split(","):
            cam, _, view = part.partition("=")
            if view not in VIEWS or not cam.strip().isdigit():
                raise SystemExit(f"--camera-views {a.camera_views!r}: write e.g. 1=C,2=L,3=R")
            views[int(cam)] = view
        if a.videos:
            paths = [os.path.join(a.videos, n) for n in sorted(os.listdir(a.videos)) if NTU_NAME.search(n)]
        else:
            with open(a.list, encoding="utf-8") as f:
                paths = [line.strip() for line in f if line.strip()]
        items = ntu_instances(paths, names, views)
    counts = write_view_splits(items, a.out, a.dataset, a.val_fraction, a.seed, a.group)
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    return counts


if __name__ == "__main__":
    main()
