#!/usr/bin/env bash
# Image-to-video adaptation, the RGB-only arm (SO(RGB)) of recipes/i2v/run.py: labelled still images ->
# `synth-video --preset mm2024` (depth-based camera motion) -> `train --method erm` on the synthetic videos ->
# `eval` on the target videos. The full method (CFB + pace) and its ablations are the other arms of the
# same pipeline: python recipes/i2v/run.py OUT (recipes/i2v/README.md).
# Usage: bash recipes/image_to_video.sh [OUT_DIR]
#   IMAGES=stanford40.csv (ROOT/<class>/<image> or a manifest) TARGET=ucf_target.csv (video manifest)
#   BENCH=s2u|e2h|b2u (settings from recipes/i2v/benchmarks.toml)  DEPTH=none | DIR_OF_MIDAS_MAPS | a depth model
#   WEIGHTS=rgb_imagenet.pt  DEVICE=cuda
# Without IMAGES/TARGET it runs on the image-to-video toy (toydata --kind image-to-video); EPOCHS and VPC
# (stills / videos per class) shorten it.
set -euo pipefail
OUT=${1:-demo_out/image_to_video}
ARGS=(--arms rgb_only --seeds "${SEEDS:-0}" --device "${DEVICE:-auto}")
[ -n "${EPOCHS:-}" ] && ARGS+=(--epochs "$EPOCHS" --warm-epochs 0)
[ -n "${VPC:-}" ] && ARGS+=(--videos-per-class "$VPC")
if [ -n "${IMAGES:-}" ]; then
  ARGS+=(--benchmark "${BENCH:-s2u}" --images "$IMAGES" --pool "$TARGET" --depth "${DEPTH:-none}")
  [ -n "${WEIGHTS:-}" ] && ARGS+=(--weights "$WEIGHTS")
fi
exec python "$(dirname "$0")/i2v/run.py" "$OUT" "${ARGS[@]}"
