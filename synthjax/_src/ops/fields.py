"""Multi-scale (Perlin-type) random fields on small grids.

`multiscale_noise` is fractal value noise: Gaussian noise on a pyramid of small grids, the
coarsest first, each level upsampled (align-corners linear, `resample.resize_linear`) onto
the next finer grid and added to it, the finest level upsampled onto the volume. The grid
sizes are static (`ceil(n / 2**s)`, at least 2); the number of active levels is traced:
inactive levels add exact zeros, so `num_scales` levels out of `max_scales` give exactly
the field drawn with `max_scales = num_scales`: all levels are one draw of
`N(0, 1)`, finest level first, and with JAX's default counter-based threefry
(`jax_threefry_partitionable=True`) a prefix of a longer draw equals the shorter draw.

References:
  Perlin-type noise as in Hoffmann et al., SynthMorph (IEEE TMI 2022); Dey et al.,
  anatomix (2024), `datagen_utils.py` (`draw_perlin_volume`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from synthjax._src.ops import precision, resample, rng

_NORMALIZE = ("max", "std", None)


def scale_grid_shape(shape, level: int) -> tuple[int, ...]:
  """Grid of pyramid level `level`: `max(2, ceil(n / 2**level))` nodes per axis."""
  return tuple(max(2, int(math.ceil(n / 2**level))) for n in shape)


def multiscale_noise(
  key,
  shape,
  num_scales,
  max_scales: int,
  *,
  finest: int = 1,
  weights=None,
  normalize: str | None = "max",
) -> jax.Array:
  """Perlin-type multi-scale noise of shape `shape` (float32).

  Level `i = 0 .. max_scales - 1` is `N(0, 1)` noise (times `weights[i]`) on a grid of
  `scale_grid_shape(shape, finest + i)` nodes, so level 0 is the finest. Starting from the
  coarsest, the running sum is upsampled onto the next finer grid and that level's noise is
  added (FetalSynthGen's stage loop); the finest grid is upsampled onto `shape`. Levels
  `i >= num_scales` are masked, so the field is made of the `num_scales` finest levels and a
  larger `num_scales` adds coarser structure, as FetalSynthGen's `nstages`.

  Unlike FetalSynthGen (`interpolate(..., align_corners=False)`, grids `n // 2**s`) the
  upsampling is align-corners linear and grids are `ceil(n / 2**s)`, at least 2 nodes.

  Args:
    key: synthesis key. Level `i` is the slice `[o_i, o_i + size_i)` of
      `normal(key, (sum sizes,))`, levels laid out finest first.
    shape: static output shape (any rank; every axis is resized).
    num_scales: number of active levels (may be traced), clipped to `[0, max_scales]`.
    max_scales: static number of levels.
    finest: static pyramid level of the finest grid (1: half resolution, FetalSynthGen;
      2: quarter resolution, anatomix's finest scale 4 at 128^3).
    weights: optional `(max_scales,)` standard deviation per level (anatomix draws one per
      scale), finest first; default 1.
    normalize: `"max"` divides by `max |field|` (FetalSynthGen), `"std"` by the field's
      standard deviation about zero (`sqrt(mean(field**2))`), `None` leaves it. An all-zero
      field stays zero.

  Returns:
    The noise field, float32, of shape `shape`.
  """
  shape = tuple(int(n) for n in shape)
  if max_scales < 1:
    raise ValueError(f"max_scales must be >= 1, got {max_scales}")
  if finest < 0:
    raise ValueError(f"finest must be >= 0, got {finest}")
  if normalize not in _NORMALIZE:
    raise ValueError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")
  axes = tuple(range(len(shape)))
  num_scales = jnp.asarray(num_scales, jnp.int32)
  grids = [scale_grid_shape(shape, finest + i) for i in range(max_scales)]
  sizes = [math.prod(g) for g in grids]
  offsets = np.cumsum([0] + sizes)
  # One draw for all levels, finest first: one random op in the program instead of one per
  # level (compile time), and a level's values do not depend on `max_scales`.
  flat = rng.voxel_normal(key, (int(offsets[-1]),))
  acc = None
  for i in reversed(range(max_scales)):
    grid = grids[i]
    level = flat[offsets[i] : offsets[i + 1]].reshape(grid)
    if weights is not None:
      level = level * precision.real(weights)[i]
    level = jnp.where(i < num_scales, level, 0.0)
    acc = level if acc is None else resample.resize_linear(acc, grid, axes) + level
  assert acc is not None  # max_scales >= 1 was checked above
  field = resample.resize_linear(acc, shape, axes)
  if normalize is None:
    return field
  norm = jnp.max(jnp.abs(field)) if normalize == "max" else jnp.sqrt(jnp.mean(jnp.square(field)))
  return jnp.where(norm > 0, field / jnp.where(norm > 0, norm, 1.0), 0.0)
