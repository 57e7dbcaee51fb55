#!/usr/bin/env bash
# Few-shot (paper Sec. 5.3): 5-way 1-shot and 5-shot episodes on Something-Something v2 and Jester,
# frozen features of each pre-trained checkpoint, a new linear classifier per episode ("Baseline").
#   SSV2_TEST=ssv2_fewshot_test.h5 JESTER_TEST=jester_fewshot_test.h5 recipes/drl/fewshot.sh
# All checkpoints are evaluated on the same episode files.
source "$(dirname "$0")/common.sh"
METHODS=${METHODS:-"erm drl-freeze drl-fgsm"}
EPISODES=${EPISODES:-600}; WAYS=${WAYS:-5}; QUERIES=${QUERIES:-15}
declare -A TEST=()
[ -n "${SSV2_TEST:-}" ] && TEST[SSV2]=$SSV2_TEST
[ -n "${JESTER_TEST:-}" ] && TEST[JESTER]=$JESTER_TEST
if [ ${#TEST[@]} -eq 0 ]; then use_toy; toy_stores "$OUT/toy"; TEST[TOY]=$TOY_TARGET; EPISODES=${TOY_EPISODES:-20}
  WAYS=4; QUERIES=3   # the toy set has 4 classes and 8 clips per class
fi
mkdir -p "$OUT/fewshot"
for ds in "${!TEST[@]}"; do
  for K in 1 5; do
    for M in $METHODS; do
      # the first method writes the episode file, the others reuse it: every model sees the same episodes
      $V eval "$OUT/pretrain/$M/checkpoints/last.pt" --data "${TEST[$ds]}" --few-shot --ways "$WAYS" --shots "$K" \
        --queries "$QUERIES" --episodes "$EPISODES" --episodes-file "$OUT/fewshot/${ds}_${K}shot_episodes.json" \
        --seed "$SEED" --device "$DEVICE" --json > "$OUT/fewshot/${ds}_${K}shot_$M.json"
    done
  done
done
