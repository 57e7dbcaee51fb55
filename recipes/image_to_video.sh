#!/usr/bin/env bash
# Image-to-video adaptation, source side (MM 2024 "CFB" / Depthstillation): labelled still images become
# synthetic videos by depth-based camera motion, a video model is trained on them and tested on real videos.
#   synth-video (depth) and synth-video --mode crop2d (2-D baseline) -> train -> eval on the video target
# Usage: bash recipes/image_to_video.sh [OUT_DIR]
#   IMAGES=stanford40/ (ROOT/<class>/<image> or CSV)  TARGET=ucf101_subset/ (videos, same class names)
#   DEPTH=none | DIR_OF_MIDAS_MAPS | a transformers depth model (e.g. LiheYoung/depth-anything-small-hf)
# Without IMAGES/TARGET it runs on stills cut from the toy dataset: the plumbing is real, but toy classes are
# motion directions that no still image shows, so expect chance accuracy there.
set -euo pipefail
OUT=${1:-demo_out/image_to_video}
SEED=${SEED:-0}
EPOCHS=${EPOCHS:-4}
DEPTH=${DEPTH:-none}
SIZE=${SIZE:-64}
MODEL=${MODEL:-test_c3d}
mkdir -p "$OUT"
if [ -z "${IMAGES:-}" ]; then
  vdgtool toydata "$OUT/toy" --seed "$SEED" --videos-per-class 6 --overwrite
  python - "$OUT" <<'PY'
import os, sys
import cv2
from vdgtool.video.decode import decode
out = sys.argv[1]
for cls in sorted(os.listdir(f"{out}/toy/real")):
    os.makedirs(f"{out}/images/{cls}", exist_ok=True)
    for name in sorted(os.listdir(f"{out}/toy/real/{cls}")):
        frames, _ = decode(f"{out}/toy/real/{cls}/{name}")
        cv2.imwrite(f"{out}/images/{cls}/{os.path.splitext(name)[0]}.png", frames[0][..., ::-1])
PY
  IMAGES="$OUT/images"; TARGET="$OUT/toy/animated"
fi
vdgtool synth-video "$IMAGES" -o "$OUT/synth_depth.h5" --depth "$DEPTH" --preset mm2024 --size "$SIZE" \
  --frames 16 --save-flow --seed "$SEED" --overwrite
vdgtool synth-video "$IMAGES" -o "$OUT/synth_crop2d.h5" --mode crop2d --size "$SIZE" --frames 16 --seed "$SEED" \
  --overwrite
vdgtool -q extract "$TARGET" -o "$OUT/target.h5" --size "$SIZE" --encoding raw --overwrite
for kind in depth crop2d; do
  vdgtool train --data "$OUT/synth_$kind.h5" --val "$OUT/target.h5" --model "$MODEL" --epochs "$EPOCHS" \
    --lr 0.05 --seed "$SEED" -o "$OUT/runs/$kind" --overwrite
done
vdgtool collect "$OUT/runs/depth" "$OUT/runs/crop2d" --select last --group-by data
