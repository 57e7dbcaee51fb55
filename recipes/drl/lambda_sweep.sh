#!/usr/bin/env bash
# Fig. 4 of the paper: the weight lambda of the dynamic term, per DRL variant, against transfer. Each
# (method, lambda) is a DRL fine-tune of the pretrain.sh baseline; its freeze / shuffle scores on the
# source validation store and a linear probe on each transfer dataset (schedule of transfer.sh).
#   KINETICS_TRAIN=.. KINETICS_VAL=.. HMDB51_TRAIN=.. HMDB51_TEST=.. recipes/drl/lambda_sweep.sh
# The paper: min-max distill fails to converge for lambda > 0.5; shuffle is worse for lambda >= 0.5;
# freeze keeps improving (up to +5 HMDB, +3 UCF, +1.5 Diving linear accuracy).
source "$(dirname "$0")/common.sh"
LAMBDAS=${LAMBDAS:-"0.1 0.25 0.5 1.0 2.0"}
SWEEP=${SWEEP:-"drl-freeze drl-shuffle drl-distill"}
if [ -z "${KINETICS_TRAIN:-}" ]; then
  use_toy; toy_stores "$OUT/toy"; KINETICS_TRAIN=$TOY_TRAIN; KINETICS_VAL=$TOY_VAL; LAMBDAS=${TOY_LAMBDAS:-"0.5 1.0"}
  SWEEP=${TOY_SWEEP:-drl-freeze}
fi
D="$OUT/pretrain"
[ -f "$D/erm/checkpoints/last.pt" ] || METHODS="" bash "$(dirname "$0")/pretrain.sh"
for M in $SWEEP; do
  for L in $LAMBDAS; do
    R="$D/${M}@lam=$L"
    student_hp "$M"
    finished "$R" || $V train --data "$KINETICS_TRAIN" --val "$KINETICS_VAL" --model "$MODEL" --method "$M" --hp "lam=$L" \
      ${STUDENT_HP[@]+"${STUDENT_HP[@]}"} --init "$D/erm/checkpoints/last.pt" "${DRL[@]}" --seed "$SEED" \
      --device "$DEVICE" -j "$WORKERS" -o "$R" --resume
    for S in freeze shuffle; do
      $V score --method "$S" "$R/checkpoints/last.pt" --data "$KINETICS_VAL" --device "$DEVICE" --json > "$R.score_$S.json"
    done
  done
done
# linear probes of every swept checkpoint: transfer.sh with these runs as its METHODS
RUNS=$(for M in $SWEEP; do for L in $LAMBDAS; do printf '%s ' "${M}@lam=$L"; done; done)
METHODS="$RUNS" bash "$(dirname "$0")/transfer.sh"
