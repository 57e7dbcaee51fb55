#!/usr/bin/env bash
# SLURM variant: one array task per seed of any DRL recipe; pre-emption safe (train --resume, and
# SIGUSR1 sent 120 s before the time limit makes vdgtool checkpoint and exit; requeue continues).
#   sbatch --array=0-2 recipes/drl/slurm.sh mimetics.sh
#   sbatch --array=0-2 --export=ALL,KINETICS_TRAIN=k400.h5,KINETICS_VAL=k400_val.h5 recipes/drl/slurm.sh pretrain.sh
# Multi-GPU: set LAUNCH="torchrun --nproc-per-node 4 -m" (vdgtool train reads torchrun's env).
#SBATCH --job-name=vdg-drl
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=10
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail
RECIPE=${1:?usage: sbatch --array=0-2 recipes/drl/slurm.sh RECIPE.sh}
HERE=${SLURM_SUBMIT_DIR:-$(pwd)}/recipes/drl
export SEED=${SLURM_ARRAY_TASK_ID:-0}
export WORKERS=${SLURM_CPUS_PER_TASK:-8}
export OUT=${OUT:-runs/drl}
bash "$HERE/$RECIPE" &
CHILD=$!
# forward the warning to vdgtool (it checkpoints and exits), then requeue; the rerun resumes
trap 'pkill -USR1 -P "$CHILD" || true; wait "$CHILD" || true; scontrol requeue "$SLURM_JOB_ID"; exit 0' USR1
wait "$CHILD"
