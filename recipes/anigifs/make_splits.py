#!/usr/bin/env python
"""The Ani-GIFs dataset protocol (spec §1.2): class list, near-duplicate removal, stratified splits as CSV manifests.

Inputs:
  --gifs ROOT         cleaned GIFs as ROOT/<kinetics class>/<file>.gif (scraped per Kinetics-600 class with
                      "cartoon" / "animated" / "graphics", filtered by hand)
  --kinetics-train D  Kinetics-600 train videos as D/<class>/<video>     (real_train + the 5 % real_val)
  --kinetics-val D    Kinetics-600 val videos as D/<class>/<video>       (real_test: K600 test labels are not public)
  --k400-classes F    optional: the Kinetics-400 class list in output order (pytorch-i3d label_map.txt), for the
                      zero-shot baseline B0's class map
Outputs in -o OUT: classes.txt (classes with >= --n-min GIFs after de-duplication), anim_{train,val,test}.csv
(seeded class-stratified 60/20/20), real_{train,val,test}.csv (val = seeded stratified 5 % of K600 train; an optional
--cap per class), k400_to_anigifs.csv (K400 names matched by lower-casing and '_' -> ' '), protocol.json (every
count, the seed, the removed duplicates).

Duplicates: a GIF whose average hash (imagehash, 8 x 8) of its first, middle and last frames is within
--hash-distance bits of an earlier GIF's, frame by frame, is dropped before splitting, so no pair can
straddle two splits.

  python recipes/anigifs/make_splits.py --gifs anigifs/ --kinetics-train k600/train --kinetics-val k600/val \\
      --k400-classes label_map.txt -o splits/ --seed 0
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys

import numpy as np

VIDEO_EXT = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif")


def norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())


def tree(root: str, ext=VIDEO_EXT) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in sorted(os.listdir(root)):
        d = os.path.join(root, c)
        if os.path.isdir(d):
            files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.lower().endswith(ext))
            if files:
                out[c] = files
    return out


def gif_hashes(path: str):
    """Average hashes of the first, middle and last frame (None for an unreadable GIF)."""
    import imagehash
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as im:
            n = getattr(im, "n_frames", 1)
            picks = sorted({0, n // 2, n - 1})
            frames = [f.convert("RGB") for i, f in enumerate(ImageSequence.Iterator(im)) if i in picks]
    except (OSError, ValueError):
        return None
    return [imagehash.average_hash(f) for f in frames]


def dedupe(files: list[str], max_dist: int) -> tuple[list[str], list[list[str]]]:
    kept, hashes, dropped = [], [], []
    for f in files:
        h = gif_hashes(f)
        if h is None:
            dropped.append([f, "unreadable"])
            continue
        dup = next((k for k, hk in zip(kept, hashes) if len(hk) == len(h)
                    and all(a - b <= max_dist for a, b in zip(h, hk))), None)
        if dup:
            dropped.append([f, dup])
        else:
            kept.append(f)
            hashes.append(h)
    return kept, dropped


def stratified(files: dict[str, list[str]], shares: list[float], rng) -> list[dict[str, list[str]]]:
    """Per class a seeded permutation cut at the cumulative shares (every part gets >= 1 when possible)."""
    parts: list[dict[str, list[str]]] = [{} for _ in shares]
    for c, fs in files.items():
        perm = [fs[i] for i in rng.permutation(len(fs))]
        cuts = np.round(np.cumsum(shares) * len(fs)).astype(int)
        cuts[-1] = len(fs)
        start = 0
        for p, end in zip(parts, cuts):
            p[c] = perm[start:end]
            start = end
    return parts


def write_csv(path: str, files: dict[str, list[str]], domain: str) -> int:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "domain"])
        n = 0
        for c, fs in files.items():
            for p in fs:
                w.writerow([os.path.abspath(p), c, domain])
                n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gifs", required=True)
    ap.add_argument("--kinetics-train", required=True)
    ap.add_argument("--kinetics-val", required=True)
    ap.add_argument("--k400-classes")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--n-min", type=int, default=10, help="GIFs a class needs after de-duplication")
    ap.add_argument("--cap", type=int, help="at most this many Kinetics train videos per class (stated)")
    ap.add_argument("--hash-distance", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)

    gifs, removed = {}, {}
    for c, fs in tree(a.gifs, (".gif",)).items():
        gifs[c], removed[c] = dedupe(fs, a.hash_distance)
    k_train, k_val = tree(a.kinetics_train), tree(a.kinetics_val)
    classes = [c for c in sorted(gifs) if len(gifs[c]) >= a.n_min and c in k_train and c in k_val]
    if not classes:
        sys.exit(f"error: no class has {a.n_min} GIFs and Kinetics train + val videos; lower --n-min or check the trees")
    with open(os.path.join(a.out, "classes.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")
    gifs = {c: gifs[c] for c in classes}
    anim = stratified(gifs, [0.6, 0.2, 0.2], rng)
    real = {c: k_train[c] for c in classes}
    if a.cap:
        real = {c: [fs[i] for i in sorted(rng.permutation(len(fs))[: a.cap])] for c, fs in real.items()}
    real_train, real_val = stratified(real, [0.95, 0.05], rng)
    counts = {}
    for name, files, dom in (("anim_train", anim[0], "animated"), ("anim_val", anim[1], "animated"),
                             ("anim_test", anim[2], "animated"), ("real_train", real_train, "real"),
                             ("real_val", real_val, "real"), ("real_test", {c: k_val[c] for c in classes}, "real")):
        counts[name] = write_csv(os.path.join(a.out, f"{name}.csv"), files, dom)
    shared = None
    if a.k400_classes:
        from vdgtool.video.manifest import read_class_list

        k400 = read_class_list(a.k400_classes)
        by = {norm(k): k for k in k400}
        shared = [(by[norm(c)], c) for c in classes if norm(c) in by]
        with open(os.path.join(a.out, "k400_to_anigifs.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["model_class", "target_class"])
            w.writerows(shared)
        with open(os.path.join(a.out, "classes_k400.txt"), "w") as f:
            f.write("\n".join(c for _, c in shared) + "\n")
    proto = {"seed": a.seed, "n_min": a.n_min, "cap_per_class": a.cap, "hash_distance": a.hash_distance,
             "classes": len(classes), "counts": counts, "k400_shared_classes": None if shared is None else len(shared),
             "gifs_per_class": {c: len(gifs[c]) for c in classes},
             "duplicates_removed": {c: r for c, r in removed.items() if r},
             "splits": "anim 60/20/20 class-stratified; real_val = 5 % of K600 train, class-stratified; "
                       "real_test = K600 val"}
    with open(os.path.join(a.out, "protocol.json"), "w") as f:
        json.dump(proto, f, indent=1)
    print(json.dumps({k: proto[k] for k in ("classes", "counts", "k400_shared_classes")}))


if __name__ == "__main__":
    main()
