#!/usr/bin/env bash
# Domain-adaptation baselines on the built-in toy task: real mp4 (labelled source, colour shortcut) ->
# animated GIFs (unlabelled target), inductive.
#
#   recipes/adapt/toy_da.sh [OUT]            # the README table: 3 seeds x 7 arms (~20 min on 2 idle cores)
#   FAST=1 recipes/adapt/toy_da.sh OUT       # smoke run: 1 seed, 1 epoch, tiny splits, arms dann + two-stream,
#                                            # DIS flow instead of TV-L1 (~40 s of CPU)
#   SEEDS="0 1 2 3 4" ARMS="erm dann dann@lam=0.3 two-stream" EPOCHS=40 recipes/adapt/toy_da.sh runs/x
#   (an ARMS entry METHOD@HP=V,HP=V passes --hp flags; its run directory is named after the entry)
#
# Splits, per seed S: one `toydata --seed S` with VPC + TEST_VPC clips per class and domain, split by clip
# index from its CSV manifests (index < VPC: train, else held out), so no video is in two splits:
#   real_train.h5      real clips, index < VPC        labelled source (--data)
#   animated_train.h5  animated clips, index < VPC    unlabelled target (--target; labels never read)
#   real_val.h5        real clips, index >= VPC       source validation (first --val: selects best.pt)
#   animated_test.h5   animated clips, index >= VPC   target test (later --val: reported, never selects)
# Inductive: the test videos are never seen in training, not even unlabelled.
# Arms: ERM (the control), DANN, DAN, MCC, BNM, entropy minimisation (each at its default weight), and
# two-stream ERM on RGB + TV-L1 flow (`vdgtool flow`; joint training, late fusion; no target stream).
# The table: mean ± SE over seeds (`vdgtool collect`), last epoch and source-validation selection side
# by side, plus paired per-seed differences against ERM. Everything lands in OUT (default runs/toy_da).
# The seed/arm loop moves to `vdgtool sweep` when it lands.
set -euo pipefail
OUT=${1:-${OUT:-runs/toy_da}}
if [ "${FAST:-0}" = 1 ]; then
  SEEDS=${SEEDS:-0}; EPOCHS=${EPOCHS:-1}; ARMS=${ARMS:-"dann two-stream"}; VPC=${VPC:-4}; TEST_VPC=${TEST_VPC:-2}
  FLOW_BACKEND=${FLOW_BACKEND:-dis}  # OpenCV DIS: the smoke run checks the wiring, not TV-L1 (~3 s less per store)
fi
SEEDS=${SEEDS:-"0 1 2"}
ARMS=${ARMS:-"erm dann dan mcc bnm entropy two-stream"}
EPOCHS=${EPOCHS:-30}
VPC=${VPC:-32}                   # train clips per class and domain (4 classes): source 128, target 128
TEST_VPC=${TEST_VPC:-16}         # held-out clips per class and domain: real val 64, animated test 64
BIAS=${BIAS:-0.7}                # P(real background hue = class hue): the shortcut (see recipes/drl/README.md)
SIZE=${SIZE:-32}                 # frame side of the toy videos, the stores and the network input
FRAMES=${FRAMES:-8}              # clip length (the toy videos have 16 frames)
LR=${LR:-0.001}                  # AdamW
BATCH=${BATCH:-16}               # source batch; the target batch is the same size
MODEL=${MODEL:-test_c3d}
FLOW_BACKEND=${FLOW_BACKEND:-torch} # vdgtool flow --backend: torch = batched TV-L1 (the two-stream default)
WORKERS=${WORKERS:-0}            # DataLoader workers (on 2 cores they compete with the model's threads)
THREADS=${THREADS:-1}            # torch threads per run (2 threads on a loaded 2-core machine is ~10x slower)
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
V="vdgtool -q"
COMMON=(--model "$MODEL" --size "$SIZE" --num-frames "$FRAMES" --optimizer adamw --lr "$LR" --batch-size "$BATCH"
        --epochs "$EPOCHS" --no-flip --scale-min 0.6 --workers "$WORKERS" --overwrite --json)
# --no-flip: the classes are motion directions, a horizontal flip would swap move_left / move_right.

needs_flow=0; needs_target_flow=0
for A in $ARMS; do
  case ${A%%@*} in two-stream) needs_flow=1; case $A in *da=*) needs_target_flow=1;; esac;; esac
done

# split_csv IN.csv OUT_TRAIN.csv OUT_HELDOUT.csv: by the clip index in the file name (CLASS_NNN.ext)
split_csv() {
  awk -F, -v n="$VPC" -v tr="$2" -v te="$3" 'NR == 1 { print > tr; print > te; next }
    { f = $1; sub(/.*_/, "", f); sub(/\..*/, "", f); if (f + 0 < n) print > tr; else print > te }' "$1"
}

mkdir -p "$OUT"
for S in $SEEDS; do
  D="$OUT/seed$S"
  mkdir -p "$D"
  if [ ! -f "$D/stores.done" ]; then
    echo "toy_da: seed $S: data (toydata, extract)" >&2
    $V toydata "$D/toy" --seed "$S" --bias "$BIAS" --size "$SIZE" --videos-per-class $((VPC + TEST_VPC)) \
      --overwrite >/dev/null
    split_csv "$D/toy/real.csv" "$D/toy/real_train.csv" "$D/toy/real_val.csv"
    split_csv "$D/toy/animated.csv" "$D/toy/animated_train.csv" "$D/toy/animated_test.csv"
    for s in real_train animated_train real_val animated_test; do
      $V extract "$D/toy/$s.csv" -o "$D/$s.h5" --size "$SIZE" --encoding raw --overwrite >/dev/null
    done
    touch "$D/stores.done"
  fi
  if [ $needs_flow = 1 ]; then
    flows="real_train real_val animated_test"; [ $needs_target_flow = 0 ] || flows="$flows animated_train"
    for s in $flows; do
      [ ! -f "$D/${s}_flow.h5" ] || continue
      echo "toy_da: seed $S: TV-L1 flow of $s" >&2
      $V flow "$D/$s.h5" -o "$D/${s}_flow.h5" --backend "$FLOW_BACKEND" --overwrite >/dev/null
    done
  fi
  DATA=(--data "$D/real_train.h5" --val "$D/real_val.h5" --val "$D/animated_test.h5")
  for A in $ARMS; do
    [ ! -f "$D/$A/done" ] || continue
    M=${A%%@*}; HP=()
    if [ "$M" != "$A" ]; then IFS=, read -r -a XS <<< "${A#*@}"; for X in "${XS[@]}"; do HP+=(--hp "$X"); done; fi
    ARGS=("${DATA[@]}")
    case $M in
      erm|two-stream) ;;
      *) ARGS+=(--target "$D/animated_train.h5");;
    esac
    case $A in *da=*) ARGS+=(--target "$D/animated_train.h5");; esac
    if [ "$M" = two-stream ]; then
      ARGS+=(--flow "$D/real_train_flow.h5" --val-flow "$D/real_val_flow.h5" --val-flow "$D/animated_test_flow.h5")
      case $A in *da=*) ARGS+=(--target-flow "$D/animated_train_flow.h5");; esac
    fi
    echo "toy_da: seed $S: $A ($EPOCHS epochs)" >&2
    $V train "${ARGS[@]}" "${COMMON[@]}" --method "$M" ${HP[@]+"${HP[@]}"} --seed "$S" -o "$D/$A" >/dev/null
  done
  # last-epoch predictions on the animated test split, for the background-colour diagnostic of the table
  for A in $ARMS; do
    [ "$D/$A.pred_animated_test.h5" -nt "$D/$A/done" ] && continue
    FLOW=(); [ "${A%%@*}" != two-stream ] || FLOW=(--flow "$D/animated_test_flow.h5")
    $V eval "$D/$A/checkpoints/last.pt" --data "$D/animated_test.h5" ${FLOW[@]+"${FLOW[@]}"} \
      -o "$D/$A.pred_animated_test.h5" --overwrite --json >/dev/null
  done
done

# one collect per arm (an arm is a method and its --hp flags); the seeds' own stores are averaged over
for A in $ARMS; do
  RUNS=(); for S in $SEEDS; do RUNS+=("$OUT/seed$S/$A"); done
  IGN=data,val; [ "${A%%@*}" = two-stream ] && IGN=$IGN,flow,val_flow || IGN=$IGN,target
  case $A in *da=*) IGN=data,val,target,flow,val_flow,target_flow;; esac
  for RULE in last val; do
    vdgtool collect "${RUNS[@]}" --select "$RULE" --source real_val --group-by method --ignore "$IGN" --json \
      > "$OUT/collect_${RULE}_${A}.json"
  done
done

python - "$OUT" "$SEEDS" "$ARMS" <<'PY'
"""The README table: collect's mean ± SE per arm and rule, per-seed paired differences against ERM, how
often the predictions follow the background colour, the two-stream run's streams and DANN's domain
accuracy at the last epoch."""
import json, math, sys
import cv2
import numpy as np
from tabulate import tabulate
from vdgtool.evaluate.collect import read_run, select_epoch
from vdgtool.stores import TableStore, VideoStore

out, seeds, arms = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
coll = {r: {a: json.load(open(f"{out}/collect_{r}_{a}.json")) for a in arms} for r in ("last", "val")}

def ms(v):
    m = sum(v) / len(v)
    if len(v) < 2:
        return f"{100 * m:.1f}"
    return f"{100 * m:.1f} ± {100 * math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v)):.1f}"

def fmt(cell):
    return f"{100 * cell['mean']:.1f} ± {100 * cell['se']:.1f}" if cell["n"] > 1 else f"{100 * cell['mean']:.1f}"

def row_of(rule, arm):  # one collect per arm: its single row
    (row,) = coll[rule][arm]["rows"]
    return row

def sel(arm, s, rule):
    return select_epoch(read_run(f"{out}/seed{s}/{arm}")["history"], rule, "real_val")

HUES = np.array([360.0 * k / 4 + 15.0 for k in range(4)])  # toydata's class hues, classes in sorted order

def background_class(frame):
    """The class whose hue the (flat) background of an animated frame has: median of the border pixels."""
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]]).astype(np.float32) / 255
    hue = cv2.cvtColor(np.median(border, 0).reshape(1, 1, 3), cv2.COLOR_RGB2HSV)[0, 0, 0]
    return int(np.abs((HUES - hue + 180) % 360 - 180).argmin())

def follows_background(arm, s):
    """Share of last-epoch animated test predictions that name the background colour's class."""
    clips = VideoStore(f"{out}/seed{s}/animated_test.h5")
    bg = {clips.meta["key"][r]: background_class(clips.read(r, np.array([0]))[0]) for r in range(len(clips))}
    with TableStore(f"{out}/seed{s}/{arm}.pred_animated_test.h5", kind="predictions") as t:
        pred = np.asarray(t.array("probs")[:]).argmax(1)
        return float(np.mean([p == bg[k] for p, k in zip(pred, t.meta["key"])]))

rows, notes = [], []
for arm in arms:
    r = [arm]
    for rule in ("last", "val"):
        row = row_of(rule, arm)
        r += [fmt(row["real_val"]), fmt(row["animated_test"])]
        if "erm" in arms and arm != "erm":
            d = [sel(arm, s, rule)["val"]["animated_test"]["top1"] - sel("erm", s, rule)["val"]["animated_test"]["top1"]
                 for s in seeds]
            r.append(("+" if sum(d) >= 0 else "") + ms(d))
        else:
            r.append("")
    r.append(ms([follows_background(arm, s) for s in seeds]))
    rows.append(r)
    for s in seeds:
        ep = sel(arm, s, "last")
        if "streams" in ep["val"]["animated_test"]:
            st = ep["val"]["animated_test"]["streams"]
            notes.append(f"{arm} seed {s}, last epoch, animated test: " +
                         ", ".join(f"{k} {100 * v['top1']:.1f}" for k, v in st.items()) +
                         f", fused {100 * ep['val']['animated_test']['top1']:.1f}")
        if "train_domain_acc" in ep:
            notes.append(f"{arm} seed {s}, last epoch: domain classifier accuracy {ep['train_domain_acc']:.3f}")
print(f"seeds {' '.join(seeds)}: top-1 %, mean ± SE over seeds; Δ = paired per-seed difference in animated "
      "test top-1 against ERM; val = epoch with the best real_val (source) top-1; inductive (animated_test "
      "videos are never seen in training); follows bg colour = share of animated test predictions naming the "
      "class whose hue the background has (the shortcut; about 25 for a model that ignores it)")
print(tabulate(rows, headers=("arm", "real val (last)", "animated test (last)", "Δ vs ERM (last)",
                              "real val (val-sel)", "animated test (val-sel)", "Δ vs ERM (val-sel)",
                              "follows bg colour % (last)")))
for n in notes:
    print(n)
PY
