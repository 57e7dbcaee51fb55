#!/usr/bin/env bash
# Transfer (paper Sec. 5.2): linear probe and fine-tuning of each pre-trained checkpoint on
# UCF-101 / HMDB-51 / Diving-48, plus the datasets' static bias (distill score with labels).
#   UCF101_TRAIN=.. UCF101_TEST=.. HMDB51_TRAIN=.. HMDB51_TEST=.. DIVING48_TRAIN=.. DIVING48_TEST=.. \
#     recipes/drl/transfer.sh
# Needs recipes/drl/pretrain.sh first (same OUT). Without paths: toy real -> toy real.
source "$(dirname "$0")/common.sh"
METHODS=${METHODS:-"erm drl-freeze drl-fgsm"}
EPOCHS=${EPOCHS:-30}; LR=${LR:-0.001}
declare -A TRAIN=() TEST=()
for ds in UCF101 HMDB51 DIVING48; do
  tr="${ds}_TRAIN"; te="${ds}_TEST"
  [ -n "${!tr:-}" ] && TRAIN[$ds]=${!tr} && TEST[$ds]=${!te}
done
if [ ${#TRAIN[@]} -eq 0 ]; then
  use_toy; toy_stores "$OUT/toy"; TRAIN[TOY]=$TOY_TRAIN; TEST[TOY]=$TOY_VAL
fi
mkdir -p "$OUT/transfer"
for ds in "${!TRAIN[@]}"; do
  D="$OUT/transfer/$ds"
  $V score --method distill --target labels --student "$STUDENT" --data "${TRAIN[$ds]}" \
    --heldout "${TEST[$ds]}" --device "$DEVICE" --json > "$OUT/transfer/$ds.static_bias.json" \
    || echo "transfer: static bias of $ds failed (error above); going on with the transfer runs" >&2
  for M in $METHODS; do
    CK="$OUT/pretrain/$M/checkpoints/last.pt"
    $V train --data "${TRAIN[$ds]}" --val "${TEST[$ds]}" --model "$MODEL" --init "$CK" --linear-probe \
      --epochs "$EPOCHS" --lr "$LR" --seed "$SEED" --device "$DEVICE" -j "$WORKERS" "${EXTRA_TRAIN[@]}" \
      -o "$D/$M/linear_probe" --resume
    $V train --data "${TRAIN[$ds]}" --val "${TEST[$ds]}" --model "$MODEL" --init "$CK" \
      --epochs "$EPOCHS" --lr "$LR" --seed "$SEED" --device "$DEVICE" -j "$WORKERS" "${EXTRA_TRAIN[@]}" \
      -o "$D/$M/finetune" --resume
  done
done
