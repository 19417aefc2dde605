#!/usr/bin/env bash
# Sim-to-real on MNI152 at full resolution (1 mm, 2-D net, the recipe's JAX trainer) on a
# lent GPU: the synthseg preset and ablations. Needs benchmarks/results/sim2real-data/ (built
# here by `sim2real.py --mni152 4`, carried over) and the wheels in .whl/ (see gpu_recipe.sh).
# Usage: bash benchmarks/gpu_sim2real.sh [STEPS] [EVAL_EVERY] [DOWN]
set -uo pipefail
OUT=${OUT:-gpu-out}
STEPS=${1:-1500}; EVERY=${2:-500}; DOWN=${3:-1}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  rm -rf /tmp/site
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.92
D=benchmarks/results/sim2real-data
python3 benchmarks/sim2real.py --train $D/mni152_deformed{0,1,2,3}_dseg.nii.gz \
  --test $D/mni152_T1w.nii.gz:$D/mni152_dseg.nii.gz --down "$DOWN" --dim 2 --batch 1 \
  --slices 16 --steps "$STEPS" --eval-every "$EVERY" --trainer jax \
  --generators synthjax:synthseg "synthjax:synthseg+gmm.prob_background_zero=0.5" \
  synthjax:synthseg~resolution \
  --json "$OUT/sim2real_mni152_gpu.json" --table "$OUT/sim2real_mni152_gpu.md" --png-dir "$OUT" \
  2>&1 | grep -v -i warn
