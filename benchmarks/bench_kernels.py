"""Micro-benchmarks of the generator's kernels (RESULTS.md section 6), CPU.

    python benchmarks/bench_kernels.py [--size 256] [--repeats 7]

Each row times one jitted kernel on a `size^3` float32 volume (median of `--repeats` after
a warm-up), the old formulation next to the one synthjax uses now:

* per-voxel standard normals: `jax.random.normal` (threefry) against `rng.voxel_normal`;
* three separable axis products: `tensordot` + `moveaxis` against `resample.apply_separable`;
* gamma: `x ** g` against `exp(g log x)` (as `gamma.apply_gamma`);
* an 8-entry table indexed by a label map: a gather against `lookup.take_small`.

These are kernels in isolation; what they buy inside the whole program is in RESULTS.md
(the table lookup, for one, costs the same either way in isolation).
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", type=int, default=256)
  ap.add_argument("--repeats", type=int, default=7)
  args = ap.parse_args(argv)

  import jax
  import jax.numpy as jnp

  from synthjax._src.ops import lookup, resample, rng

  n = args.size
  shape = (n, n, n)
  key = jax.random.key(0)
  x = jax.random.uniform(key, shape)
  mats = [jax.random.normal(jax.random.key(i), (n, n)) / n for i in range(1, 4)]
  labels = jax.random.randint(key, shape, 0, 8)
  table = jnp.arange(8, dtype=jnp.float32) * 1.5
  g = jnp.float32(1.3)

  def tensordot_separable(x, ms):
    for axis, m in enumerate(ms):
      x = jnp.moveaxis(jnp.tensordot(m, x, axes=([1], [axis])), 0, axis)
    return x

  rows = [
    ("normal: jax.random.normal", lambda k: jax.random.normal(k, shape), (key,)),
    ("normal: rng.voxel_normal", lambda k: rng.voxel_normal(k, shape), (key,)),
    ("separable: tensordot+moveaxis", tensordot_separable, (x, mats)),
    ("separable: apply_separable", resample.apply_separable, (x, mats)),
    ("gamma: x ** g", lambda x, g: x**g, (x, g)),
    (
      "gamma: exp(g log x)",
      lambda x, g: jnp.where(x > 0, jnp.exp(g * jnp.log(jnp.maximum(x, 1e-30))), 0.0),
      (x, g),
    ),
    ("lookup: table[labels]", lambda t, i: t[i], (table, labels)),
    ("lookup: take_small", lookup.take_small, (table, labels)),
  ]
  print(f"# {n}^3, median of {args.repeats}, jax {jax.__version__}, {jax.devices()[0]}")
  for name, fn, inputs in rows:
    f = jax.jit(fn)
    jax.block_until_ready(f(*inputs))
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      jax.block_until_ready(f(*inputs))
      times.append(time.perf_counter() - t0)
    print(f"{name:32s} {1e3 * statistics.median(times):8.1f} ms")


if __name__ == "__main__":
  main()
