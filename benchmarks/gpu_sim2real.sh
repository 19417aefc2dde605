#!/usr/bin/env bash
# Sim-to-real on MNI152 at full resolution (1 mm, 2-D net, the recipe's JAX trainer) on a
# lent GPU: the synthseg preset and ablations. Needs benchmarks/results/sim2real-data/ (built
# here by `sim2real.py --mni152 4`, carried over) and the wheels in .whl/ (see gpu_recipe.sh).
# Usage: bash benchmarks/gpu_sim2real.sh [STEPS] [EVAL_EVERY] [DOWN]
set -uo pipefail
STEPS=${1:-1500}; EVERY=${2:-500}; DOWN=${3:-1}
source "$(dirname "$0")/gpu_env.sh"
D=benchmarks/results/sim2real-data
python3 benchmarks/sim2real.py --train $D/mni152_deformed{0,1,2,3}_dseg.nii.gz \
  --test $D/mni152_T1w.nii.gz:$D/mni152_dseg.nii.gz --down "$DOWN" --dim 2 --batch 1 \
  --slices 16 --steps "$STEPS" --eval-every "$EVERY" --trainer jax \
  --generators synthjax:synthseg "synthjax:synthseg+gmm.prob_background_zero=0.5" \
  synthjax:synthseg~resolution \
  --json "$OUT/sim2real_mni152_gpu.json" --table "$OUT/sim2real_mni152_gpu.md" --png-dir "$OUT" \
  2>&1 | grep -v -i warn
