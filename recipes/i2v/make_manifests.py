#!/usr/bin/env python
"""Manifests (CSV path,label,domain) for the MM 2024 image-to-video benchmarks, from the official data.

  source  a folder of images -> the source manifest, labelled with the benchmark's class names:
          ROOT/<folder>/<image> trees (EADs) or a flat folder whose file names carry the class
          (Stanford40 JPEGImages: applauding_001.jpg), mapped through the benchmark's *_classes.csv
  target  ROOT/<class>/<video> (HMDB51 / UCF101 after unpacking) -> the target manifest of the
          benchmark's classes only (all videos, all official splits: the release's protocol)

Examples:
  python recipes/i2v/make_manifests.py source Stanford40/JPEGImages --benchmark s2u -o s2u_source.csv
  python recipes/i2v/make_manifests.py source EAD_image_dataset --benchmark e2h -o e2h_source.csv
  python recipes/i2v/make_manifests.py target hmdb51_videos --benchmark e2h -o e2h_target.csv
  python recipes/i2v/make_manifests.py target UCF-101 --classes ucfTrainTestlist/classInd.txt -o b2u_target.csv
Then: vdgtool synth-video e2h_source.csv ... / vdgtool extract e2h_target.csv ... (--classes FILE).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

from vdgtool.video.manifest import read_class_list  # 'index name' or 'name' lines (classInd.txt)

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXT = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".gif")


def class_table(benchmark: str) -> list[dict]:
    """Rows of recipes/i2v/<benchmark>_classes.csv (label, name, source_folder, counts)."""
    path = os.path.join(HERE, f"{benchmark}_classes.csv")
    if not os.path.isfile(path):
        sys.exit(f"error: no class table {path}; use --classes FILE for a benchmark without one (B→U)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def source_rows(root: str, table: list[dict]) -> list[tuple[str, str, str]]:
    to_name = {r["source_folder"]: r["name"] for r in table}
    rows = []
    for dirpath, _, files in os.walk(root):
        for fn in sorted(files):
            if not fn.lower().endswith(IMAGE_EXT):
                continue
            folder = os.path.basename(dirpath) if dirpath != root else None
            cls = folder if folder in to_name else fn.rsplit("_", 1)[0]  # Stanford40: class in the file name
            if cls in to_name:
                rows.append((os.path.abspath(os.path.join(dirpath, fn)), to_name[cls], "source"))
    return sorted(rows)


def target_rows(root: str, names: list[str]) -> list[tuple[str, str, str]]:
    rows = []
    for c in names:
        cdir = os.path.join(root, c)
        if not os.path.isdir(cdir):
            sys.exit(f"error: {root} has no folder {c!r}; the target tree must be ROOT/<class>/<video>")
        rows += [(os.path.abspath(os.path.join(cdir, fn)), c, "target") for fn in sorted(os.listdir(cdir))
                 if fn.lower().endswith(VIDEO_EXT)]
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("side", choices=("source", "target"))
    ap.add_argument("root")
    ap.add_argument("--benchmark", choices=("e2h", "s2u"), help="use recipes/i2v/<benchmark>_classes.csv")
    ap.add_argument("--classes", help="class list file (target side, e.g. UCF-101 classInd.txt for B→U)")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args(argv)
    if a.side == "source":
        if not a.benchmark:
            sys.exit("error: the source side needs --benchmark (its table maps source folders to class names)")
        rows = source_rows(a.root, class_table(a.benchmark))
    else:
        if not (a.benchmark or a.classes):
            sys.exit("error: pass --benchmark or --classes")
        names = read_class_list(a.classes) if a.classes else [r["name"] for r in class_table(a.benchmark)]
        rows = target_rows(a.root, names)
    if not rows:
        sys.exit(f"error: no matching files under {a.root}")
    with open(a.output, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "domain"])
        w.writerows(rows)
    counts: dict[str, int] = {}
    for _, c, _ in rows:
        counts[c] = counts.get(c, 0) + 1
    print(f"{a.output}: {len(rows)} files, {len(counts)} classes", file=sys.stderr)
    if a.benchmark:  # compare with the release's counts (spec §1.1)
        col = "source_images" if a.side == "source" else "target_videos"
        for r in class_table(a.benchmark):
            if counts.get(r["name"], 0) != int(r[col]):
                print(f"note: {r['name']}: {counts.get(r['name'], 0)} files, the release lists {r[col]}",
                      file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
