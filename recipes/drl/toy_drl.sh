#!/usr/bin/env bash
# ERM vs DRL on the built-in toy dataset (real mp4 with a background shortcut -> animated GIFs).
#
#   recipes/drl/toy_drl.sh [OUT]                # one seed, ERM + DRL-freeze, ~1.5 min on 2 idle cores
#   SEEDS="0 1 2" METHODS="erm-ft drl-freeze drl-freeze@lam=1.0 drl-shuffle drl-fgsm drl-distill \
#     drl-distill@lam=1.0" recipes/drl/toy_drl.sh                                     # the README table
#   (METHOD@HP=V,HP=V passes --hp flags; erm-ft = the control: ERM fine-tuned like DRL, no DRL term)
#
# Protocol (the paper's): ERM baseline, then DRL as a fine-tune from the ERM checkpoint (--init).
# Train/val split: the training store comes from `toydata --seed S`, the validation stores (real and
# animated) from an independent `toydata --seed S+1000`, so no clip is shared.
# Prints per run: freeze dynamic score on the real validation clips, accuracy on real and animated;
# then mean ± SE over seeds. Everything lands in OUT (first argument, or $OUT, default runs/toy_drl).
#
# The training runs go through `vdgtool sweep` (local launcher; specs written to OUT/erm_sweep.toml and
# OUT/drl_sweep.toml): running the recipe again skips finished runs and resumes interrupted ones;
# JOBS=2 runs two at a time. `vdgtool sweep status OUT` shows where they are.
#
# Reuse mode (recipes/quickstart.sh step 5): set TRAIN_STORE, REAL_VAL, ANIM_VAL (clip stores) and
# ERM_RUN (an ERM run directory, or its checkpoint .pt) to skip the data generation and the ERM
# training; one seed ($SEEDS, default 0), results in OUT directly (no seedS/ sub-folder).
set -euo pipefail
OUT=${1:-${OUT:-runs/toy_drl}}
SEEDS=${SEEDS:-0}
METHODS=${METHODS:-drl-freeze}
BIAS=${BIAS:-0.7}                # P(background hue = class hue) in the real domain; at 0.8 ERM mostly learns the shortcut (README)
VPC=${VPC:-32}                   # training clips per class (4 classes)
EPOCHS=${EPOCHS:-30}             # ERM epochs
FT_EPOCHS=${FT_EPOCHS:-10}       # DRL fine-tuning epochs
LR=${LR:-0.001}                  # ERM, AdamW
FT_LR=${FT_LR:-0.0005}           # DRL fine-tune, AdamW
LAM=${LAM:-}                     # λ of drl-freeze / drl-shuffle / drl-distill (empty: the method's default, 0.5)
# A METHODS entry METHOD@HP=V,HP=V adds --hp flags (overriding LAM); its results go to OUT/.../METHOD@HP=V,HP=V.
# METHODS entry erm-ft: the control, ERM continued from the ERM checkpoint with the DRL schedule (FT_EPOCHS, FT_LR).
MODEL=${MODEL:-test_c3d}
STUDENT=${STUDENT:-test_frame2d} # spatial student of drl-fgsm / drl-pgd / drl-distill (from scratch: no ImageNet weights)
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS
V="vdgtool -q"
COMMON=(--model "$MODEL" --optimizer adamw --batch-size 16 --no-flip --scale-min 0.6 --workers 0)
# --no-flip: the classes are motion directions, a horizontal flip would swap move_left / move_right.

REUSE=0
if [ -n "${TRAIN_STORE:-}${REAL_VAL:-}${ANIM_VAL:-}${ERM_RUN:-}" ]; then
  for v in TRAIN_STORE REAL_VAL ANIM_VAL ERM_RUN; do
    [ -n "${!v:-}" ] || { echo "toy_drl.sh: reuse mode needs TRAIN_STORE, REAL_VAL, ANIM_VAL and ERM_RUN ($v unset)" >&2; exit 2; }
  done
  set -- $SEEDS
  [ $# -eq 1 ] || { echo "toy_drl.sh: reuse mode runs one seed (SEEDS=$SEEDS)" >&2; exit 2; }
  REUSE=1
fi

q() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }   # a TOML string
COMMON_TOML="model = $(q "$MODEL")
optimizer = \"adamw\"
batch-size = 16
no-flip = true
scale-min = 0.6
workers = 0"
SEED_LIST="[$(echo $SEEDS | sed 's/ /, /g')]"
SWEEP=(vdgtool sweep --jobs "${JOBS:-1}")   # JOBS=2: two runs at a time (one per GPU when there are GPUs)
spec_head() {   # the part every sweep spec of this recipe shares; $1 = comment, then EPOCHS LR
  echo "# written by recipes/drl/toy_drl.sh: $1"
  echo "seeds = $SEED_LIST"
  echo "run_name = $RUN_NAME"
  echo "[train]"
  echo "data = $DATA"
  echo "val = $VALS"
  echo "$COMMON_TOML"
  echo "epochs = $2"
  echo "lr = $3"
}

mkdir -p "$OUT"
if [ $REUSE = 1 ]; then
  case $ERM_RUN in *.pt) ERM_CK="$ERM_RUN";; *) ERM_CK="$ERM_RUN/checkpoints/last.pt";; esac
  [ -f "$ERM_CK" ] || { echo "toy_drl.sh: no ERM checkpoint $ERM_CK" >&2; exit 1; }
  DATA=$(q "$TRAIN_STORE"); VALS="[$(q "$REAL_VAL"), $(q "$ANIM_VAL")]"; INIT=$(q "$ERM_CK"); RUN_NAME='"{arm}"'
else
  for S in $SEEDS; do   # the data of each seed (the training runs go through vdgtool sweep below)
    D="$OUT/seed$S"
    mkdir -p "$D"
    if [ ! -f "$D/animated_val.h5" ]; then
      $V toydata "$D/train" --seed "$S" --bias "$BIAS" --videos-per-class "$VPC" --overwrite >/dev/null
      $V toydata "$D/val" --seed $((S + 1000)) --bias "$BIAS" --videos-per-class 16 --overwrite >/dev/null
      $V extract "$D/train/real" -o "$D/real_train.h5" --size 64 --encoding raw --overwrite >/dev/null
      $V extract "$D/val/real" -o "$D/real_val.h5" --size 64 --encoding raw --overwrite >/dev/null
      $V extract "$D/val/animated" -o "$D/animated_val.h5" --size 64 --encoding raw --overwrite >/dev/null
    fi
  done
  DATA=$(q "$OUT/seed{seed}/real_train.h5")
  VALS="[$(q "$OUT/seed{seed}/real_val.h5"), $(q "$OUT/seed{seed}/animated_val.h5")]"
  INIT=$(q "$OUT/seed{seed}/erm/checkpoints/last.pt"); RUN_NAME='"seed{seed}/{arm}"'
  # stage 1: the ERM baseline of every seed
  {
    spec_head "ERM on the real domain, one run per seed" "$EPOCHS" "$LR"
    echo "[[arms]]"
    echo 'name = "erm"'
    echo 'method = "erm"'
  } > "$OUT/erm_sweep.toml"
  echo "toy_drl: ERM ($EPOCHS epochs), seeds $SEEDS" >&2
  "${SWEEP[@]}" "$OUT/erm_sweep.toml" -o "$OUT" >&2
fi

# stage 2: every DRL arm (and the erm-ft control) as a fine-tune of its seed's ERM checkpoint
{
  spec_head "fine-tunes from the ERM checkpoint of the same seed" "$FT_EPOCHS" "$FT_LR"
  echo "init = $INIT"
  for M in $METHODS; do
    METHOD=${M%%@*}; EXTRA=""; [ "$METHOD" = "$M" ] || EXTRA=${M#*@}
    [ "$METHOD" != erm-ft ] || METHOD=erm
    HP=()
    case $METHOD in drl-fgsm|drl-pgd|drl-distill) HP+=("student = $(q "$STUDENT")" 'student_pretrained = "false"');; esac
    case $METHOD in drl-freeze|drl-shuffle|drl-distill) [ -z "$LAM" ] || HP+=("lam = $(q "$LAM")");; esac
    IFS=, read -r -a XS <<< "$EXTRA"
    for X in ${XS[@]+"${XS[@]}"}; do HP+=("${X%%=*} = $(q "${X#*=}")"); done
    echo "[[arms]]"
    echo "name = $(q "$M")"
    echo "method = $(q "$METHOD")"
    if [ ${#HP[@]} -gt 0 ]; then (IFS=,; echo "hp = {${HP[*]}}"); fi
  done
} > "$OUT/drl_sweep.toml"
echo "toy_drl: fine-tunes ($FT_EPOCHS epochs): $METHODS" >&2
"${SWEEP[@]}" "$OUT/drl_sweep.toml" -o "$OUT" >&2

for S in $SEEDS; do   # freeze score and accuracy of the last-epoch checkpoint of every run
  if [ $REUSE = 1 ]; then D="$OUT"; RV="$REAL_VAL"; AV="$ANIM_VAL"
  else D="$OUT/seed$S"; RV="$D/real_val.h5"; AV="$D/animated_val.h5"; ERM_CK="$D/erm/checkpoints/last.pt"; fi
  for M in erm $METHODS; do
    CK="$ERM_CK"
    [ "$M" = erm ] || CK="$D/$M/checkpoints/last.pt"    # last epoch: no target-domain model selection
    $V score --method freeze "$CK" --data "$RV" --seed "$S" --json > "$D/$M.score_real.json"
    $V score --method freeze "$CK" --data "$AV" --seed "$S" --json > "$D/$M.score_animated.json"
  done
done

python - "$OUT" "$SEEDS" "erm $METHODS" "$REUSE" <<'PY'
import json, math, sys
out, seeds, methods, reuse = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4] == "1"
from tabulate import tabulate
def ms(v):
    m = sum(v) / len(v)
    se = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v)) if len(v) > 1 else float("nan")
    return f"{m:.4f} ± {se:.4f}" if len(v) > 1 else f"{m:.4f}"
def d(s):
    return out if reuse else f"{out}/seed{s}"
res = {m: ([json.load(open(f"{d(s)}/{m}.score_real.json")) for s in seeds],
           [json.load(open(f"{d(s)}/{m}.score_animated.json")) for s in seeds]) for m in methods}
ctl = "erm-ft" if "erm-ft" in methods else None   # the control arm: paired per-seed differences against it
rows = []
for m in methods:
    r, a = res[m]
    row = [m, ms([x["score"] for x in r]), ms([x["acc_video"] for x in r]), ms([x["acc_video"] for x in a])]
    if ctl:
        cr, ca = res[ctl]
        row += ["", ""] if m in ("erm", ctl) else [
            ms([x["score"] - y["score"] for x, y in zip(r, cr)]),
            ms([x["acc_video"] - y["acc_video"] for x, y in zip(a, ca)])]
    rows.append(row)
print(f"seeds: {' '.join(seeds)} ({'mean ± SE; ' if len(seeds) > 1 else ''}last-epoch checkpoints"
      f"{'; Δ = paired per-seed difference to the erm-ft control' if ctl else ''})")
headers = ["method", "freeze score (real val, nats)", "real acc", "animated acc"]
print(tabulate(rows, headers=headers + (["Δ freeze vs erm-ft", "Δ animated vs erm-ft"] if ctl else [])))
PY
