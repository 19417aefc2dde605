"""The whole fetal preset (FetalSynthGen's stages at their default probabilities), CPU.

    python benchmarks/bench_fetal_preset.py --shape 160 [--repeats 12] [--json OUT]

`presets.fetal(range(8), shape)` on the three fetal maps (converted to JAX arrays once);
per sample new params and keys and the next subject. Reports the first call (trace,
compile and run of `sample_params` + `synthesize`) and the median time of `synthesize`.
Every stage is drawn at its preset probability, so the spread is wide: a sample with slice
stacks or boundaries costs several times one without.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CpuMeter, label_paths, parse_shape, summarize, wait_quiet  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "fetal"


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
  ap.add_argument("--shape", type=parse_shape, default=(160, 160, 160))
  ap.add_argument("--repeats", type=int, default=12)
  ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S")
  ap.add_argument("--json", type=Path, default=None)
  args = ap.parse_args(argv)
  paths = label_paths(args.data, "bench_fetal_preset")  # fail fast, before importing JAX

  import jax
  import jax.numpy as jnp

  import synthjax
  from synthjax import presets
  from synthjax._src import nifti

  labels = [jnp.asarray(nifti.load_label_map(p)[0]) for p in paths]
  cfg = presets.fetal(tuple(range(8)), args.shape)
  t0 = time.perf_counter()
  p = synthjax.sample_params(jax.random.key(0), cfg)
  img, _ = synthjax.synthesize(jax.random.key(0), p, labels[0], cfg)
  img.block_until_ready()
  first = time.perf_counter() - t0
  wait_quiet(args.wait_quiet)
  times, meter = [], CpuMeter().start()
  for r in range(1, args.repeats + 1):
    p = synthjax.sample_params(jax.random.key(r), cfg)
    t0 = time.perf_counter()
    img, _ = synthjax.synthesize(jax.random.key(r), p, labels[r % len(labels)], cfg)
    img.block_until_ready()
    times.append(time.perf_counter() - t0)
  stats, cpu = summarize(times), meter.stop()
  print(
    f"fetal preset {args.shape}: first call {first:.1f} s, synthesize median "
    f"{1e3 * stats['median']:.0f} ms (IQR {1e3 * stats['iqr']:.0f}, n={len(times)}), "
    f"other processes {cpu.get('other_cores', float('nan')):.2f} cores"
  )
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
      json.dumps(
        {
          "command": " ".join(
            ["python", "benchmarks/bench_fetal_preset.py", *(argv or sys.argv[1:])]
          ),
          "shape": list(args.shape),
          "jax": jax.__version__,
          "device": str(jax.devices()[0]),
          "first_call_s": first,
          "per_sample": stats,
          "cpu": cpu,
        },
        indent=1,
      )
    )


if __name__ == "__main__":
  main()
