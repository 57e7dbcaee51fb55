#!/usr/bin/env bash
# APN benchmarks (spec §3): TSN, TRN, TRN + image ADA, APN, APN + video ADA (the four gammas and their
# ensemble) and the size-matched random control, per task, reported under `collect --select val` (the
# paper's protocol) and `--select oracle` (the released code's: best target accuracy) side by side.
#
#   recipes/apn/benchmark.sh BENCH STORES OUT        # BENCH: ucf_hmdb | something | pku | ntu
#   recipes/apn/benchmark.sh                         # no dataset: the toy fallback (toy_ada.py + toy_table.py)
#
# STORES holds the clip stores extracted from the generators' manifests (README: `vdgtool extract
# lists/X.csv -o STORES/X.h5`): ucf_{train,val,all}.h5 / hmdb_{...}.h5 (ucf_hmdb_lists.py),
# ssv2_{doing,pretending}_{train,val}.h5 (ssv2_pairs.py), <pku|ntu>_<V>_{train,val}.h5 and
# <pku|ntu>_<YZ>_all.h5 (view_splits.py). Hyper-parameters: hparams.toml [train] (paper values: SGD lr
# 0.001, momentum 0.9, wd 5e-4, x0.1 at 30/60/90/120, 150 epochs, batch 40, clip 20, 224 px, ImageNet
# ResNet-50) and [ada] (eta 1, t_max 5, gamma in {0.001, 0.01, 0.1, 1}, update=paper). Environment:
# SEEDS (default "0 1 2"), ARMS (default all), EPOCHS, BATCH, EXTRA (more `vdgtool train` flags).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
if [ $# -eq 0 ]; then
  OUT=${OUT:-runs/apn_toy}
  SEEDS=${SEEDS:-"0 1 2 3 4 5 6 7 8 9"}  # README: these 10 seeds, every arm (~1 h on one core)
  if [ -z "${ARMS:-}" ]; then  # every arm, and the README's paired differences (PAIRED="A:B ..." for other ARMS)
    ARMS="tsn trn trn-ada apn-global apn apn-3x apn-ada apn-ada-III apn-ada-II apn-ada-random apn-ada-g0.001 apn-ada-g0.1 apn-ada-g1 apn-ada-eta8 apn-ada-eta8-random"
    PAIRED=${PAIRED:-"apn-ada:apn-ada-random apn-ada:apn apn-ada-random:apn apn-ada:apn-3x apn-3x:apn apn-ada-III:apn-ada-random apn-ada-II:apn-ada-random apn-ada-eta8:apn-ada-eta8-random trn-ada:trn apn:trn apn-global:apn"}
  fi
  python "$HERE/toy_ada.py" "$OUT" --seeds $SEEDS --arms $ARMS
  python "$HERE/toy_ada.py" "$OUT" --seeds $SEEDS --ensemble
  # shellcheck disable=SC2086
  python "$HERE/toy_table.py" "$OUT" --seeds $SEEDS --arms $ARMS --paired ${PAIRED:-}
  exit 0
fi
[ $# -eq 3 ] || { echo "usage: benchmark.sh BENCH STORES OUT (BENCH: ucf_hmdb something pku ntu), or no arguments" >&2; exit 2; }
BENCH=$1 S=$2 OUT=$3
SEEDS=${SEEDS:-"0 1 2"}
ARMS=${ARMS:-"tsn trn trn-ada apn apn-ada-g0.001 apn-ada apn-ada-g0.1 apn-ada-g1 apn-ada-random"}
EPOCHS=${EPOCHS:-150}
BATCH=${BATCH:-40}
case $BENCH in
  ucf_hmdb) M=5; TASKS="U2H:ucf_train:ucf_val:hmdb_all H2U:hmdb_train:hmdb_val:ucf_all";;
  something) M=5; TASKS="S2T:ssv2_doing_train:ssv2_doing_val:ssv2_pretending_val T2S:ssv2_pretending_train:ssv2_pretending_val:ssv2_doing_val";;
  pku|ntu) M=3; TASKS="L2CR:${BENCH}_L_train:${BENCH}_L_val:${BENCH}_CR_all C2LR:${BENCH}_C_train:${BENCH}_C_val:${BENCH}_LR_all R2LC:${BENCH}_R_train:${BENCH}_R_val:${BENCH}_LC_all";;
  *) echo "benchmark.sh: unknown benchmark $BENCH (ucf_hmdb something pku ntu)" >&2; exit 2;;
esac
COMMON="--num-frames $M --size 224 --pretrained --optimizer sgd --lr 0.001 --momentum 0.9 --weight-decay 5e-4
  --schedule step --milestones 30,60,90,120 --gamma 0.1 --epochs $EPOCHS --batch-size $BATCH --clip-grad 20
  --scale-min 0.44 ${EXTRA:-}"
arm() {  # ARM -> model, method and hyper-parameters
  case $1 in
    tsn) echo "--model tsn:resnet50.tv_in1k --method erm";;
    trn) echo "--model trn:resnet50.tv_in1k --method erm";;
    trn-ada) echo "--model trn:resnet50.tv_in1k --method ada";;
    apn) echo "--model apn --method erm";;
    apn-ada) echo "--model apn --method apn-ada --hp gamma=0.01";;
    apn-ada-g*) echo "--model apn --method apn-ada --hp gamma=${1#apn-ada-g}";;
    apn-ada-random) echo "--model apn --method apn-ada --hp gamma=0.01 --hp attack=random";;
    *) echo "benchmark.sh: unknown arm $1" >&2; exit 2;;
  esac
}
for T in $TASKS; do
  IFS=: read -r NAME TRAIN VAL TEST <<<"$T"
  for SEED in $SEEDS; do
    for A in $ARMS; do
      R="$OUT/$NAME/${A}_s$SEED"
      [ -f "$R/done" ] && continue
      # shellcheck disable=SC2046
      vdgtool train --data "$S/$TRAIN.h5" --val "$S/$VAL.h5" --val "$S/$TEST.h5" $(arm "$A") $COMMON \
        --seed "$SEED" -o "$R"
    done
    G="$OUT/$NAME/apn-ada"
    if [ -f "${G}-g0.001_s$SEED/done" ] && [ -f "${G}_s$SEED/done" ] && [ -f "${G}-g0.1_s$SEED/done" ] && [ -f "${G}-g1_s$SEED/done" ]; then
      vdgtool eval "${G}-g0.001_s$SEED" --ensemble "${G}_s$SEED" --ensemble "${G}-g0.1_s$SEED" \
        --ensemble "${G}-g1_s$SEED" --ensemble-rule maxconf --data "$S/$TEST.h5" --json > "$OUT/$NAME/ensemble_s$SEED.json"
    fi
  done
  echo "## $BENCH $NAME: select val (source $VAL) | select oracle (target $TEST)"
  vdgtool collect "$OUT/$NAME" --select val --format markdown
  vdgtool collect "$OUT/$NAME" --select oracle --format markdown
done
