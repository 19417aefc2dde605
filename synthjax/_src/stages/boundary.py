"""FetalSynthGen's brain-extraction boundaries (`SimulatedBoundaries`).

No mask at all, the brain mask (`seg > 0`), a "halo" (the mask dilated by a ball of 5..14
voxels), or "fuzzy" irregular boundaries. The ball dilation thresholds an exact squared
Euclidean distance transform truncated at a static radius (`ops.morphology`), so it equals
`scipy.ndimage.binary_dilation` with a ball for any traced radius up to that maximum.
Skull-stripping masks the image by the deformed foreground, so the stage runs last.

References:
  FetalSynthGen (Medical-Image-Analysis-Laboratory/fetalsyngen),
  `generator/augmentation/artifacts.py`: `SimulatedBoundaries`;
  `generator/artifacts/utils.py`: `dilate`, `erode`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from synthjax._src.checks import Range, config_class, field, flag, int_range, prob, real, real_range
from synthjax._src.ops import draw, morphology, resample
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage


@config_class
class BoundaryConfig:
  """Brain-extraction boundaries (FetalSynthGen's `SimulatedBoundaries`).

  When applied, with probability `prob_no_mask` the image is left as is; otherwise it is
  multiplied by a mask built from the foreground (`seg > 0`): with probability `prob_halo`
  the foreground dilated by a ball of radius `U{halo_radius}` voxels, and with probability
  `prob_fuzzy` irregular "fuzzy" boundaries that extend the (halo) mask further by a
  spatially varying radius `fuzzy_width * u_c(x) + fuzzy_jitter * u_f(x)` voxels, with
  `u_c`, `u_f` in [0, 1] smooth random fields (linear upsampling of uniform values on grids
  of `ceil(scale * n)` nodes per axis).

  The fuzzy mask approximates the peer's morphology loop (random band pixels, 27-neighbour
  threshold and closing repeated 2..4 times, then per-surface-voxel dilation levels from a
  mixture of ~100 Gaussian blobs of sigma ~8..18): like it, it contains the (halo) mask and
  extends it by a smoothly varying depth (coarse field) with a ragged fringe (fine field);
  it is not the same distribution of shapes.

  Attributes:
    prob_no_mask: probability of no masking (peer: 0.5).
    prob_halo: probability of the halo when masking (peer: 0.5).
    halo_radius: inclusive range of the halo ball radius in voxels (peer: `randint(5, 15)`).
    prob_fuzzy: probability of fuzzy boundaries when masking (peer: 0.5).
    fuzzy_width: range of the maximal smooth extension, in voxels.
    fuzzy_jitter: range of the maximal ragged extension, in voxels.
    fuzzy_grid_scale: node count / shape of the coarse field (256 -> 16 nodes).
    jitter_grid_scale: node count / shape of the fine field (256 -> 77 nodes).
  """

  prob_no_mask: float = field(default=0.5, check=prob())
  prob_halo: float = field(default=0.5, check=prob())
  halo_radius: tuple[int, int] = field(default=(5, 14), check=int_range(low=0))
  prob_fuzzy: float = field(default=0.5, check=prob())
  fuzzy_width: Range = field(default=(2.0, 10.0), check=real_range(low=0.0))
  fuzzy_jitter: Range = field(default=(0.0, 3.0), check=real_range(low=0.0))
  fuzzy_grid_scale: float = field(default=0.06, check=real(low=0.0, high=1.0, low_open=True))
  jitter_grid_scale: float = field(default=0.3, check=real(low=0.0, high=1.0, low_open=True))
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


def sample_boundary(key, cfg: BoundaryConfig, fixed=None) -> dict:
  """Applied, the `no_mask`/`halo`/`fuzzy` switches, halo radius and fuzzy extents.

  The switches are drawn independently (the peer draws `halo` and `fuzzy` only when
  masking; here they are recorded but unused when `no_mask`).
  """
  k = jax.random.split(key, 7)
  lo, hi = cfg.halo_radius
  return {
    "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
    "no_mask": draw.pick(fixed, "no_mask", draw.bernoulli(k[1], cfg.prob_no_mask)),
    "halo": draw.pick(fixed, "halo", draw.bernoulli(k[2], cfg.prob_halo)),
    "halo_radius": draw.pick(
      fixed, "halo_radius", jax.random.randint(k[3], (), lo, hi + 1, jnp.int32)
    ),
    "fuzzy": draw.pick(fixed, "fuzzy", draw.bernoulli(k[4], cfg.prob_fuzzy)),
    "fuzzy_width": draw.pick(fixed, "fuzzy_width", draw.uniform(k[5], cfg.fuzzy_width)),
    "fuzzy_jitter": draw.pick(fixed, "fuzzy_jitter", draw.uniform(k[6], cfg.fuzzy_jitter)),
  }


def _smooth_uniform(key, shape, scale: float) -> jax.Array:
  g = tuple(draw.max_grid_size(scale, n) for n in shape)
  return resample.resize_linear(jax.random.uniform(key, g, jnp.float32), shape)


def boundary_mask(key, p: dict, cfg: BoundaryConfig, foreground: jax.Array) -> jax.Array:
  """The bool mask of `apply_boundary` (ignores `applied` and `no_mask`).

  Voxels within `R(x) = halo * halo_radius + fuzzy * (fuzzy_width * u_c(x) + fuzzy_jitter *
  u_f(x))` of the foreground, with the fields `u_c`, `u_f` in [0, 1] drawn from `key`:
  plain (`R = 0`): `foreground`; halo only:
  `morphology.dilate_ball(foreground, halo_radius)`. Radii are
  clipped to the config ranges' upper ends, which size the static distance transform.

  One distance transform serves every mode (under `vmap` a switch between modes would
  compute all of them); it is skipped (outside `vmap`) when neither halo nor fuzzy is on.
  """
  fg = jnp.asarray(foreground).astype(bool)
  shape = fg.shape
  h_max = cfg.halo_radius[1]
  w_max, j_max = cfg.fuzzy_width[1], cfg.fuzzy_jitter[1]
  r_max = int(math.ceil(h_max + w_max + j_max))

  def dilated():
    k1, k2 = jax.random.split(key)
    width = jnp.clip(p["fuzzy_width"], 0.0, w_max)
    jitter = jnp.clip(p["fuzzy_jitter"], 0.0, j_max)
    extra = width * _smooth_uniform(k1, shape, cfg.fuzzy_grid_scale) + jitter * _smooth_uniform(
      k2, shape, cfg.jitter_grid_scale
    )
    r_halo = jnp.clip(p["halo_radius"], 0, h_max).astype(jnp.float32)
    radius = jnp.where(p["halo"], r_halo, 0.0) + jnp.where(p["fuzzy"], extra, 0.0)
    return morphology.squared_distance(fg, r_max) <= radius * radius

  return jax.lax.cond(p["halo"] | p["fuzzy"], dilated, lambda: fg)


def apply_boundary(
  key, image: jax.Array, p: dict, cfg: BoundaryConfig, foreground: jax.Array
) -> jax.Array:
  """`image * mask`, or `image` unchanged when `no_mask`.

  Args:
    key: synthesis key; draws the fuzzy fields.
    image: `(X, Y, Z)` float image.
    p: params from `sample_boundary`.
    cfg: the stage config.
    foreground: bool `(X, Y, Z)`, `seg > 0` of the deformed segmentation.

  Returns:
    The masked image, float32.
  """
  record.check_mask_shape("foreground", foreground, image.shape)

  def on(x):
    return x * boundary_mask(key, p, cfg, foreground).astype(x.dtype)

  return jax.lax.cond(p["no_mask"], lambda x: x, on, image.astype(jnp.float32))


# Skull-stripping boundaries mask the image by the deformed foreground.
STAGE = Stage(
  "boundary",
  lambda k, c, f: sample_boundary(k, c.boundary, f),
  domain={
    "halo_radius": record.NONNEG,
    "fuzzy_width": record.NONNEG,
    "fuzzy_jitter": record.NONNEG,
  },
  strength={},
  apply=lambda k, x, p, c, ctx: apply_boundary(k, x, p, c, ctx.index_map != ctx.background_index),
)
