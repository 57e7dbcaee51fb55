#!/usr/bin/env bash
# Pre-training (paper Sec. 5.1, the release's configs/k400 + configs/drl): ERM baseline on a source dataset
# (100 epochs), then each DRL method as a 25-epoch fine-tune of it; freeze / shuffle scores on validation.
#   KINETICS_TRAIN=k400_train.h5 KINETICS_VAL=k400_val.h5 recipes/drl/pretrain.sh
#   METHODS="drl-fgsm drl-pgd drl-distill drl-freeze drl-shuffle" MODEL=tsm:resnet18 recipes/drl/pretrain.sh
# Stores: 16 fps (`vdgtool extract ... --fps 16 --size 128`, 256 for TSM); see common.sh for the settings.
# Outputs: $OUT/pretrain/{erm,<method>}/checkpoints/last.pt and $OUT/pretrain/<method>.score_{freeze,shuffle}.json
# (Distill scores and the Table 2 ordering check: recipes/drl/table2.sh.)
source "$(dirname "$0")/common.sh"
METHODS=${METHODS:-"drl-freeze drl-fgsm"}
if [ -z "${KINETICS_TRAIN:-}" ]; then
  use_toy; toy_stores "$OUT/toy"; KINETICS_TRAIN=$TOY_TRAIN; KINETICS_VAL=$TOY_VAL
fi
D="$OUT/pretrain"
finished "$D/erm" || $V train --data "$KINETICS_TRAIN" --val "$KINETICS_VAL" --model "$MODEL" --method erm "${BASE[@]}" \
  --seed "$SEED" --device "$DEVICE" -j "$WORKERS" -o "$D/erm" --resume
for M in $METHODS; do
  student_hp "$M"
  finished "$D/$M" || $V train --data "$KINETICS_TRAIN" --val "$KINETICS_VAL" --model "$MODEL" --method "$M" ${STUDENT_HP[@]+"${STUDENT_HP[@]}"} \
    --init "$D/erm/checkpoints/last.pt" "${DRL[@]}" --seed "$SEED" --device "$DEVICE" -j "$WORKERS" -o "$D/$M" --resume
done
for M in erm $METHODS; do
  for S in freeze shuffle; do   # the release's conventions (the defaults): first frame, one permutation per batch
    $V score --method "$S" "$D/$M/checkpoints/last.pt" --data "$KINETICS_VAL" --device "$DEVICE" --json \
      > "$D/$M.score_$S.json"
  done
done
echo "pre-trained checkpoints in $D" >&2
