"""The per-sample mapping that makes element i of a batch the single call for element i, bit
for bit (CPU). The presets' batches are checked against their single calls with XLA's
default flags, in the golden test's process (`tests/test_golden.py`)."""

import jax
import jax.numpy as jnp
import numpy as np

from synthjax._src.ops import batching, resample

B = 3


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
