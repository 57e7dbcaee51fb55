#!/usr/bin/env bash
# ERM vs DRL on the built-in toy dataset (real mp4 with a background shortcut -> animated GIFs).
#
#   recipes/drl/toy_drl.sh                      # one seed, ERM + DRL-freeze, a few minutes on 2 cores
#   SEEDS="0 1 2" METHODS="drl-freeze drl-shuffle drl-fgsm" recipes/drl/toy_drl.sh   # the README table
#
# Protocol (the paper's): ERM baseline, then DRL as a fine-tune from the ERM checkpoint (--init).
# Train/val split: the training store comes from `toydata --seed S`, the validation stores (real and
# animated) from an independent `toydata --seed S+1000`, so no clip is shared.
# Prints per run: freeze dynamic score on the real validation clips, accuracy on real and animated;
# then mean ± SE over seeds. Everything lands in $OUT.
set -euo pipefail
OUT=${OUT:-runs/toy_drl}
SEEDS=${SEEDS:-0}
METHODS=${METHODS:-drl-freeze}
BIAS=${BIAS:-0.6}                # P(background hue = class hue) in the real training domain
VPC=${VPC:-64}                   # training clips per class
EPOCHS=${EPOCHS:-15}             # ERM epochs
FT_EPOCHS=${FT_EPOCHS:-5}        # DRL fine-tuning epochs
LR=${LR:-0.001}
FT_LR=${FT_LR:-0.0005}
MODEL=${MODEL:-test_c3d}
STUDENT=${STUDENT:-test_frame2d} # spatial student of drl-fgsm / drl-pgd / drl-distill
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS
V="vdgtool -q"
COMMON=(--model "$MODEL" --optimizer adamw --batch-size 16 --no-flip --scale-min 0.6 --workers 0)
# --no-flip: the classes are motion directions, a horizontal flip would swap move_left / move_right.

mkdir -p "$OUT"
for S in $SEEDS; do
  D="$OUT/seed$S"
  mkdir -p "$D"
  if [ ! -f "$D/real_train.h5" ]; then
    $V toydata "$D/train" --seed "$S" --bias "$BIAS" --videos-per-class "$VPC" --overwrite >/dev/null
    $V toydata "$D/val" --seed $((S + 1000)) --bias "$BIAS" --videos-per-class 16 --overwrite >/dev/null
    $V extract "$D/train/real" -o "$D/real_train.h5" --size 64 --encoding raw --overwrite >/dev/null
    $V extract "$D/val/real" -o "$D/real_val.h5" --size 64 --encoding raw --overwrite >/dev/null
    $V extract "$D/val/animated" -o "$D/animated_val.h5" --size 64 --encoding raw --overwrite >/dev/null
  fi
  VAL=(--val "$D/real_val.h5" --val "$D/animated_val.h5")
  if [ ! -f "$D/erm/done" ]; then
    $V train --data "$D/real_train.h5" "${VAL[@]}" "${COMMON[@]}" --method erm --epochs "$EPOCHS" --lr "$LR" \
      --seed "$S" -o "$D/erm" --overwrite --json >/dev/null
  fi
  for M in erm $METHODS; do
    if [ "$M" != erm ] && [ ! -f "$D/$M/done" ]; then
      HP=()
      case $M in drl-fgsm|drl-pgd|drl-distill) HP=(--hp "student=$STUDENT");; esac
      $V train --data "$D/real_train.h5" "${VAL[@]}" "${COMMON[@]}" --method "$M" "${HP[@]}" \
        --init "$D/erm/checkpoints/last.pt" --epochs "$FT_EPOCHS" --lr "$FT_LR" --seed "$S" -o "$D/$M" \
        --overwrite --json >/dev/null
    fi
    CK="$D/$M/checkpoints/last.pt"    # last epoch: no target-domain model selection
    $V score --method freeze "$CK" --data "$D/real_val.h5" --seed "$S" --json > "$D/$M.score_real.json"
    $V score --method freeze "$CK" --data "$D/animated_val.h5" --seed "$S" --json > "$D/$M.score_animated.json"
  done
done

python - "$OUT" "$SEEDS" "erm $METHODS" <<'PY'
import json, math, sys
out, seeds, methods = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
from tabulate import tabulate
def ms(v):
    m = sum(v) / len(v)
    se = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v)) if len(v) > 1 else float("nan")
    return f"{m:.4f} ± {se:.4f}" if len(v) > 1 else f"{m:.4f}"
rows = []
for m in methods:
    r = [json.load(open(f"{out}/seed{s}/{m}.score_real.json")) for s in seeds]
    a = [json.load(open(f"{out}/seed{s}/{m}.score_animated.json")) for s in seeds]
    rows.append((m, ms([x["score"] for x in r]), ms([x["acc_video"] for x in r]), ms([x["acc_video"] for x in a])))
print(f"seeds: {' '.join(seeds)} (mean ± SE; last-epoch checkpoints)")
print(tabulate(rows, headers=("method", "freeze score (real val, nats)", "real acc", "animated acc")))
PY
