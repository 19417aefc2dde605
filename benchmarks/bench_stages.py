"""Per-stage cost of the optional generation stages, on the fetal label maps.

The baseline is `presets.fetal(range(8), shape)` with every optional stage disabled (the
SynthSeg-like core: affine + deformation, flip, GMM, bias, gamma, resolution, noise). Each
row enables one stage with `prob=1` (applied in every sample) and reports the median time
per sample and the increment over the baseline, with the first-call (compile) time.

Usage (from the repository root)::

    python benchmarks/bench_stages.py --shape 160 --repeats 7 \
        --json benchmarks/results/stages_160.json

Only timings on the same machine are comparable; run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

from common import CpuMeter, label_paths, parse_shape, summarize, wait_quiet

DEFAULT_DATA = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "fetal"

OPTIONAL = (
  "subclusters",
  "texture",
  "struct_noise",
  "blur_cortex",
  "boundary",
  "slice_stack",
  "motion",
  "spike",
  "ghosting",
  "gibbs",
  "rician",
  "image_intensity",
)
# stage -> the overrides that switch it on (prob 1) with the preset's / peer's ranges.
ON = {
  "subclusters": {"enabled": True, "prob": 1.0},
  "texture": {"prob": 1.0},
  "struct_noise": {"prob": 1.0},
  "blur_cortex": {"prob": 1.0},
  "boundary": {"prob": 1.0, "prob_no_mask": 0.0, "prob_halo": 1.0, "prob_fuzzy": 1.0},
  "slice_stack": {"prob": 1.0},
  "motion": {"prob": 1.0},
  "spike": {"prob": 1.0},
  "ghosting": {"prob": 1.0},
  "gibbs": {"prob": 1.0},
  "rician": {"prob": 1.0},
  "image_intensity": {"prob": 1.0},
}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
  ap.add_argument("--shape", type=parse_shape, default=(160, 160, 160))
  ap.add_argument("--repeats", type=int, default=7)
  ap.add_argument(
    "--stages",
    default=",".join(OPTIONAL),
    help="comma-separated stages (default: all optional stages)",
  )
  ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S")
  ap.add_argument("--json", type=Path, default=None)
  args = ap.parse_args(argv)

  import jax
  import numpy as np

  import synthjax
  from synthjax import presets
  from synthjax._src import nifti

  stages = [s for s in args.stages.split(",") if s]
  unknown = sorted(set(stages) - set(ON))
  if unknown:
    sys.exit(f"bench_stages: unknown stage(s) {unknown}; known: {sorted(ON)}")
  import jax.numpy as jnp

  labels = [nifti.load_label_map(p)[0] for p in label_paths(args.data, "bench_stages")]
  # Real intensities for image_intensity: any float volume on the labels' grid will do.
  images = [jnp.asarray(lab.astype(np.float32) * 37.0 + 5.0) for lab in labels]
  # Converted once, as a training loop would: numpy inputs are copied on every call.
  labels = [jnp.asarray(lab) for lab in labels]
  off = {s: {"enabled": False} for s in OPTIONAL}
  base = presets.fetal(tuple(range(8)), args.shape).replace(**off)

  def measure(name, cfg):
    extra = {"image": images} if cfg.image_intensity.enabled else {}
    fixed = {name: {"applied": True}} if name != "baseline" else None
    key = jax.random.key(0)
    t0 = time.perf_counter()
    p = synthjax.sample_params(key, cfg, fixed=fixed)
    img, _ = synthjax.synthesize(key, p, labels[0], cfg, **{k: v[0] for k, v in extra.items()})
    img.block_until_ready()
    first = time.perf_counter() - t0
    wait_quiet(args.wait_quiet)
    times, meter = [], CpuMeter().start()
    for r in range(args.repeats):
      k = jax.random.key(r + 1)
      p = synthjax.sample_params(k, cfg, fixed=fixed)
      i = (r + 1) % len(labels)
      t0 = time.perf_counter()
      img, seg = synthjax.synthesize(k, p, labels[i], cfg, **{n: v[i] for n, v in extra.items()})
      img.block_until_ready()
      times.append(time.perf_counter() - t0)
    return {"first_call_s": first, "per_sample": summarize(times), "cpu": meter.stop()}

  results = {"baseline": measure("baseline", base)}
  print(f"{'stage':<16s} {'median ms':>10s} {'+ms':>8s} {'first call s':>13s}")
  b = results["baseline"]["per_sample"]["median"]
  print(f"{'baseline':<16s} {1e3 * b:10.1f} {'':>8s} {results['baseline']['first_call_s']:13.1f}")
  for s in stages:
    cfg = base.replace(**{s: dict(ON[s])})
    r = measure(s, cfg)
    results[s] = r
    m = r["per_sample"]["median"]
    print(f"{s:<16s} {1e3 * m:10.1f} {1e3 * (m - b):8.1f} {r['first_call_s']:13.1f}", flush=True)
  # The baseline again, last: its drift between the two runs bounds what the increments
  # can resolve (the first row also pays the process's warm-up).
  results["baseline_end"] = measure("baseline", base)
  print(f"{'baseline (end)':<16s} {1e3 * results['baseline_end']['per_sample']['median']:10.1f}")
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
      json.dumps(
        {
          "command": " ".join(["python", "benchmarks/bench_stages.py"] + (argv or sys.argv[1:])),
          "date": datetime.date.today().isoformat(),
          "machine": platform.processor() or platform.machine(),
          "jax": jax.__version__,
          "shape": list(args.shape),
          "device": str(jax.devices()[0]),
          "results": results,
        },
        indent=1,
      )
    )


if __name__ == "__main__":
  main()
