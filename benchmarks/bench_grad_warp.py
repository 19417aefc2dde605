"""The cost of differentiating the generator, and of `warp` / `unwarp`.

    python benchmarks/bench_grad_warp.py                       # 96^3 and 160^3; warp at 256^3
    python benchmarks/bench_grad_warp.py --grad-sizes 96 --warp-size 128 --repeats 3

Gradient: `jax.value_and_grad` of a scalar of the image (its inner product with fixed
weights) with respect to every float param, against the forward pass alone (`synthesize`
under the same jit), SynthSeg preset with every stage on its intensity path applied.
Warp: a 3-D float32 volume through a sample's coordinate map at order 1 and order 3, and
back (`unwarp`, order 1). Medians of `--repeats` calls after one compiling call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402


def _median_time(fn, repeats):
  first, median, _ = common.timed(fn, repeats)
  return median, first


def _labels(n):
  g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n)] * 3, indexing="ij"))
  r = np.sqrt((g**2).sum(0))
  return (1 * (r < 0.9) + 1 * (r < 0.6) + 1 * (r < 0.3)).astype(np.int32)


def grad_cost(n, repeats):
  import jax
  import jax.numpy as jnp

  import synthjax

  cfg = synthjax.presets.synthseg((0, 1, 2, 3), (n, n, n)).replace(
    bias={"prob": 1.0}, gamma={"prob": 1.0}, resolution={"prob": 1.0}, noise={"prob": 1.0}
  )
  labels = jnp.asarray(_labels(n))
  params = synthjax.sample_params(jax.random.key(0), cfg)
  floats = {
    s: {k: v for k, v in e.items() if jnp.issubdtype(v.dtype, jnp.floating)}
    for s, e in params.items()
  }
  weights = jnp.asarray(np.random.default_rng(0).normal(size=(n, n, n)), jnp.float32)
  key = jax.random.key(1)

  def loss(f):
    p = {s: {**params[s], **f[s]} for s in params}
    return jnp.sum(synthjax.synthesize(key, p, labels, cfg)[0] * weights)

  forward = jax.jit(loss)
  both = jax.jit(jax.value_and_grad(loss))
  fwd, fwd_c = _median_time(lambda: forward(floats), repeats)
  grad, grad_c = _median_time(lambda: both(floats), repeats)
  return {
    "shape": n,
    "forward_ms": 1e3 * fwd,
    "value_and_grad_ms": 1e3 * grad,
    "ratio": grad / fwd,
    "forward_compile_s": fwd_c,
    "grad_compile_s": grad_c,
  }


def warp_cost(n, repeats):
  import jax
  import jax.numpy as jnp

  import synthjax

  cfg = synthjax.presets.synthseg((0, 1, 2, 3), (n, n, n))
  params = synthjax.sample_params(jax.random.key(0), cfg)
  volume = jnp.asarray(np.random.default_rng(0).normal(size=(n, n, n)), jnp.float32)
  key = jax.random.key(1)
  out = {"shape": n}
  for order in (1, 3):
    t, c = _median_time(
      lambda order=order: synthjax.warp(key, params, volume, cfg, order=order), repeats
    )
    out[f"warp_order{order}_ms"], out[f"warp_order{order}_compile_s"] = 1e3 * t, c
  t, c = _median_time(
    lambda: synthjax.unwarp(key, params, volume, cfg, in_shape=(n, n, n)), repeats
  )
  out["unwarp_order1_ms"], out["unwarp_order1_compile_s"] = 1e3 * t, c
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--grad-sizes", default="96,160")
  p.add_argument("--warp-size", type=int, default=256)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--json", help="write the results here")
  args = p.parse_args(argv)
  import jax

  commit = subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
  ).stdout.strip()
  result = {
    "meta": {
      "commit": commit,
      "device": str(jax.devices()[0]),
      "machine": platform.processor() or platform.machine(),
      "date": time.strftime("%Y-%m-%d"),
      "repeats": args.repeats,
    },
    "grad": [],
    "warp": None,
  }
  for n in [int(s) for s in args.grad_sizes.split(",") if s]:
    result["grad"].append(grad_cost(n, args.repeats))
    print(json.dumps(result["grad"][-1]), flush=True)
  if args.warp_size:
    result["warp"] = warp_cost(args.warp_size, args.repeats)
    print(json.dumps(result["warp"]), flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
