#!/usr/bin/env bash
# Table 2 of the DRL paper: dynamic scores (Distill / Freeze / Shuffle) of a baseline and of every DRL
# variant, with the paper's claimed ordering Distill < Shuffle < Freeze checked per row.
#
# miniKinetics-200 (the paper's setting; class list: recipes/drl/minikinetics200_classes.txt):
#   vdgtool extract k400/train -o k200_train.h5 --classes recipes/drl/minikinetics200_classes.txt --fps 16 --size 128
#   vdgtool extract k400/val   -o k200_val.h5   --classes recipes/drl/minikinetics200_classes.txt --fps 16 --size 128
#   K200_TRAIN=k200_train.h5 K200_VAL=k200_val.h5 recipes/drl/table2.sh
# trains (recipes/drl/pretrain.sh, released schedules, 3D ResNet-18) ERM and the five DRL variants, then
# scores each on K200_VAL: freeze / shuffle, and distill with the release's protocol (ImageNet ResNet-18
# student, 25 epochs SGD on K200_TRAIN, augmented clips, live teacher).
#
# Toy (reuses the runs of recipes/drl/toy_drl.sh; several seeds give mean ± SE):
#   RUNS=runs/toy_drl recipes/drl/table2.sh
# scores OUT/seedS/<method>/checkpoints/last.pt (and seedS/erm) on seedS/real_val.h5; the student is
# test_frame2d from scratch (STUDENT=...), trained with the paper protocol on each run's training store.
#
# Output: <run>.table2_{freeze,shuffle,distill}.json beside each run, and the table on stdout.
set -euo pipefail
HERE=$(dirname "$0")
DEVICE=${DEVICE:-auto}
WORKERS=${WORKERS:-0}
BATCH=${BATCH:-64}               # the release's batch size (student training and scoring)
EPOCHS_DISTILL=${EPOCHS_DISTILL:-25}
V="vdgtool -q"

score_run() {  # score_run CKPT SCORED_STORE OUTPREFIX [extra distill flags...]; results written atomically
  local ck=$1 st=$2 pre=$3; shift 3
  for S in freeze shuffle; do
    [ -f "$pre.table2_$S.json" ] || { $V score --method "$S" "$ck" --data "$st" --batch-size "$BATCH" \
      --device "$DEVICE" -j "$WORKERS" --json > "$pre.table2_$S.json.partial" && mv "$pre.table2_$S.json.partial" "$pre.table2_$S.json"; }
  done
  [ -f "$pre.table2_distill.json" ] || { $V score --method distill "$ck" --data "$st" --protocol paper \
    --student-epochs "$EPOCHS_DISTILL" --batch-size "$BATCH" --device "$DEVICE" -j "$WORKERS" "$@" --json \
    > "$pre.table2_distill.json.partial" && mv "$pre.table2_distill.json.partial" "$pre.table2_distill.json"; }
}

if [ -n "${RUNS:-}" ]; then  # toy: the runs of toy_drl.sh
  STUDENT=${STUDENT:-test_frame2d}
  BATCH=${BATCH_TOY:-16}
  SEED_DIRS=("$RUNS"/seed*)
  [ -d "${SEED_DIRS[0]}" ] || { echo "table2.sh: no seed*/ folders in $RUNS (run recipes/drl/toy_drl.sh first)" >&2; exit 1; }
  for D in "${SEED_DIRS[@]}"; do
    for R in "$D"/*/; do
      R=${R%/}; M=$(basename "$R")
      [ -f "$R/done" ] && [ -f "$R/checkpoints/last.pt" ] || continue   # finished runs only
      echo "table2: $D $M" >&2
      score_run "$R/checkpoints/last.pt" "$D/real_val.h5" "$D/$M" --student "$STUDENT" --student-scratch
    done
  done
  MODE=toy
else
  : "${K200_TRAIN:?set K200_TRAIN and K200_VAL (miniKinetics-200 stores), or RUNS=<toy_drl.sh output>}"
  : "${K200_VAL:?set K200_VAL}"
  OUT=${OUT:-runs/drl}/table2
  export METHODS=${METHODS:-"drl-fgsm drl-pgd drl-distill drl-freeze drl-shuffle"}
  OUT="$OUT" KINETICS_TRAIN="$K200_TRAIN" KINETICS_VAL="$K200_VAL" bash "$HERE/pretrain.sh"
  D="$OUT/pretrain"
  SEED_DIRS=("$D")
  for M in erm $METHODS; do
    score_run "$D/$M/checkpoints/last.pt" "$K200_VAL" "$D/$M" --student-data "$K200_TRAIN" \
      ${STUDENT:+--student "$STUDENT"} ${STUDENT_WEIGHTS:+--student-weights "$STUDENT_WEIGHTS"}
  done
  MODE=paper
fi

python - "$MODE" "${SEED_DIRS[@]}" <<'PY'
import glob, json, math, os, sys
from tabulate import tabulate
mode, dirs = sys.argv[1], sys.argv[2:]
PAPER = {"erm": (0.33, 1.06, 0.74), "drl-fgsm": (0.45, 1.25, 0.88), "drl-pgd": (0.45, 1.26, 0.89),
         "drl-distill": (0.61, 1.79, 1.29), "drl-freeze": (0.62, 2.21, 1.70), "drl-shuffle": (0.54, 1.26, 1.23)}
def ms(v):
    m = sum(v) / len(v)
    if len(v) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))
methods = sorted({os.path.basename(p)[:-len(".table2_freeze.json")] for d in dirs
                  for p in glob.glob(f"{d}/*.table2_freeze.json")}, key=lambda m: (m != "erm", m != "erm-ft", m))
rows, ok_all = [], True
for m in methods:
    vals = {k: [] for k in ("distill", "freeze", "shuffle")}
    seeds_ok = 0
    for d in dirs:
        try:
            r = {k: json.load(open(f"{d}/{m}.table2_{k}.json"))["score"] for k in vals}
        except FileNotFoundError:
            continue
        for k in vals:
            vals[k].append(r[k])
        seeds_ok += r["distill"] < r["shuffle"] < r["freeze"]
    n = len(vals["freeze"])
    if not n:
        continue
    mean = {k: ms(v) for k, v in vals.items()}
    order = mean["distill"][0] < mean["shuffle"][0] < mean["freeze"][0]
    ok_all &= order
    fmt = lambda k: f"{mean[k][0]:.3f} ± {mean[k][1]:.3f}" if n > 1 else f"{mean[k][0]:.3f}"
    row = [m, n, fmt("distill"), fmt("freeze"), fmt("shuffle"), f"{'yes' if order else 'NO'} ({seeds_ok}/{n} seeds)"]
    if mode == "paper":
        row.append(" / ".join(f"{x:.2f}" for x in PAPER.get(m, ())) or "")
    rows.append(row)
headers = ["method", "seeds", "Distill", "Freeze", "Shuffle", "Distill < Shuffle < Freeze"]
if mode == "paper":
    headers.append("paper (D / F / S)")
print(f"dynamic scores (nats, mean ± SE over seeds), Table 2 protocol; ordering on the means"
      f" (and per seed): {'holds on every row' if ok_all else 'FAILS on some row'}")
print(tabulate(rows, headers=headers))
# the paper's second invariant: the same ranking of methods under the three measures
means = {k: {r[0]: float(r[2 + i].split(" ")[0]) for r in rows} for i, k in enumerate(("distill", "freeze", "shuffle"))}
ranks = {k: sorted(v, key=v.get, reverse=True) for k, v in means.items()}
def tau(a, b):  # Kendall's tau between two rankings of the same methods
    pos_a, pos_b = {m: i for i, m in enumerate(a)}, {m: i for i, m in enumerate(b)}
    pairs = [(x, y) for i, x in enumerate(a) for y in a[i + 1:]]
    agree = sum((pos_a[x] - pos_a[y]) * (pos_b[x] - pos_b[y]) > 0 for x, y in pairs)
    return (2 * agree - len(pairs)) / len(pairs) if pairs else float("nan")
same = ranks["distill"] == ranks["freeze"] == ranks["shuffle"]
print(f"ranking of methods (highest first): same under the three measures: {'yes' if same else 'NO'}")
for k, r in ranks.items():
    print(f"  {k:8s} {' > '.join(r)}")
print(f"  Kendall tau: distill-freeze {tau(ranks['distill'], ranks['freeze']):.2f}, "
      f"distill-shuffle {tau(ranks['distill'], ranks['shuffle']):.2f}, "
      f"freeze-shuffle {tau(ranks['freeze'], ranks['shuffle']):.2f}")
PY
