# Shared settings of the DRL recipes (sourced). Every variable can be overridden from the environment.
# Without dataset paths the recipes fall back to the built-in toy dataset (real mp4 -> animated GIF).
#
# The paper's setting, as the release (github:JerryYLi/video-drl, configs/) runs it:
# * models: 3D ResNet-18/50 of Hara et al. (MODEL=resnet3d_18 | resnet3d_50; 16 frames at 112 px) and
#   TSM ResNet-18/50 (MODEL=tsm:resnet18 | tsm:resnet50; ImageNet init, 8 frames at 224 px);
# * 1-second clips: extract the stores at 16 fps (`vdgtool extract ... --fps 16 --size 128`, short side
#   128 px for R3D, 256 px for TSM); R3D reads 16 consecutive frames (--frame-interval 1), TSM 8
#   consecutive frames of the 8-fps sequence (--model-arg sampler=dense --frame-interval 2);
# * ImageNet normalisation; dropout 0.5; colour jitter 0.2 (brightness, contrast, saturation, hue);
#   plain SGD momentum 0.9 (--no-nesterov), weight decay 1e-4, step schedule;
# * baseline: 100 epochs, lr 0.1 (R3D) / 0.01 (TSM), x0.1 every 30 epochs, batch 64 (R3D) / 32 (TSM);
# * DRL: a 25-epoch fine-tune of the baseline at lr 0.01, x0.1 every 10 epochs; spatial student of
#   Algorithms 1 and 2 = ImageNet ResNet-18 per frame (STUDENT_WEIGHTS=FILE offline).
set -euo pipefail
OUT=${OUT:-runs/drl}
MODEL=${MODEL:-resnet3d_18}          # the paper's models: resnet3d_18, resnet3d_50, tsm:resnet18, tsm:resnet50
STUDENT=${STUDENT:-frame2d:resnet18.tv_in1k}  # the release's ImageNet ResNet-18 per frame
STUDENT_WEIGHTS=${STUDENT_WEIGHTS:-} # local ImageNet weights of the student (offline machines)
SEED=${SEED:-0}
DEVICE=${DEVICE:-auto}
WORKERS=${WORKERS:-8}
V="vdgtool"

# model_args: the per-model part of the released configs (BASE_* for the baseline, DRL_* for the fine-tune)
model_args() {
  case $MODEL in
    tsm:*|tsm)
      MODEL_ARGS=(--pretrained --model-arg sampler=dense --frame-interval 2 --model-arg dropout=0.5)
      BASE_LR=${BASE_LR:-0.01}; BATCH=${BATCH:-32};;
    *)
      MODEL_ARGS=(--frame-interval 1 --model-arg dropout=0.5)
      BASE_LR=${BASE_LR:-0.1}; BATCH=${BATCH:-64};;
  esac
  OPTIM=(--optimizer sgd --momentum 0.9 --no-nesterov --weight-decay 1e-4 --schedule step --batch-size "$BATCH"
         --color-jitter 0.2 --hue-jitter 0.2)
  BASE_EPOCHS=${BASE_EPOCHS:-100}; BASE_MILESTONES=${BASE_MILESTONES:-30,60,90}
  DRL_EPOCHS=${DRL_EPOCHS:-25}; DRL_LR=${DRL_LR:-0.01}; DRL_MILESTONES=${DRL_MILESTONES:-10,20}
  BASE=("${MODEL_ARGS[@]}" "${OPTIM[@]}" --epochs "$BASE_EPOCHS" --lr "$BASE_LR" --milestones "$BASE_MILESTONES")
  DRL=("${MODEL_ARGS[@]}" "${OPTIM[@]}" --epochs "$DRL_EPOCHS" --lr "$DRL_LR" --milestones "$DRL_MILESTONES")
}
model_args

# student_hp METHOD: the --hp flags of a method's spatial student (Algorithms 1 and 2)
student_hp() {
  case $1 in
    drl-fgsm*|drl-pgd*|drl-distill*)
      STUDENT_HP=(--hp "student=$STUDENT")
      if [ -n "$STUDENT_WEIGHTS" ]; then STUDENT_HP+=(--hp "student_weights=$STUDENT_WEIGHTS"); fi
      case $STUDENT in test_*) STUDENT_HP+=(--hp student_pretrained=false);; esac;;
    *) STUDENT_HP=();;
  esac
}

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
  BASE=(--no-flip --optimizer adamw --lr 0.001 --epochs "$EPOCHS")
  DRL=(--no-flip --optimizer adamw --lr 0.0005 --epochs "$FT_EPOCHS")
}

# finished RUN_DIR: skip its `vdgtool train ... --resume` (which refuses a finished run), so a recipe run
# again resumes where it stopped and reuses what is done
finished() { [ -f "$1/done" ]; }
