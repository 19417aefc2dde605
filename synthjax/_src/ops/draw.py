"""Helpers shared by the stage samplers: draws that honour user-fixed values.

Each stage's sampler receives the stage's slice of `fixed` (a dict, possibly empty). A
value present there replaces the draw exactly, before any later draw that depends on it,
so fixing `resolution.resolution` still yields a thickness consistent with it
(FetalSynthGen's `genparams` rule).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def pick(fixed, name: str, sampled: jax.Array) -> jax.Array:
  """Returns `fixed[name]` cast to the dtype and shape of `sampled`, or `sampled`."""
  value = None if fixed is None else fixed.get(name)
  if value is None:
    return sampled
  value = jnp.asarray(value, dtype=sampled.dtype)
  if value.shape != sampled.shape:
    if value.ndim == 0:
      value = jnp.broadcast_to(value, sampled.shape)
    else:
      raise ValueError(
        f"fixed value for {name!r} has shape {value.shape}, expected {sampled.shape}"
      )
  return value


def uniform(key, lo_hi, shape=()) -> jax.Array:
  lo, hi = lo_hi
  return jax.random.uniform(key, shape, jnp.float32, minval=lo, maxval=hi)


def bernoulli(key, p: float) -> jax.Array:
  if p >= 1.0:
    return jnp.asarray(True)
  if p <= 0.0:
    return jnp.asarray(False)
  return jax.random.bernoulli(key, p)


def applied_and_uniform(key, cfg, fixed, *names: str) -> dict:
  """`applied ~ Bernoulli(cfg.prob)` and each of `names` drawn uniformly in the range
  `getattr(cfg, name)`: the params of a stage whose strengths are plain ranges.

  The key is split into `1 + len(names)` keys, `applied` first, then the names in order;
  a value present in `fixed` is used as is.
  """
  k = jax.random.split(key, 1 + len(names))
  out = {"applied": pick(fixed, "applied", bernoulli(k[0], cfg.prob))}
  for i, name in enumerate(names):
    out[name] = pick(fixed, name, uniform(k[i + 1], getattr(cfg, name)))
  return out


def stage_keys(key, n: int):
  return jax.random.split(key, n)


def grid_size(scale, n: int, n_max: int) -> jax.Array:
  """Number of small-grid nodes along an axis of size `n` (at least 2, at most `n_max`)."""
  return jnp.clip(jnp.ceil(scale * n), 2, n_max)


def max_grid_size(scale_hi: float, n: int) -> int:
  return int(max(2, min(n, int(np.ceil(scale_hi * n)))))
