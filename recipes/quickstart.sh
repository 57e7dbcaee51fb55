#!/usr/bin/env bash
# vdgtool quickstart: the whole pipeline on the built-in two-domain toy dataset, on a CPU in a few minutes.
#   toydata -> extract -> store info -> train (ERM) -> eval on real and animated -> DRL (recipes/drl/toy_drl.sh)
# Usage: bash recipes/quickstart.sh [OUT_DIR]      (default: ./demo_out; set SEED=1 for another seed)
set -euo pipefail
OUT=${1:-demo_out}
SEED=${SEED:-0}
EPOCHS=${EPOCHS:-30}
BIAS=${BIAS:-0.7}   # P(background hue = class hue) in the real domain: at 0.8 ERM tends to learn the shortcut only
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

echo "== 1. toy dataset: real (mp4, background shortcut) vs animated (GIF, none)" >&2
vdgtool toydata "$OUT/toy" --seed "$SEED" --bias "$BIAS" --overwrite
vdgtool toydata "$OUT/toy_test" --seed $((SEED + 1000)) --bias "$BIAS" --videos-per-class 16 --overwrite

echo "== 2. extract clip stores" >&2
vdgtool -q extract "$OUT/toy/real" -o "$OUT/real_train.h5" --size 64 --encoding raw --overwrite
vdgtool -q extract "$OUT/toy_test/real" -o "$OUT/real_test.h5" --size 64 --encoding raw --overwrite
vdgtool -q extract "$OUT/toy_test/animated.csv" -o "$OUT/animated_test.h5" --size 64 --encoding raw --overwrite
vdgtool store info "$OUT/real_train.h5"

echo "== 3. train ERM on the real domain (test_c3d, $EPOCHS epochs)" >&2
vdgtool train --data "$OUT/real_train.h5" --val "$OUT/real_test.h5" --val "$OUT/animated_test.h5" \
  --model test_c3d --method erm --epochs "$EPOCHS" --batch-size 16 --optimizer adamw --lr 0.001 \
  --no-flip --scale-min 0.6 --seed "$SEED" -o "$OUT/runs/erm" --overwrite
# --no-flip: the toy classes are motion directions; a horizontal flip would swap move_left and move_right

echo "== 4. evaluate on both domains" >&2
vdgtool eval "$OUT/runs/erm" --data "$OUT/real_test.h5" --data "$OUT/animated_test.h5" \
  -o "$OUT/erm_predictions.h5" --overwrite

if [ -f "$(dirname "$0")/drl/toy_drl.sh" ]; then
  echo "== 5. DRL-freeze fine-tuned from the ERM run; freeze dynamic score and accuracy, ERM vs DRL" >&2
  # reuses the stores and the ERM run above (no second ERM training); results in $OUT/drl
  TRAIN_STORE="$OUT/real_train.h5" REAL_VAL="$OUT/real_test.h5" ANIM_VAL="$OUT/animated_test.h5" \
    ERM_RUN="$OUT/runs/erm" SEEDS="$SEED" METHODS=drl-freeze \
    bash "$(dirname "$0")/drl/toy_drl.sh" "$OUT/drl"
fi
echo "quickstart finished: outputs in $OUT" >&2
