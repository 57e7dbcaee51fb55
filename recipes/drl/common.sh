# Shared settings of the DRL recipes (sourced). Every variable can be overridden from the environment.
# Without dataset paths the recipes fall back to the built-in toy dataset (real mp4 -> animated GIF).
set -euo pipefail
OUT=${OUT:-runs/drl}
MODEL=${MODEL:-r2plus1d_18}          # paper: R(2+1)D-18, I3D, TSM-R50 ...
STUDENT=${STUDENT:-frame2d:resnet50} # spatial student (paper: ImageNet ResNet-50 per frame)
SEED=${SEED:-0}
DEVICE=${DEVICE:-auto}
WORKERS=${WORKERS:-8}
V="vdgtool"

# toy_stores DIR: build toy train/val stores in DIR (once) and set TOY_TRAIN, TOY_VAL, TOY_TARGET
toy_stores() {
  local d=$1
  mkdir -p "$d"
  if [ ! -f "$d/real_train.h5" ]; then
    $V -q toydata "$d/train" --seed "$SEED" --videos-per-class 32 --overwrite >/dev/null
    $V -q toydata "$d/val" --seed $((SEED + 1000)) --videos-per-class 8 --overwrite >/dev/null
    $V -q extract "$d/train/real" -o "$d/real_train.h5" --size 64 --encoding raw --overwrite >/dev/null
    $V -q extract "$d/val/real" -o "$d/real_val.h5" --size 64 --encoding raw --overwrite >/dev/null
    $V -q extract "$d/val/animated" -o "$d/animated_val.h5" --size 64 --encoding raw --overwrite >/dev/null
  fi
  TOY_TRAIN="$d/real_train.h5"; TOY_VAL="$d/real_val.h5"; TOY_TARGET="$d/animated_val.h5"
}

# use_toy: small model / student / schedule so a toy run finishes in minutes on a CPU
use_toy() {
  echo "recipes/drl: no dataset path given, running on the built-in toy dataset" >&2
  MODEL=test_c3d; STUDENT=test_frame2d; WORKERS=0
  EPOCHS=${TOY_EPOCHS:-5}; FT_EPOCHS=${TOY_FT_EPOCHS:-2}
  EXTRA_TRAIN=(--no-flip --optimizer adamw --lr 0.001)
}
EXTRA_TRAIN=()
