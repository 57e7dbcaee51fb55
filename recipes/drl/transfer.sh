#!/usr/bin/env bash
# Transfer (paper Sec. 5.3, Table 3): fine-tuning of each pre-trained checkpoint on UCF-101 / HMDB-51 /
# Diving-48 with the release's per-dataset configs (configs/{ucf,hmdb,diving}), a linear probe, the
# final 10-clip test, and each dataset's static bias (distill score with labels).
#   UCF101_TRAIN=.. UCF101_TEST=.. HMDB51_TRAIN=.. HMDB51_TEST=.. DIVING48_TRAIN=.. DIVING48_TEST=.. \
#     recipes/drl/transfer.sh
# Needs recipes/drl/pretrain.sh first (same OUT and MODEL). Without paths: toy real -> toy real.
#
# Released fine-tune configs (all: SGD momentum 0.9, x0.1 every 20 epochs, dropout 0.5, colour jitter 0.4
# incl. hue, test on 10 clips):  UCF-101 25 epochs lr 1e-3 wd 1e-4 batch 128 frozen BN;
# HMDB-51 30 epochs lr 1e-3 wd 1e-3 batch 128 frozen BN;  Diving-48 (V2 labels) 50 epochs lr 1e-2 wd 1e-3 batch 32.
# (TSM: batch 32, and no frozen BN on UCF, as released.)
# The linear probe has no released config and the paper gives no schedule: LP_EPOCHS / LP_LR below are
# this toolkit's choice (the dataset's fine-tune length and learning rate, frozen backbone and BN).
source "$(dirname "$0")/common.sh"
METHODS=${METHODS:-"drl-freeze drl-fgsm"}   # besides erm, the control, always evaluated
ARMS=$(printf '%s\n' erm $METHODS | awk '!seen[$0]++')
TEST_CLIPS=${TEST_CLIPS:-10}
declare -A TRAIN=() TEST=() EP=() LRS=() WD=() BS=() FBN=()
EP=([UCF101]=25 [HMDB51]=30 [DIVING48]=50); LRS=([UCF101]=0.001 [HMDB51]=0.001 [DIVING48]=0.01)
WD=([UCF101]=1e-4 [HMDB51]=1e-3 [DIVING48]=1e-3); BS=([UCF101]=128 [HMDB51]=128 [DIVING48]=32)
FBN=([UCF101]=--freeze-bn [HMDB51]=--freeze-bn [DIVING48]=)
case $MODEL in tsm*) BS=([UCF101]=32 [HMDB51]=32 [DIVING48]=32); FBN[UCF101]=;; esac
for ds in UCF101 HMDB51 DIVING48; do
  tr="${ds}_TRAIN"; te="${ds}_TEST"
  [ -n "${!tr:-}" ] && TRAIN[$ds]=${!tr} && TEST[$ds]=${!te}
done
TOY=0; SB_ARGS=()
if [ ${#TRAIN[@]} -eq 0 ]; then
  use_toy; toy_stores "$OUT/toy"; TRAIN[TOY]=$TOY_TRAIN; TEST[TOY]=$TOY_VAL; TOY=1; TEST_CLIPS=${TOY_TEST_CLIPS:-2}
  SB_ARGS=(--student-epochs "${TOY_STUDENT_EPOCHS:-2}")
fi
mkdir -p "$OUT/transfer"
for ds in "${!TRAIN[@]}"; do
  D="$OUT/transfer/$ds"
  if [ $TOY = 1 ]; then
    FT=("${DRL[@]}"); LP=("${DRL[@]}")
  else
    FT=("${MODEL_ARGS[@]}" --optimizer sgd --momentum 0.9 --no-nesterov --schedule step --milestones 20
        --epochs "${EP[$ds]}" --lr "${LRS[$ds]}" --weight-decay "${WD[$ds]}" --batch-size "${BS[$ds]}"
        --color-jitter 0.4 --hue-jitter 0.4 ${FBN[$ds]:+"${FBN[$ds]}"})
    LP=("${MODEL_ARGS[@]}" --optimizer sgd --momentum 0.9 --no-nesterov --schedule step --milestones 20
        --epochs "${LP_EPOCHS:-${EP[$ds]}}" --lr "${LP_LR:-${LRS[$ds]}}" --weight-decay "${WD[$ds]}"
        --batch-size "${BS[$ds]}")
  fi
  S_STUDENT=(--student "$STUDENT"); case $STUDENT in test_*) S_STUDENT+=(--student-scratch);; esac
  [ -z "$STUDENT_WEIGHTS" ] || S_STUDENT+=(--student-weights "$STUDENT_WEIGHTS")
  $V score --method distill --target labels "${S_STUDENT[@]}" ${SB_ARGS[@]+"${SB_ARGS[@]}"} \
    --student-data "${TRAIN[$ds]}" --data "${TEST[$ds]}" --device "$DEVICE" --json > "$OUT/transfer/$ds.static_bias.json" \
    || echo "transfer: static bias of $ds failed (error above); going on with the transfer runs" >&2
  for M in $ARMS; do
    CK="$OUT/pretrain/$M/checkpoints/last.pt"
    finished "$D/$M/linear_probe" || $V train --data "${TRAIN[$ds]}" --val "${TEST[$ds]}" --model "$MODEL" --init "$CK" --linear-probe \
      "${LP[@]}" --seed "$SEED" --device "$DEVICE" -j "$WORKERS" -o "$D/$M/linear_probe" --resume
    finished "$D/$M/finetune" || $V train --data "${TRAIN[$ds]}" --val "${TEST[$ds]}" --model "$MODEL" --init "$CK" \
      "${FT[@]}" --seed "$SEED" --device "$DEVICE" -j "$WORKERS" -o "$D/$M/finetune" --resume
    for R in linear_probe finetune; do  # the release's final test: 10 clips per video, last epoch
      $V eval "$D/$M/$R/checkpoints/last.pt" --data "${TEST[$ds]}" --clips "$TEST_CLIPS" --device "$DEVICE" \
        -j "$WORKERS" --json > "$D/$M/$R.test_${TEST_CLIPS}clips.json"
    done
  done
done
