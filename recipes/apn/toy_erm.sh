#!/usr/bin/env bash
# ERM baselines on the temporal-shift toy (`vdgtool toydata --kind temporal`): TSN vs TRN vs APN.
#
#   recipes/apn/toy_erm.sh [OUT]                         # seeds 0 1, arms tsn trn apn-global apn
#   SEEDS="0 1 2 3 4" ARMS="tsn trn apn apn-comb" recipes/apn/toy_erm.sh runs/apn_toy
#
# Per seed S: `toydata --kind temporal --seed S` (source train/val; control, onset, tempo, absence
# targets, each with a val and a test split), one clip store per split, then one ERM run per arm with
# every split as a --val store. The table (recipes/apn/toy_table.py) reports each target's test
# accuracy under two model-selection rules: `val` (best source_val epoch, the paper's protocol) and
# `oracle` (best <target>_val epoch, what the released APN code does with the target test set).
# Arms: tsn (test_tsn), trn (test_trn), apn (test_apn: consecutive subsets, paper), apn-comb (test_apn,
# subsets=combinations, released code), apn-global (test_apn, level=global: h(R^I_Global) only).
# ARM@KEY=VALUE,... adds model options (e.g. apn@frame_dropout=0.5,padding_masks=false); its runs go to
# OUT/seed<S>/<ARM@...>. All use M = 5 segments, 32 px, AdamW; about 1-1.5 min per run on one idle core.
set -euo pipefail
OUT=${1:-${OUT:-runs/apn_toy_erm}}
SEEDS=${SEEDS:-"0 1"}
ARMS=${ARMS:-"tsn trn apn-global apn"}
VPC=${VPC:-24}          # source training clips per class (4 classes); val/test splits scale with it
EPOCHS=${EPOCHS:-15}
LR=${LR:-0.002}
SIZE=${SIZE:-32}
FRAMES=${FRAMES:-16}    # raw frames per clip; the models sample M = 5 segments
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS
V="vdgtool -q"
SPLITS="source_train source_val control_val control_test onset_val onset_test tempo_val tempo_test absence_val absence_test"

arm_model() {  # ARM[@KEY=VALUE,KEY=VALUE] -> model and model arguments (@... adds --model-arg flags)
  local base=${1%%@*} extra=""
  [ "$base" = "$1" ] || extra=${1#*@}
  case $base in
    tsn) echo -n "test_tsn";;
    trn) echo -n "test_trn";;
    apn) echo -n "test_apn";;
    apn-comb) echo -n "test_apn --model-arg subsets=combinations";;
    apn-global) echo -n "test_apn --model-arg level=global";;
    *) echo "toy_erm.sh: unknown arm $1 (tsn trn apn apn-comb apn-global, optionally @KEY=VALUE,...)" >&2; exit 2;;
  esac
  local kv
  for kv in ${extra//,/ }; do echo -n " --model-arg $kv"; done
  echo
}

mkdir -p "$OUT"
for S in $SEEDS; do
  D="$OUT/seed$S"
  mkdir -p "$D"
  if [ ! -f "$D/absence_test.h5" ]; then
    $V toydata "$D/toy" --kind temporal --size "$SIZE" --frames "$FRAMES" --videos-per-class "$VPC" \
      --seed "$S" --overwrite >/dev/null
    for N in $SPLITS; do
      $V extract "$D/toy/$N.csv" -o "$D/$N.h5" --size "$SIZE" --encoding raw --overwrite >/dev/null
    done
  fi
  VALS=()
  for N in $SPLITS; do [ "$N" = source_train ] || VALS+=(--val "$D/$N.h5"); done
  for A in $ARMS; do
    [ -f "$D/$A/done" ] && continue
    echo "toy_erm: seed $S: $A" >&2
    # --no-flip keeps each shape's direction of travel; --scale-min 0.7 keeps the object in the crop
    $V train --data "$D/source_train.h5" "${VALS[@]}" --model $(arm_model "$A") --num-frames 5 --method erm \
      --epochs "$EPOCHS" --batch-size 16 --optimizer adamw --lr "$LR" --no-flip --scale-min 0.7 --workers 0 \
      --seed "$S" -o "$D/$A" --overwrite --json >/dev/null
  done
done
python "$(dirname "$0")/toy_table.py" "$OUT" --seeds $SEEDS --arms $ARMS
