"""Multi-scale (Perlin-type) noise, FetalSynthGen's structural noise and anatomix's texture.

`multiscale_noise` is fractal value noise: Gaussian noise on a pyramid of small grids, the
coarsest first, each level upsampled (align-corners linear, `resample.resize_linear`) onto
the next finer grid and added to it, the finest level upsampled onto the volume. The grid
sizes are static (`ceil(n / 2**s)`, at least 2); the number of active levels is traced:
inactive levels add exact zeros, so `num_scales` levels out of `max_scales` give exactly
the field drawn with `max_scales = num_scales`: all levels are one draw of
`N(0, 1)`, finest level first, and with JAX's default counter-based threefry
(`jax_threefry_partitionable=True`) a prefix of a longer draw equals the shorter draw.

Two stages use it:

- **struct noise** (FetalSynthGen `StructNoise`): `x + std * noise` (noise with
  `max |.| = 1`), clamped to `[0, 2 max x]`, blended into the image with a mixture of
  isotropic Gaussian blobs centred at random voxels of a region (FetalSynthGen: the white
  matter), `mask = clip(sum_b exp(-|v - c_b|^2 / (2 sigma_b^2)), 0, 1)`,
  `out = mask * noisy + (1 - mask) * x`. Runs on the [0, 1] image.
- **texture** (anatomix, `synthetic-data-generation/step2_generate_views.py`): the GMM
  intensities are *multiplied* by `1 + amplitude[label] * noise` (anatomix:
  `image * (1 + 0.02 * perlin)`, one field for the whole image; here the field has unit
  std and each label has its own amplitude). Runs on the GMM image, before the bias field.

The params (strengths, counts, blob widths) are drawn by `sample_*` from the params key;
the noise fields and the blob centres are realisations drawn from the synthesis key.

References:
  Zalevskyi et al., FetalSynthGen (2024), `fetalsyngen/generator/augmentation/artifacts.py`
  (`StructNoise`) and `artifacts/utils.py` (`mog_3d_tensor`); Dey et al., anatomix (2024),
  `synthetic-data-generation/datagen_utils.py` (`draw_perlin_volume`); Perlin-type noise as
  in Hoffmann et al., SynthMorph (IEEE TMI 2022).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import jax
import jax.numpy as jnp

from synthjax._src import draw
from synthjax._src import lookup
from synthjax._src import resample
from synthjax._src import rng
from synthjax._src.config import StructNoiseConfig, TextureConfig

_NORMALIZE = ("max", "std", None)


# ---------------------------------------------------------------------------------------
# Multi-scale noise


def scale_grid_shape(shape, level: int) -> tuple[int, ...]:
  """Grid of pyramid level `level`: `max(2, ceil(n / 2**level))` nodes per axis."""
  return tuple(max(2, int(math.ceil(n / 2 ** level))) for n in shape)


def multiscale_noise(key, shape, num_scales, max_scales: int, *, finest: int = 1,
                     weights=None, normalize: Optional[str] = "max") -> jax.Array:
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
    level = flat[offsets[i]:offsets[i + 1]].reshape(grid)
    if weights is not None:
      level = level * jnp.asarray(weights, jnp.float32)[i]
    level = jnp.where(i < num_scales, level, 0.0)
    acc = level if acc is None else resample.resize_linear(acc, grid, axes) + level
  field = resample.resize_linear(acc, shape, axes)
  if normalize is None:
    return field
  if normalize == "max":
    norm = jnp.max(jnp.abs(field))
  else:
    norm = jnp.sqrt(jnp.mean(jnp.square(field)))
  return jnp.where(norm > 0, field / jnp.where(norm > 0, norm, 1.0), 0.0)


# ---------------------------------------------------------------------------------------
# Structural noise (FetalSynthGen)


def sample_struct_noise(key, cfg: StructNoiseConfig, fixed=None) -> dict:
  """Applied, noise `std`, `num_blobs`, `num_stages` and `num_blobs[1]` blob `sigmas`."""
  k = jax.random.split(key, 5)
  b_lo, b_hi = cfg.num_blobs
  s_lo, s_hi = cfg.num_stages
  lo, hi = cfg.sigma_clip
  sigmas = jnp.clip(cfg.sigma_mean + cfg.sigma_std * jax.random.normal(k[4], (b_hi,), jnp.float32),
                    lo, hi)
  return {
      "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
      "std": draw.pick(fixed, "std", draw.uniform(k[1], cfg.std)),
      "num_blobs": draw.pick(fixed, "num_blobs",
                             jax.random.randint(k[2], (), b_lo, b_hi + 1, jnp.int32)),
      "num_stages": draw.pick(fixed, "num_stages",
                              jax.random.randint(k[3], (), s_lo, s_hi + 1, jnp.int32)),
      "sigmas": draw.pick(fixed, "sigmas", sigmas),
  }


def region_mask(labels: jax.Array, values) -> jax.Array:
  """Boolean volume of the voxels of `labels` whose value is in `values` (static)."""
  out = jnp.zeros(labels.shape, bool)
  for v in values:
    out = out | (labels == v)
  return out


def random_voxels(key, mask: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
  """`num` voxels drawn uniformly (with replacement) among the true voxels of `mask`.

  A uniform integer below the voxel count is located in the running count of the mask
  (`cumsum` + `searchsorted`), as FetalSynthGen's `randint` over `nonzero(wm)`.

  Returns:
    `(coords, nonempty)`: int32 `(num, 3)` voxel indices (zeros when the mask is empty) and
    whether the mask has any voxel.
  """
  counts = jnp.cumsum(mask.reshape(-1).astype(jnp.int32))
  total = counts[-1]
  u = jax.random.randint(key, (num,), 0, jnp.maximum(total, 1), jnp.int32)
  flat = jnp.searchsorted(counts, u, side="right").astype(jnp.int32)
  flat = jnp.minimum(flat, counts.shape[0] - 1)
  coords = jnp.stack(jnp.unravel_index(flat, mask.shape), axis=-1).astype(jnp.int32)
  return coords, total > 0


def gaussian_blobs(shape, centres: jax.Array, sigmas: jax.Array, active: jax.Array) -> jax.Array:
  """`clip(sum_b exp(-|v - c_b|^2 / (2 sigma_b^2)), 0, 1)` over the active blobs.

  Each blob is the outer product of three 1-D Gaussians, so the sum is one contraction over
  the blob axis (cost `volume * blobs`), as FetalSynthGen's `mog_3d_tensor` (sum, then
  clamp to [0, 1]).

  Args:
    shape: static 3-D shape.
    centres: `(B, 3)` voxel coordinates.
    sigmas: `(B,)` widths in voxels (floored at 1e-3).
    active: `(B,)` bool; inactive blobs contribute nothing.
  """
  centres = centres.astype(jnp.float32)
  # A floor keeps a (user-fixed) zero width a one-voxel blob instead of 0 * inf = NaN.
  inv = 1.0 / (2.0 * jnp.square(jnp.maximum(sigmas.astype(jnp.float32), 1e-3)))
  g = [jnp.exp(-jnp.square(jnp.arange(n, dtype=jnp.float32)[None, :] - centres[:, a:a + 1])
               * inv[:, None]) for a, n in enumerate(shape)]
  g[0] = jnp.where(active[:, None], g[0], 0.0)
  return jnp.clip(jnp.einsum("bx,by,bz->xyz", g[0], g[1], g[2]), 0.0, 1.0)


def apply_struct_noise(key, image: jax.Array, p: dict, cfg: StructNoiseConfig,
                       region: jax.Array) -> jax.Array:
  """Blends multi-scale noise into `image` around random voxels of `region`, if applied.

  Args:
    key: synthesis key (noise field and blob centres).
    image: 3-D float image, in [0, 1] in the pipeline.
    p: params from `sample_struct_noise`.
    cfg: the stage config (static).
    region: boolean volume of the voxels where blobs may be centred (e.g. white matter).

  Returns:
    `mask * clip(image + std * noise, 0, 2 max image) + (1 - mask) * image`; `image`
    itself when not applied or when `region` is empty.
  """
  shape = image.shape

  def on(x):
    k_noise, k_centres = jax.random.split(key)
    x = x.astype(jnp.float32)
    noise = multiscale_noise(k_noise, shape, p["num_stages"], cfg.num_stages[1],
                             finest=1, normalize="max")
    noisy = jnp.clip(x + p["std"] * noise, 0.0, 2.0 * jnp.max(x))
    centres, nonempty = random_voxels(k_centres, region, cfg.num_blobs[1])
    active = (jnp.arange(cfg.num_blobs[1]) < p["num_blobs"]) & nonempty
    mask = gaussian_blobs(shape, centres, p["sigmas"], active)
    return mask * noisy + (1.0 - mask) * x

  return jax.lax.cond(p["applied"], on, lambda x: x.astype(jnp.float32), image)


# ---------------------------------------------------------------------------------------
# Texture (anatomix)


def sample_texture(key, cfg: TextureConfig, num_labels: int, fixed=None) -> dict:
  """Applied, per-label `amplitude` `(num_labels,)`, `num_scales`, per-level `weights`."""
  k = jax.random.split(key, 4)
  lo, hi = cfg.num_scales
  return {
      "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
      "amplitude": draw.pick(fixed, "amplitude", draw.uniform(k[1], cfg.amplitude,
                                                              (num_labels,))),
      "num_scales": draw.pick(fixed, "num_scales",
                              jax.random.randint(k[2], (), lo, hi + 1, jnp.int32)),
      "weights": draw.pick(fixed, "weights", draw.uniform(k[3], cfg.scale_weight, (hi,))),
  }


def texture_field(key, p: dict, cfg: TextureConfig, shape) -> jax.Array:
  """The unit-std multi-scale field of the texture stage."""
  return multiscale_noise(key, shape, p["num_scales"], cfg.num_scales[1],
                          finest=cfg.finest_scale, weights=p["weights"], normalize="std")


def apply_texture(key, image: jax.Array, p: dict, cfg: TextureConfig, index_map: jax.Array,
                  background_index: Optional[int] = None) -> jax.Array:
  """Multiplies `image` by `max(1 + amplitude[index_map] * noise, 0)`, if applied.

  Args:
    key: synthesis key (the noise field).
    image: the GMM intensities (any scale; 0..255 in the pipeline), before the bias field.
    p: params from `sample_texture`.
    cfg: the stage config (static).
    index_map: int label-index map of `image`'s shape, indexing `p["amplitude"]`.
    background_index: static label index left untextured (`None`: none).

  Returns:
    The textured image (float32); `image` itself when not applied.
  """
  amp = p["amplitude"].astype(jnp.float32)
  if background_index is not None:
    amp = amp.at[background_index].set(0.0)

  def on(x):
    noise = texture_field(key, p, cfg, x.shape)
    return x * jnp.maximum(1.0 + lookup.take_small(amp, index_map) * noise, 0.0)

  return jax.lax.cond(p["applied"], on, lambda x: x, image.astype(jnp.float32))
