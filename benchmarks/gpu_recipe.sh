#!/usr/bin/env bash
# The recipe's GPU figures, as one script for a lent GPU machine (see benchmarks/RESULTS.md).
# Needs the wheels of grain, nibabel, array-record, flax and portpicker in .whl/ where the
# machine has no package index; writes its JSON and logs under $OUT (default: ./gpu-out).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" | tee -a "$OUT/gpu.txt"
B=benchmarks/bench_train_step.py
# 1. The CPU benchmark's net (8-16-32-64), batch 2, at 64^3 and 128^3.
timeout 120 python3 $B --sizes 64 128 --repeats 5 --json "$OUT/train_step_gpu.json" 2>&1 | grep -v -i warn | tee -a "$OUT/log.txt"
# 2. FetalSynthSeg's size: 5 levels of 32..512 channels, batch 1, fetal preset, 128^3 and 256^3.
timeout 180 python3 $B --sizes 128 256 --batch 1 --features 32 64 128 256 512 --preset fetal --repeats 3 --json "$OUT/train_step_gpu_fetalsynthseg.json" 2>&1 | grep -v -i warn | tee -a "$OUT/log.txt"
# 3. The whole loop (Grain workers, checkpoints) with synthjax train, 3-D, 128^3 patches.
python3 - <<'PY'
import nibabel as nib, numpy as np
from synthjax.phantom import brain_phantom
for i, s in enumerate([(144, 144, 144), (136, 150, 140), (150, 140, 136)]):
  lab, aff = brain_phantom(s, 1.4)
  nib.save(nib.Nifti1Image(lab.astype(np.int16), aff), f"/tmp/ph{i}_dseg.nii.gz")
PY
timeout 100 python3 -m synthjax.cli train /tmp/ph*_dseg.nii.gz -o /tmp/gpurun --shape 128 128 128 \
  --steps 60 --batch 2 --workers 4 --ckpt-every 30 --features 16 32 64 128 --quiet 2>&1 | grep -v -i warn | tail -5 | tee -a "$OUT/log.txt"
cp /tmp/gpurun/metrics.jsonl "$OUT/train_py_gpu_metrics.jsonl" 2>/dev/null
python3 - "$OUT" <<'PY'
import json, sys, numpy as np
r = [json.loads(l) for l in open(f"{sys.argv[1]}/train_py_gpu_metrics.jsonl") if '"loss"' in l]
s = np.array([x["seconds"] for x in r[5:]])
print(f"train.py 128^3 B=2: median step {np.median(s):.4f} s, {2 / np.median(s):.1f} samples/s over {len(s)} steps; first step {r[0]['seconds']:.1f} s")
PY
