#!/usr/bin/env bash
# Few-shot (paper Sec. 5.3, Table 4; the release's configs/{sthv2,jester}-fs and models/fsl.py):
# 5-way 1-shot and 5-shot, 1000 episodes of 5 queries per class on the *validation* split with all its
# classes; frozen pooled features of each pre-trained checkpoint (frozen BN, no fine-tuning); every clip
# of a support video is its own training example of a new linear classifier (nn.Linear, SGD lr 0.01,
# momentum / dampening 0.9, wd 1e-3, 100 epochs of mini-batches of 4); a query's logits are averaged over
# its clips. R3D: Jester 10 clips of 16 frames at 12 fps (extract the store with --fps 12), SSv2 8 views
# (the release: 8 sparse views of 16 frames spread over the video; here 8 dense clips, see docs/drl.md).
#   SSV2_VAL=ssv2_val.h5 JESTER_VAL=jester_val.h5 recipes/drl/fewshot.sh
# All checkpoints are evaluated on the same episode files.
source "$(dirname "$0")/common.sh"
METHODS=${METHODS:-"drl-freeze drl-fgsm"}   # besides erm, the control, always evaluated
ARMS=$(printf '%s\n' erm $METHODS | awk '!seen[$0]++')
EPISODES=${EPISODES:-1000}; WAYS=${WAYS:-5}; QUERIES=${QUERIES:-5}
declare -A TEST=() CLIPS=([SSV2]=${SSV2_CLIPS:-8} [JESTER]=${JESTER_CLIPS:-10})
[ -n "${SSV2_VAL:-${SSV2_TEST:-}}" ] && TEST[SSV2]=${SSV2_VAL:-$SSV2_TEST}
[ -n "${JESTER_VAL:-${JESTER_TEST:-}}" ] && TEST[JESTER]=${JESTER_VAL:-$JESTER_TEST}
if [ ${#TEST[@]} -eq 0 ]; then use_toy; toy_stores "$OUT/toy"; TEST[TOY]=$TOY_TARGET; EPISODES=${TOY_EPISODES:-20}
  WAYS=4; QUERIES=3; CLIPS[TOY]=2   # the toy set has 4 classes and 8 clips per class
fi
mkdir -p "$OUT/fewshot"
for ds in "${!TEST[@]}"; do
  for K in 1 5; do
    for M in $ARMS; do
      # the first method writes the episode file, the others reuse it: every model sees the same episodes
      $V eval "$OUT/pretrain/$M/checkpoints/last.pt" --data "${TEST[$ds]}" --few-shot --ways "$WAYS" --shots "$K" \
        --queries "$QUERIES" --episodes "$EPISODES" --clips "${CLIPS[$ds]}" \
        --episodes-file "$OUT/fewshot/${ds}_${K}shot_episodes.json" \
        --seed "$SEED" --device "$DEVICE" --json > "$OUT/fewshot/${ds}_${K}shot_$M.json"
    done
  done
done
