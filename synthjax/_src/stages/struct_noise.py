"""FetalSynthGen's structural noise in a region (`StructNoise`, a super-resolution artifact).

`x + std * noise` (a multi-scale field with `max |.| = 1`, `ops.fields.multiscale_noise`),
clamped to `[0, 2 max x]`, blended into the image with a mixture of isotropic Gaussian
blobs centred at random voxels of a region (FetalSynthGen: the white matter),
`mask = clip(sum_b exp(-|v - c_b|^2 / (2 sigma_b^2)), 0, 1)`,
`out = mask * noisy + (1 - mask) * x`. Runs on the [0, 1] image. The noise field and the
blob centres are realisations drawn from the synthesis key.

References:
  Zalevskyi et al., FetalSynthGen (2024), `fetalsyngen/generator/augmentation/artifacts.py`
  (`StructNoise`) and `artifacts/utils.py` (`mog_3d_tensor`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synthjax._src.checks import (
  Range,
  config_class,
  field,
  flag,
  int_range,
  integers,
  prob,
  real,
  real_range,
)
from synthjax._src.ops import draw, fields, precision
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage


@config_class
class StructNoiseConfig:
  """Structural noise in a region (FetalSynthGen's `StructNoise`, an SR artifact).

  A multi-scale noise field (`num_stages` levels from half resolution down, normalised to
  `max |.| = 1`) is added with weight `std` to the [0, 1] image and clamped to
  `[0, 2 max x]`; the result is blended into the image with a mixture of `num_blobs`
  isotropic Gaussian blobs (widths `clip(N(sigma_mean, sigma_std), *sigma_clip)` voxels)
  centred at random voxels of the region (FetalSynthGen: the white matter, label 3 of
  FeTA). An empty region leaves the image unchanged.

  Defaults mirror FetalSynthGen's documented configuration (`docs/sr_artif_api.md`:
  `std_min 0.2, std_max 0.4, nloc_min 5, nloc_max 15`, `nstages` 1..5, `sigma_mu 25`,
  `sigma_std 5`, clamp [1, 40]), with numpy's exclusive upper bounds made inclusive
  (`randint(5, 15)` is 5..14, `randint(1, 5)` is 1..4). FetalSynthGen's stage is optional
  (absent from its default generator; its docs suggest `prob 0.4`), so here it is off by
  default: `enabled=False`, `prob=0`.

  Attributes:
    std: range of the noise weight (on the [0, 1] image).
    num_blobs: range of the (integer) number of blobs (FetalSynthGen's `nloc`); the high end
      fixes the params shape.
    num_stages: range of the (integer) number of noise levels (FetalSynthGen's `nstages`).
    sigma_mean, sigma_std: mean and std of the Gaussian prior on each blob's width, voxels.
    sigma_clip: the blob widths are clipped to this range (voxels).
    region_labels: label values whose voxels may hold blob centres (FetalSynthGen's
      `wm_label`); used by the generator to build the region mask.
  """

  std: Range = field(default=(0.2, 0.4), check=real_range(low=0.0))
  num_blobs: tuple[int, int] = field(
    default=(5, 14), check=int_range(low=0, high_at_least=1, what="blob")
  )
  num_stages: tuple[int, int] = field(default=(1, 4), check=int_range(low=1))
  sigma_mean: float = field(default=25.0, check=real(low=0.0))
  sigma_std: float = field(default=5.0, check=real(low=0.0))
  sigma_clip: Range = field(default=(1.0, 40.0), check=real_range(low=0.0, low_open=True))
  region_labels: tuple[int, ...] = field(default=(3,), check=integers())
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


def sample_struct_noise(key, cfg: StructNoiseConfig, fixed=None) -> dict:
  """Applied, noise `std`, `num_blobs`, `num_stages` and `num_blobs[1]` blob `sigmas`."""
  k = jax.random.split(key, 5)
  b_lo, b_hi = cfg.num_blobs
  s_lo, s_hi = cfg.num_stages
  lo, hi = cfg.sigma_clip
  sigmas = jnp.clip(
    cfg.sigma_mean + cfg.sigma_std * jax.random.normal(k[4], (b_hi,), jnp.float32), lo, hi
  )
  return {
    "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
    "std": draw.pick(fixed, "std", draw.uniform(k[1], cfg.std)),
    "num_blobs": draw.pick(
      fixed, "num_blobs", jax.random.randint(k[2], (), b_lo, b_hi + 1, jnp.int32)
    ),
    "num_stages": draw.pick(
      fixed, "num_stages", jax.random.randint(k[3], (), s_lo, s_hi + 1, jnp.int32)
    ),
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
  inv = 1.0 / (2.0 * jnp.square(jnp.maximum(precision.real(sigmas), 1e-3)))
  g = [
    jnp.exp(
      -jnp.square(jnp.arange(n, dtype=jnp.float32)[None, :] - centres[:, a : a + 1]) * inv[:, None]
    )
    for a, n in enumerate(shape)
  ]
  g[0] = jnp.where(active[:, None], g[0], 0.0)
  return jnp.clip(jnp.einsum("bx,by,bz->xyz", g[0], g[1], g[2]), 0.0, 1.0)


def apply_struct_noise(
  key, image: jax.Array, p: dict, cfg: StructNoiseConfig, region: jax.Array
) -> jax.Array:
  """Blends multi-scale noise into `image` around random voxels of `region`.

  Args:
    key: synthesis key (noise field and blob centres).
    image: 3-D float image, in [0, 1] in the pipeline.
    p: params from `sample_struct_noise`.
    cfg: the stage config (static).
    region: boolean volume of the voxels where blobs may be centred (e.g. white matter).

  Returns:
    `mask * clip(image + std * noise, 0, 2 max image) + (1 - mask) * image`; `image`
    itself when `region` is empty.
  """
  shape = image.shape
  k_noise, k_centres = jax.random.split(key)
  x = precision.real(image)
  noise = fields.multiscale_noise(
    k_noise, shape, p["num_stages"], cfg.num_stages[1], finest=1, normalize="max"
  )
  noisy = jnp.clip(x + p["std"] * noise, 0.0, 2.0 * jnp.max(x))
  centres, nonempty = random_voxels(k_centres, region, cfg.num_blobs[1])
  active = (jnp.arange(cfg.num_blobs[1]) < p["num_blobs"]) & nonempty
  mask = gaussian_blobs(shape, centres, p["sigmas"], active)
  return mask * noisy + (1.0 - mask) * x


# FetalSynthGen runs it among its artifacts, after the noise.
STAGE = Stage(
  "struct_noise",
  lambda k, c, f: sample_struct_noise(k, c.struct_noise, f),
  domain={
    "std": record.NONNEG,
    "sigmas": record.POSITIVE,
    "num_blobs": record.count("sigmas"),
    "num_stages": record.Bounds(1),
  },
  apply=lambda k, x, p, c, ctx: apply_struct_noise(
    k, x, p, c, record.label_mask(c.region_labels, ctx)
  ),
  strength={"std": 0.0},
)
