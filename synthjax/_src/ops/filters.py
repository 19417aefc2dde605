"""Separable Gaussian filtering as one dense matrix per axis.

`gaussian_matrix` is scipy.ndimage's `gaussian_filter1d` (`mode="reflect"`, kernel radius
`TRUNCATE` sigmas) written as an `n x n` matrix with a traced sigma and a static maximal
radius, so the blur jits and vmaps with static shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from synthjax._src.ops import precision

TRUNCATE = 4.0  # kernel radius in sigmas, as scipy.ndimage.gaussian_filter


def reflect(i, n):
  # scipy's "reflect" (d c b a | a b c d | d c b a), valid for any offset.
  m = np.mod(i, 2 * n)
  return np.where(m >= n, 2 * n - 1 - m, m)


def gaussian_matrix(n: int, sigma, radius_max: int) -> jax.Array:
  """`(n, n)` matrix of a 1-D Gaussian filter with reflect boundaries.

  Matches `scipy.ndimage.gaussian_filter1d(x, sigma, mode="reflect", truncate=4.0)` for any
  `sigma` whose radius is at most `radius_max`; `sigma` may be traced.
  """
  d = np.arange(-radius_max, radius_max + 1)
  rows = np.repeat(np.arange(n), d.size)
  cols = reflect(rows + np.tile(d, n), n)
  sigma = jnp.maximum(precision.real(sigma), 1e-3)
  radius = jnp.floor(TRUNCATE * sigma + 0.5)
  df = jnp.asarray(d, sigma.dtype)
  w = jnp.where(jnp.abs(df) <= radius, jnp.exp(-0.5 * (df / sigma) ** 2), 0.0)
  w = w / jnp.sum(w)
  return jnp.zeros((n, n), w.dtype).at[rows, cols].add(jnp.tile(w, n))
