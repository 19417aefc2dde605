"""Element i of a batch is the single call for element i, bit for bit (CPU)."""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _batches import element

import synthjax
from synthjax import data as sdata
from synthjax._src.ops import batching, resample

SHAPE = (16, 16, 16)
B = 3


def _labels(values, shift=0.0):
  """Concentric shells of `values` (first = outside) on SHAPE, centre moved by `shift`."""
  g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
  r = np.sqrt(((g - shift) ** 2).sum(0)) + 0.15 * np.sin(3 * g[0]) * np.cos(2 * g[1])
  out = np.full(SHAPE, values[0], np.int32)
  for v, e in zip(values[1:], np.linspace(1.0, 0.1, len(values))[1:]):
    out[r < e] = v
  return out


FS = (0, 2, 3, 4, 41, 42, 43)
PRESETS = {
  "synthseg": (lambda: synthjax.presets.synthseg(FS, SHAPE, (1.5, 1.5, 1.5)), FS),
  "fetal": (lambda: synthjax.presets.fetal(range(8), SHAPE, (2.0, 2.0, 2.0)), tuple(range(8))),
  "anatomix_views": (lambda: synthjax.presets.anatomix_views(range(5), SHAPE), tuple(range(5))),
}


def _batch_minus_single(images, segs, keys, params, labels, cfg):
  """Per sample: (max |image difference|, whether image and seg are bitwise equal)."""
  out = []
  for i in range(len(keys)):
    p = element(params, i)
    lab = labels[i] if labels.ndim == 4 else labels
    image, seg = synthjax.synthesize(keys[i], p, lab, cfg)
    a, b = np.asarray(images[i]), np.asarray(image)
    same = np.array_equal(a, b) and np.array_equal(np.asarray(segs[i]), np.asarray(seg))
    out.append((float(np.max(np.abs(a - b))), bool(same)))
  return out


def compare_presets():
  """Batches of each preset against their single calls (one batch per case).

  `synthseg` and `anatomix_views` batch their label maps; `fetal` closes over one map, which
  is then a constant of the batched program and an argument of the single call; `pipeline`
  renders a batch with `synthjax.data.synthesize_batch` inside a jit with the sampler;
  `sharded` a batch with `synthjax.synthesize_sharded` over two devices.
  """
  out = {}
  for name, (make, values) in PRESETS.items():
    cfg = make()
    keys = jax.random.split(jax.random.key(3), B)
    params = synthjax.sample_params(jax.random.split(jax.random.key(4), B), cfg)
    if name == "fetal":
      labels = _labels(values)
      images, segs = jax.jit(
        jax.vmap(functools.partial(synthjax.synthesize, labels=labels, config=cfg))
      )(keys, params)
    else:
      labels = np.stack([_labels(values, 0.1 * i) for i in range(B)])
      images, segs = jax.jit(jax.vmap(functools.partial(synthjax.synthesize, config=cfg)))(
        keys, params, labels
      )
    out[name] = _batch_minus_single(images, segs, keys, params, labels, cfg)
  make, values = PRESETS["synthseg"]
  cfg = make()
  labels = np.stack([_labels(values, 0.1 * i) for i in range(B)])
  batch = {"labels": labels, "key": np.stack([sdata.sample_key_data(0, i) for i in range(B)])}
  images, segs, params = jax.jit(lambda b: sdata.synthesize_batch(b, cfg))(batch)
  keys = jnp.stack([jax.random.split(jax.random.wrap_key_data(k))[1] for k in batch["key"]])
  out["pipeline"] = _batch_minus_single(images, segs, keys, params, labels, cfg)
  devices = jax.devices()[:2]
  keys = jax.random.split(jax.random.key(7), 2 * B)
  params = synthjax.sample_params(jax.random.split(jax.random.key(8), 2 * B), cfg)
  labels = np.stack([_labels(values, 0.05 * i) for i in range(2 * B)])
  images, segs = synthjax.synthesize_sharded(keys, params, labels, cfg, devices=devices)
  out["sharded"] = _batch_minus_single(images, segs, keys, params, labels, cfg)
  return out


@pytest.fixture(scope="module")
def with_default_flags():
  """`compare_presets()` in a fresh process with XLA's default flags, what users run (the
  suite compiles at the lowest optimisation level, see tests/conftest.py; there the fetal
  preset's slice stacks round differently in a batch, by up to 4e-7)."""
  from conftest import without_fast_compile

  flags = without_fast_compile(os.environ.get("XLA_FLAGS", ""))
  env = dict(
    os.environ,
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=2".strip(),
  )
  proc = subprocess.run(
    [sys.executable, os.path.abspath(__file__)],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", ["synthseg", "fetal", "anatomix_views", "pipeline", "sharded"])
def test_batch_is_the_single_calls_bit_for_bit(with_default_flags, case):
  for i, (diff, same) in enumerate(with_default_flags[case]):
    assert same, f"{case}, sample {i}: max |batch - single| = {diff}"


def _gated(x, applied):
  # A stage gated by its `applied` flag, as the renderer gates every stage.
  return jax.lax.cond(applied, lambda v: jnp.sin(v) * 2.0, lambda v: v, x)


def _primitives(fn, *args):
  """Every primitive of `fn`'s jaxpr, sub-jaxprs (loop bodies, branches) included."""
  found = set()

  def walk(jaxpr):
    for e in jaxpr.eqns:
      found.add(e.primitive.name)
      for v in e.params.values():
        for sub in v if isinstance(v, (tuple, list)) else (v,):
          inner = getattr(sub, "jaxpr", None)
          if inner is not None:
            walk(getattr(inner, "jaxpr", inner))

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


def test_per_sample_runs_the_unbatched_program():
  """Under `vmap`, `per_sample` loops the single program over the samples: a gated stage
  stays a `cond` (computed only where applied), where a plain vmap turns it into a select
  of both branches; and each sample equals its single call bit for bit."""
  x = jnp.linspace(0.0, 3.0, 20).reshape(4, 5)
  applied = jnp.asarray([True, False, True, False])
  plain = _primitives(jax.vmap(_gated), x, applied)
  mapped = _primitives(jax.vmap(batching.per_sample(_gated)), x, applied)
  assert "cond" not in plain and "select_n" in plain
  assert {"scan", "cond"} <= mapped and "select_n" not in mapped
  got = np.asarray(jax.jit(jax.vmap(batching.per_sample(_gated)))(x, applied))
  single = np.stack([np.asarray(jax.jit(_gated)(x[i], applied[i])) for i in range(4)])
  np.testing.assert_array_equal(got, single)


def test_per_sample_shares_unbatched_arguments_and_keeps_gradients():
  f = batching.per_sample(lambda x, w: jnp.sum(jnp.sin(x) * w))
  x = jnp.linspace(0.0, 1.0, 12).reshape(3, 4)
  w = jnp.asarray([1.0, 2.0, 3.0, 4.0])
  got = jax.vmap(f, in_axes=(0, None))(x, w)
  np.testing.assert_allclose(got, np.sum(np.sin(np.asarray(x)) * np.asarray(w), axis=1), rtol=1e-6)
  gx, gw = jax.grad(f, argnums=(0, 1))(x[1], w)
  np.testing.assert_allclose(gx, np.cos(np.asarray(x[1])) * np.asarray(w), rtol=1e-6)
  np.testing.assert_allclose(gw, np.sin(np.asarray(x[1])), rtol=1e-6)
  batched = jax.vmap(jax.grad(f), in_axes=(0, None))(x, w)
  np.testing.assert_allclose(batched, np.cos(np.asarray(x)) * np.asarray(w), rtol=1e-6)


def test_static_resize_inside_a_loop_is_the_top_level_resize():
  # A static matrix product inside a `lax.map` body (and a cond in it) equals the same
  # product at the top level of a program, bit for bit.
  small = jax.random.normal(jax.random.key(1), (B, 2, 2, 2))
  on = jnp.ones(B, bool)
  f = lambda s, a: jax.lax.cond(
    a, lambda: resample.resize_linear(s, (4, 4, 4)), lambda: jnp.zeros((4, 4, 4))
  )
  looped = jax.jit(lambda s, a: jax.lax.map(lambda sa: f(*sa), (s, a)))(small, on)
  for i in range(B):
    np.testing.assert_array_equal(np.asarray(looped[i]), np.asarray(jax.jit(f)(small[i], on[i])))


if __name__ == "__main__":
  print(json.dumps(compare_presets()))
