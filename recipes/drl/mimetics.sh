#!/usr/bin/env bash
# Domain generalisation Kinetics -> Mimetics, 10 classes (paper Sec. 5.4): train on the Kinetics
# clips of the 10 shared classes, select on Kinetics validation (never on Mimetics), test on Mimetics.
#   K10_TRAIN=k400_10cls_train.h5 K10_VAL=k400_10cls_val.h5 MIMETICS10=mimetics_10cls.h5 recipes/drl/mimetics.sh
# Classes are aligned by name between the stores. Without paths: toy real -> toy animated.
source "$(dirname "$0")/common.sh"
METHODS=${METHODS:-"drl-freeze drl-shuffle drl-fgsm drl-distill"}
EPOCHS=${EPOCHS:-30}; FT_EPOCHS=${FT_EPOCHS:-10}; LR=${LR:-0.001}; FT_LR=${FT_LR:-0.0005}
if [ -z "${K10_TRAIN:-}" ]; then
  use_toy; toy_stores "$OUT/toy"; K10_TRAIN=$TOY_TRAIN; K10_VAL=$TOY_VAL; MIMETICS10=$TOY_TARGET
fi
D="$OUT/mimetics/seed$SEED"
$V train --data "$K10_TRAIN" --val "$K10_VAL" --val "$MIMETICS10" --model "$MODEL" --epochs "$EPOCHS" --lr "$LR" \
  --seed "$SEED" --device "$DEVICE" -j "$WORKERS" "${EXTRA_TRAIN[@]}" -o "$D/erm" --resume
for M in $METHODS; do
  HP=(); case $M in drl-fgsm|drl-pgd|drl-distill) HP=(--hp "student=$STUDENT");; esac
  $V train --data "$K10_TRAIN" --val "$K10_VAL" --val "$MIMETICS10" --model "$MODEL" --method "$M" "${HP[@]}" \
    --init "$D/erm/checkpoints/last.pt" --epochs "$FT_EPOCHS" --lr "$FT_LR" --seed "$SEED" --device "$DEVICE" \
    -j "$WORKERS" "${EXTRA_TRAIN[@]}" -o "$D/$M" --resume
done
for M in erm $METHODS; do
  $V score --method freeze "$D/$M/checkpoints/best.pt" --data "$MIMETICS10" --device "$DEVICE" --json \
    > "$D/$M.score_mimetics.json"
done
