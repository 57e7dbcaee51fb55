#!/usr/bin/env bash
# Pre-training (paper Sec. 5.1): ERM baseline on a source dataset, then DRL fine-tuned from it.
#   KINETICS_TRAIN=k400_train.h5 KINETICS_VAL=k400_val.h5 recipes/drl/pretrain.sh
#   METHODS="drl-fgsm drl-pgd drl-distill drl-freeze drl-shuffle" recipes/drl/pretrain.sh
# Outputs: $OUT/pretrain/{erm,<method>}/checkpoints/last.pt and freeze / shuffle / distill scores.
source "$(dirname "$0")/common.sh"
METHODS=${METHODS:-"drl-freeze drl-fgsm"}
EPOCHS=${EPOCHS:-45}; FT_EPOCHS=${FT_EPOCHS:-10}; LR=${LR:-0.01}; FT_LR=${FT_LR:-0.001}
if [ -z "${KINETICS_TRAIN:-}" ]; then
  use_toy; toy_stores "$OUT/toy"; KINETICS_TRAIN=$TOY_TRAIN; KINETICS_VAL=$TOY_VAL; LR=0.001; FT_LR=0.0005
fi
D="$OUT/pretrain"
$V train --data "$KINETICS_TRAIN" --val "$KINETICS_VAL" --model "$MODEL" --method erm --epochs "$EPOCHS" \
  --lr "$LR" --seed "$SEED" --device "$DEVICE" -j "$WORKERS" "${EXTRA_TRAIN[@]}" -o "$D/erm" --resume
for M in $METHODS; do
  HP=(); case $M in drl-fgsm|drl-pgd|drl-distill) HP=(--hp "student=$STUDENT");; esac
  $V train --data "$KINETICS_TRAIN" --val "$KINETICS_VAL" --model "$MODEL" --method "$M" "${HP[@]}" \
    --init "$D/erm/checkpoints/last.pt" --epochs "$FT_EPOCHS" --lr "$FT_LR" --seed "$SEED" --device "$DEVICE" \
    -j "$WORKERS" "${EXTRA_TRAIN[@]}" -o "$D/$M" --resume
done
for M in erm $METHODS; do
  for S in freeze shuffle; do
    $V score --method "$S" "$D/$M/checkpoints/last.pt" --data "$KINETICS_VAL" --device "$DEVICE" --json \
      > "$D/$M.score_$S.json"
  done
done
echo "pre-trained checkpoints in $D" >&2
