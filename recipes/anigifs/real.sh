#!/usr/bin/env bash
# Ani-GIFs on real data (spec §1.2): real (Kinetics-600) <-> animated (cleaned GIFs), I3D 64 x 224 from
# pytorch-i3d rgb_imagenet.pt. Without the real data it runs the toy fallback (TOY=1, or when GIFS is unset):
# recipes/anigifs/toy_evidence.py, the README table.
#
#   GIFS=anigifs/ K600_TRAIN=k600/train K600_VAL=k600/val I3D=rgb_imagenet.pt K400_LABELS=label_map.txt \
#     recipes/anigifs/real.sh [OUT]                          # B0, B1, B2, oracles, ERM / RDA / augsearch / pseudolabel
#   SEEDS="0 1 2" DIRECTIONS="real2anim anim2real" ...       # defaults
#   TOY=1 recipes/anigifs/real.sh runs/anigifs_toy           # the toy fallback (a few CPU minutes per seed)
#
# Protocol: classes with >= N_MIN (10) cleaned GIFs; GIF near-duplicates removed before the seeded 60/20/20
# split; real_val = stratified 5 % of K600 train, real_test = K600 val; both domains decoded at FPS (25) with
# short side 256 (GIFs by their frame durations). Model selection on the SOURCE validation split only
# (best.pt on the first --val store); the other --val stores are only reported. Short GIFs loop
# (--out-of-bound loop); OOB=repeat_last gives the padding ablation. Pseudo-labelling uses the target's
# *train* split as the pool and its test split for testing: inductive.
set -euo pipefail
OUT=${1:-${OUT:-runs/anigifs}}
HERE=$(cd "$(dirname "$0")" && pwd)
if [ "${TOY:-0}" = 1 ] || [ -z "${GIFS:-}" ]; then
  echo "anigifs: no GIFS/K600_TRAIN/K600_VAL given: running the toy fallback into $OUT" >&2
  exec python "$HERE/toy_evidence.py" "$OUT" ${SEEDS:+--seeds $SEEDS}
fi
for v in GIFS K600_TRAIN K600_VAL I3D; do [ -n "${!v:-}" ] || { echo "anigifs: $v is not set" >&2; exit 2; }; done
SEEDS=${SEEDS:-0 1 2}
DIRECTIONS=${DIRECTIONS:-real2anim anim2real}
FPS=${FPS:-25}
FRAMES=${FRAMES:-64}             # 32: the short-GIF variant
OOB=${OOB:-loop}                 # repeat_last: the padding ablation
EPOCHS_R2A=${EPOCHS_R2A:-30}
EPOCHS_A2R=${EPOCHS_A2R:-60}     # the animated source is small
WORKERS=${WORKERS:-8}
V="vdgtool"
COMMON=(--model i3d --weights "$I3D" --num-frames "$FRAMES" --size 224 --optimizer sgd --lr 0.01 --schedule cosine
        --warmup-epochs 1 --batch-size "${BATCH:-8}" --scale-min 0.25 --workers "$WORKERS" --out-of-bound "$OOB"
        --classes "$OUT/splits/classes.txt")

mkdir -p "$OUT"
[ -f "$OUT/splits/classes.txt" ] || python "$HERE/make_splits.py" --gifs "$GIFS" --kinetics-train "$K600_TRAIN" \
  --kinetics-val "$K600_VAL" ${K400_LABELS:+--k400-classes "$K400_LABELS"} -o "$OUT/splits" --n-min "${N_MIN:-10}" \
  ${CAP:+--cap "$CAP"} --seed 0
for s in anim_train anim_val anim_test real_train real_val real_test; do
  [ -f "$OUT/$s.h5" ] || $V extract "$OUT/splits/$s.csv" -o "$OUT/$s.h5" --fps "$FPS" --size 256 --encoding jpeg \
    --workers "$WORKERS" --resume
done
$V store info "$OUT/anim_test.h5" --json > "$OUT/anim_test.info.json"   # native GIF rates / lengths are in the store meta

# B0: the K400 I3D, zero-shot on the animated test GIFs of the classes K400 shares (argmax restricted to them)
if [ -n "${K400_LABELS:-}" ] && [ -s "$OUT/splits/k400_to_anigifs.csv" ]; then
  [ -f "$OUT/anim_test_k400.h5" ] || $V extract "$OUT/splits/anim_test.csv" --classes "$OUT/splits/classes_k400.txt" \
    -o "$OUT/anim_test_k400.h5" --fps "$FPS" --size 256 --encoding jpeg --workers "$WORKERS"
  $V eval --model i3d --weights "$I3D" --model-classes "$K400_LABELS" --class-map "$OUT/splits/k400_to_anigifs.csv" \
    --data "$OUT/anim_test_k400.h5" --out-of-bound "$OOB" --clips 1 --json > "$OUT/B0.json"
fi

for S in $SEEDS; do
  for D in $DIRECTIONS; do
    if [ "$D" = real2anim ]; then SRC=real; TGT=anim; E=$EPOCHS_R2A; else SRC=anim; TGT=real; E=$EPOCHS_A2R; fi
    R="$OUT/$D/seed$S"
    VAL=(--val "$OUT/${SRC}_val.h5" --val "$OUT/${TGT}_test.h5" --val "$OUT/${SRC}_test.h5")
    for M in erm rda augsearch; do   # ERM, the random control, the worst-case search (search_set 256, C = 64)
      HP=(); [ "$M" = augsearch ] && HP=(--hp search_set=256 --hp candidates=64)
      [ -f "$R/$M/done" ] || $V train --method "$M" "${HP[@]}" --data "$OUT/${SRC}_train.h5" "${VAL[@]}" \
        "${COMMON[@]}" --epochs "$E" --seed "$S" -o "$R/$M" --resume
    done
    for START in erm augsearch; do   # self-training rounds from each: the target train split is the pool
      for BAL in none fraction; do
        PL=(--threshold 0.9); [ "$BAL" = fraction ] && PL=(--threshold 0 --balance fraction --fraction 0.2,0.4,0.6)
        $V pseudolabel "$R/$START" --source "$OUT/${SRC}_train.h5" --target "$OUT/${TGT}_train.h5" \
          --val "$OUT/${SRC}_val.h5" --test "$OUT/${TGT}_test.h5" --test "$OUT/${SRC}_test.h5" "${PL[@]}" \
          --rounds 3 --round-epochs 5 --lr 0.001 --ckpt-rule val --views 3 --batch-size "${BATCH:-8}" \
          --workers "$WORKERS" --seed "$S" -o "$R/pl_${START}_$BAL" --resume > "$R/pl_${START}_$BAL.tsv"
      done
    done
    $V augsearch "$R/erm" --data "$OUT/${TGT}_test.h5" --eval-only --json > "$R/erm.vulnerability.json"
  done
done
# oracles: each domain's own train split, selected on its own val
for S in $SEEDS; do for DOM in anim real; do
  [ -f "$OUT/oracle_$DOM/seed$S/done" ] || $V train --data "$OUT/${DOM}_train.h5" --val "$OUT/${DOM}_val.h5" \
    --val "$OUT/${DOM}_test.h5" "${COMMON[@]}" --epochs "$EPOCHS_R2A" --seed "$S" -o "$OUT/oracle_$DOM/seed$S" --resume
done; done
$V collect "$OUT" --select val --json > "$OUT/collect.json"   # mean ± SE over seeds, selected on the first val store
echo "anigifs: results in $OUT (collect.json, */pl_*.tsv, B0.json)" >&2
