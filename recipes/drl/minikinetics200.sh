#!/usr/bin/env bash
# miniKinetics-200 (Xie et al., ECCV 2018; the DRL paper's Table 2 dataset) from a Kinetics-400 folder tree:
# 200 classes (minikinetics200_classes.txt), 400 training and 25 validation videos per class, chosen by
# the YouTube-id lists of github:s9xie/Mini-Kinetics-200 (train_ytid_list.txt, val_ytid_list.txt).
#   K400_TRAIN_DIR=k400/train K400_VAL_DIR=k400/val TRAIN_YTIDS=train_ytid_list.txt VAL_YTIDS=val_ytid_list.txt \
#     recipes/drl/minikinetics200.sh OUT_DIR
# Writes OUT_DIR/k200_{train,val}.csv (path,label manifests) and the stores OUT_DIR/k200_{train,val}.h5 at
# 16 fps, short side 128 (1-second 16-frame clips for the 3D ResNets; SIZE=256 for TSM), then
#   K200_TRAIN=OUT_DIR/k200_train.h5 K200_VAL=OUT_DIR/k200_val.h5 recipes/drl/table2.sh
# Video files are matched by their name's first 11 characters (the YouTube id: Kinetics downloaders name
# files ID_START_END.mp4 or ID.mp4) inside class folders named as in the class list (spaces or underscores).
set -euo pipefail
OUT_DIR=${1:?usage: recipes/drl/minikinetics200.sh OUT_DIR (with K400_TRAIN_DIR, K400_VAL_DIR, TRAIN_YTIDS, VAL_YTIDS)}
CLASSES="$(dirname "$0")/minikinetics200_classes.txt"
SIZE=${SIZE:-128}; FPS=${FPS:-16}; WORKERS=${WORKERS:-8}
mkdir -p "$OUT_DIR"
for split in train val; do
  dir_var="K400_${split^^}_DIR"; ids_var="${split^^}_YTIDS"
  python - "${!dir_var:?set $dir_var}" "${!ids_var:?set $ids_var}" "$CLASSES" "$OUT_DIR/k200_$split.csv" <<'PY'
import csv, os, sys
root, ids_file, classes_file, out = sys.argv[1:]
ids = {l.strip() for l in open(ids_file) if l.strip()}
classes = [l.rstrip("\n") for l in open(classes_file) if l.strip()]
by_folder = {c.replace(" ", "_"): c for c in classes}
by_folder.update({c: c for c in classes})
rows, found = [], set()
for folder in sorted(os.listdir(root)):
    label = by_folder.get(folder)
    if label is None or not os.path.isdir(os.path.join(root, folder)):
        continue
    for f in sorted(os.listdir(os.path.join(root, folder))):
        if f[:11] in ids:
            rows.append((os.path.join(root, folder, f), label))
            found.add(f[:11])
with open(out, "w", newline="") as fh:
    csv.writer(fh).writerows([("path", "label"), *rows])
missing = len(ids - found)
print(f"{out}: {len(rows)} videos of {len({r[1] for r in rows})} classes; {missing} listed ids not found", file=sys.stderr)
PY
  vdgtool extract "$OUT_DIR/k200_$split.csv" -o "$OUT_DIR/k200_$split.h5" --classes "$CLASSES" --fps "$FPS" \
    --size "$SIZE" -j "$WORKERS" --resume
done
