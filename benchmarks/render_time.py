"""Rendering time of generator configs as the sim-to-real protocol renders them.

Each spec (`sim2real.py`'s grammar) renders batches of one sample from the training maps,
coarsened by `--down`, through the same compiled function the benchmark's torch trainer
uses. The specs take turns, one sample each, so that a machine whose speed drifts affects
them alike; the report gives the median time per sample and its ratio to the first spec.

Usage (from the repository root)::

    F=../shared/data/fetal
    python benchmarks/render_time.py --train $F/sub-sta30/anat/*_dseg.nii.gz \\
        $F/sub-sta38/anat/*_dseg.nii.gz --specs synthjax:synthseg synthjax:fetal -n 100
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import numpy as np

import sim2real  # noqa: E402


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--train", nargs="+", required=True)
  p.add_argument("--specs", nargs="+", required=True)
  p.add_argument("--down", type=int, default=4)
  p.add_argument("-n", type=int, default=100, help="samples per spec")
  p.add_argument("--json", help="write the timings here")
  args = p.parse_args(argv)
  from synthjax import data as sdata

  maps, spacing = sim2real.load_train_maps(args.train, args.down)
  shape = sim2real.common_shape(maps, 8, 2)
  maps = [sim2real.pad_to(m, shape) for m in maps]
  values = sorted(set().union(*(np.unique(m).tolist() for m in maps)))
  gens = [sim2real.make_generator(s, values, shape, spacing, {}) for s in args.specs]
  compile_s, times = {}, {s: [] for s in args.specs}
  for spec, gen in zip(args.specs, gens):
    t0 = time.perf_counter()
    gen.render_host(maps[0][None], sdata.sample_key_data(0, 0)[None], values)
    compile_s[spec] = time.perf_counter() - t0
  for j in range(1, args.n + 1):
    labels = maps[j % len(maps)][None]
    key = sdata.sample_key_data(0, j)[None]
    for spec, gen in zip(args.specs, gens):
      t0 = time.perf_counter()
      gen.render_host(labels, key, values)
      times[spec].append(time.perf_counter() - t0)
  base = float(np.median(times[args.specs[0]]))
  out = {
    "date": time.strftime("%Y-%m-%d"),
    "machine": platform.processor() or platform.machine(),
    "cpus": os.cpu_count(),
    "shape": list(shape),
    "spacing": list(spacing),
    "commit": subprocess.run(
      ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip(),
    "results": {},
  }
  for spec in args.specs:
    med = float(np.median(times[spec]))
    out["results"][spec] = {
      "median_ms": 1000 * med,
      "ratio": med / base,
      "first_call_s": compile_s[spec],
    }
    print(
      f"{spec}: {1000 * med:.1f} ms per sample (x{med / base:.2f}), first call "
      f"{compile_s[spec]:.1f} s",
      flush=True,
    )
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
