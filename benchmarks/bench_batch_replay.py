"""Cost of rendering a vmapped batch sample by sample (bit-for-bit replay of each sample).

`synthesize` under `jax.vmap` maps the single-sample program over the batch
(`ops.batching.per_sample`), so sample i of a batch is the single call's bits. This script
times, per sample and after compilation (the minimum over repeats: the machine is shared):

* `single`: `synthesize` one sample per call;
* `batch`: `jax.jit(jax.vmap(synthesize))`, the per-sample program mapped over the batch;
* `batch_vectorised`: the vectorised batch, `jax.vmap` of the render body without the
  per-sample rule (how batches rendered before; each sample within a few 1e-6 of its single
  call, and every stage computed whether it is applied or not);

and checks how far each batch is from the single calls (max |difference|).

Usage (from the repository root)::

    python benchmarks/bench_batch_replay.py                  # 48^3, batches of 4
    python benchmarks/bench_batch_replay.py --shape 64 --batch 4 --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import functools
import json
import operator
import time

import jax
import numpy as np

import synthjax
from common import CpuMeter
from synthjax._src import rendering


def _labels(values, shape, shift):
  g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
  r = np.sqrt(((g - shift) ** 2).sum(0)) + 0.15 * np.sin(3 * g[0]) * np.cos(2 * g[1])
  out = np.full(shape, values[0], np.int32)
  for v, e in zip(values[1:], np.linspace(1.0, 0.1, len(values))[1:]):
    out[r < e] = v
  return out


def _configs(shape):
  fs = (0, 2, 3, 4, 41, 42, 43)
  return {
    "synthseg": (synthjax.presets.synthseg(fs, shape, (1.5,) * 3), fs),
    "fetal": (synthjax.presets.fetal(range(8), shape, (2.0,) * 3), tuple(range(8))),
  }


def _render_vectorised(cfg, key, params, labels):
  return rendering._render(key, params, labels, cfg, None, None, None)


def _synthesize(cfg, key, params, labels):
  return synthjax.synthesize(key, params, labels, cfg)


def _synthesize_each(cfg, singles):
  return [synthjax.synthesize(k, p, l, cfg) for k, p, l in singles]


def _min_time(fn, args, repeats):
  jax.block_until_ready(fn(*args))  # compile
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t)
  return best


def run(shape, batch, repeats):
  out = {}
  for name, (cfg, values) in _configs(shape).items():
    keys = jax.random.split(jax.random.key(3), batch)
    params = synthjax.sample_params(jax.random.split(jax.random.key(4), batch), cfg)
    labels = np.stack([_labels(values, shape, 0.05 * i) for i in range(batch)])
    labels = jax.numpy.asarray(labels)
    vectorised = jax.jit(jax.vmap(functools.partial(_render_vectorised, cfg)))
    mapped = jax.jit(jax.vmap(functools.partial(_synthesize, cfg)))
    singles = [
      (keys[i], jax.tree.map(operator.itemgetter(i), params), labels[i]) for i in range(batch)
    ]
    one = functools.partial(_synthesize_each, cfg, singles)
    meter = CpuMeter().start()
    row = {
      "single_ms": 1e3 * _min_time(one, (), repeats) / batch,
      "batch_ms": 1e3 * _min_time(mapped, (keys, params, labels), repeats) / batch,
      "batch_vectorised_ms": 1e3 * _min_time(vectorised, (keys, params, labels), repeats) / batch,
    }
    reference = np.stack([np.asarray(image) for image, _ in one()])
    for mode, fn in (("batch", mapped), ("batch_vectorised", vectorised)):
      images = np.asarray(fn(keys, params, labels)[0])
      row[mode + "_max_diff"] = float(np.max(np.abs(images - reference)))
    row["cpu"] = meter.stop()
    out[name] = row
    print(name, json.dumps(row), flush=True)
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--shape", type=int, default=48)
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--repeats", type=int, default=5)
  ap.add_argument("--json", default=None)
  args = ap.parse_args()
  res = {
    "shape": args.shape,
    "batch": args.batch,
    "repeats": args.repeats,
    "backend": jax.default_backend(),
    "jax": jax.__version__,
    "presets": run((args.shape,) * 3, args.batch, args.repeats),
  }
  if args.json:
    with open(args.json, "w") as f:
      json.dump(res, f, indent=1)


if __name__ == "__main__":
  main()
