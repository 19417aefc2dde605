"""Acquisition resolution simulation: slice-profile blur, then down- and up-sampling.

Along each axis the whole operation (slice-profile blur for the sampled thickness, linear
sampling at the low-resolution grid, linear interpolation back onto the output grid) is one
`n x n` matrix built from the sampled resolution. The profile is SynthSeg's Gaussian, or a
boxcar (the average over the slab) or a triangle, per `ResolutionConfig.slice_profile`.
Shapes stay static whatever the resolution, so the stage jits and vmaps; the volume is
touched by three dense `n x n` matrix products (6 n^4 FLOP, vectorised by XNNPACK on CPU).

References:
  Billot et al., SynthSeg (MedIA 2023): `SampleResolution`, `blurring_sigma_for_downsampling`,
  `DynamicGaussianBlur`, `MimicAcquisition`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from synthjax._src.checks import choice, config_class, field, flag, optional, positive, prob, real
from synthjax._src.ops import draw, filters, precision, resample
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage

SLICE_PROFILES = ("gaussian", "boxcar", "triangle")


@config_class
class ResolutionConfig:
  """Acquisition resolution simulation (SynthSeg's `SampleResolution`, `MimicAcquisition`).

  With probability `prob_iso` the acquisition is isotropic at `U[min_res, max_res_iso]`;
  otherwise one random axis gets `U[min_res, max_res_aniso]` and the others `min_res`.
  The slice thickness is `U[min_res, resolution]` per axis when `random_thickness`, else the
  resolution. The image is blurred along each axis by the slice profile of that axis'
  thickness, sampled on the low-resolution grid and linearly interpolated back onto the
  output grid.

  Attributes:
    min_res: lowest resolution in mm; `None` means the config spacing (per axis).
    blur_factor: Gaussian profile only: `sigma = blur_factor * thickness / spacing` voxels
      (SynthSeg's rule; 0.5 voxel on axes at the native resolution).
    blur_range: the profile's width (sigma or full width) is scaled by
      `U[1/blur_range, blur_range]`.
    slice_profile: "gaussian" (SynthSeg), "boxcar" (the average over a slab of full width
      `thickness`, with fractional end weights) or "triangle" (that boxcar convolved with
      itself: full width at half maximum `thickness`, base `2 * thickness`).
  """

  max_res_iso: float = field(default=4.0, check=positive())
  max_res_aniso: float = field(default=8.0, check=positive())
  min_res: float | None = field(default=None, check=optional(positive()))
  prob_iso: float = field(default=0.1, check=prob())
  random_thickness: bool = field(default=True, check=flag())
  blur_factor: float = field(default=0.75, check=positive())
  blur_range: float = field(default=1.03, check=real(low=1.0))
  slice_profile: str = field(default="gaussian", check=choice(SLICE_PROFILES))
  prob: float = field(default=0.95, check=prob())
  enabled: bool = field(default=True, check=flag())


# SynthSeg blurs axes kept at the native resolution with sigma 0.5 voxel.
NATIVE_SIGMA = 0.5


def min_resolution(cfg: ResolutionConfig, spacing) -> np.ndarray:
  if cfg.min_res is None:
    return np.asarray(spacing, np.float32)
  return np.full(3, cfg.min_res, np.float32)


def sample_resolution(key, cfg: ResolutionConfig, spacing, fixed=None) -> dict:
  """Draws the acquisition resolution and slice thickness (mm) per axis.

  Isotropic with probability `prob_iso`, else one random axis is thick.
  """
  k = jax.random.split(key, 7)
  lo_np = min_resolution(cfg, spacing)
  lo, lo_max = jnp.asarray(lo_np), float(lo_np.max())
  iso = jax.random.bernoulli(k[1], cfg.prob_iso)
  iso_res = jax.random.uniform(k[2], (), jnp.float32, lo_max, max(cfg.max_res_iso, lo_max))
  axis = jax.random.randint(k[3], (), 0, 3)
  aniso_res = jax.random.uniform(k[4], (), jnp.float32, lo_max, max(cfg.max_res_aniso, lo_max))
  res = jnp.where(
    iso, jnp.maximum(iso_res, lo), jnp.where(jnp.arange(3) == axis, jnp.maximum(aniso_res, lo), lo)
  )
  res = draw.pick(fixed, "resolution", res)
  if cfg.random_thickness:
    thick = lo + jax.random.uniform(k[5], (3,), jnp.float32) * jnp.maximum(res - lo, 0.0)
  else:
    thick = res
  thick = draw.pick(fixed, "thickness", thick)
  blur = jax.random.uniform(k[6], (), jnp.float32, 1.0 / cfg.blur_range, cfg.blur_range)
  return {
    "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
    "resolution": res,
    "thickness": thick,
    "blur_scale": draw.pick(fixed, "blur_scale", blur),
  }


def blur_sigma(thickness, spacing, blur_factor, blur_scale):
  """Gaussian sigma in voxels for a slice of `thickness` mm on a grid of `spacing` mm."""
  ratio = thickness / spacing
  sigma = jnp.where(ratio > 1.0 + 1e-6, blur_factor * ratio, NATIVE_SIGMA)
  return sigma * blur_scale


def profile_width(thickness, spacing, blur_scale):
  """Full width in voxels of a boxcar / triangle slice profile of `thickness` mm."""
  return thickness / spacing * blur_scale


def max_radius(cfg: ResolutionConfig, spacing) -> int:
  top = max(cfg.max_res_iso, cfg.max_res_aniso, *spacing) / min(spacing)
  if cfg.slice_profile != "gaussian":
    # Weights vanish beyond |d| >= w / 2 + 1/2 (boxcar) or w + 1/2 (triangle).
    half = top * cfg.blur_range * (0.5 if cfg.slice_profile == "boxcar" else 1.0)
    return int(math.floor(half + 0.5)) + 1
  sigma = max(cfg.blur_factor * top, NATIVE_SIGMA) * cfg.blur_range
  return int(math.floor(filters.TRUNCATE * sigma + 0.5)) + 1


def _profile_cdf(x, width, profile: str):
  # Cumulative of the unit-area profile of full width `width` (boxcar) or of the boxcar
  # convolved with itself (triangle, support [-width, width]).
  if profile == "boxcar":
    return jnp.clip(x / width + 0.5, 0.0, 1.0)
  u = jnp.clip(x, -width, width)
  return jnp.where(
    u <= 0.0, 0.5 * ((u + width) / width) ** 2, 1.0 - 0.5 * ((width - u) / width) ** 2
  )


def profile_matrix(n: int, width, radius_max: int, profile: str = "boxcar") -> jax.Array:
  """`(n, n)` matrix of a boxcar or triangle slice profile with reflect boundaries.

  Voxel offset `d` gets the profile's integral over `[d - 1/2, d + 1/2]`: for the boxcar,
  the length of that interval inside the slab `[-width / 2, width / 2]` divided by `width`
  (the slab average, with fractional end weights, so the result is continuous in a traced
  `width`, in voxels). A width of at most one voxel is the identity (boxcar). Weights past
  `radius_max` are dropped and the rest renormalised.
  """
  d = np.arange(-radius_max, radius_max + 1)
  rows = np.repeat(np.arange(n), d.size)
  cols = filters.reflect(rows + np.tile(d, n), n)
  width = jnp.maximum(precision.real(width), 1e-3)
  df = jnp.asarray(d, width.dtype)
  w = _profile_cdf(df + 0.5, width, profile) - _profile_cdf(df - 0.5, width, profile)
  w = w / jnp.sum(w)
  return jnp.zeros((n, n), w.dtype).at[rows, cols].add(jnp.tile(w, n))


def down_up_matrix(n: int, factor) -> jax.Array:
  """`(n, n)` matrix: linear sampling every `factor` voxels, then linear interpolation back.

  Low-resolution samples sit at `k * factor`, `k < K = floor((n - 1) / factor) + 1`; output
  voxel `i` reads the low-resolution signal at `min(i / factor, K - 1)` (as `np.interp`).
  """
  f = jnp.maximum(precision.real(factor), 1.0)
  k_count = jnp.floor((n - 1) / f) + 1.0
  i = jnp.arange(n, dtype=f.dtype)
  k = jnp.arange(n, dtype=f.dtype)
  t = jnp.minimum(i / f, k_count - 1.0)
  up = jnp.maximum(0.0, 1.0 - jnp.abs(t[:, None] - k[None, :]))
  down = jnp.maximum(0.0, 1.0 - jnp.abs(k[:, None] * f - i[None, :])) * (k < k_count)[:, None]
  return up @ down


def axis_operators(p: dict, cfg: ResolutionConfig, shape, spacing):
  """The three `(n, n)` per-axis operators of the resolution simulation."""
  radius_max = max_radius(cfg, spacing)
  mats = []
  for a in range(3):
    radius = min(radius_max, 4 * shape[a])
    if cfg.slice_profile == "gaussian":
      sigma = blur_sigma(p["thickness"][a], spacing[a], cfg.blur_factor, p["blur_scale"])
      blur = filters.gaussian_matrix(shape[a], sigma, radius)
    else:
      width = profile_width(p["thickness"][a], spacing[a], p["blur_scale"])
      blur = profile_matrix(shape[a], width, radius, cfg.slice_profile)
    mats.append(down_up_matrix(shape[a], p["resolution"][a] / spacing[a]) @ blur)
  return mats


def apply_resolution(x: jax.Array, p: dict, cfg: ResolutionConfig, spacing) -> jax.Array:
  """Blurs and resamples `x` as acquired at `p["resolution"]`."""
  return resample.apply_separable(x, axis_operators(p, cfg, x.shape, spacing))


STAGE = Stage(
  "resolution",
  lambda k, c, f: sample_resolution(k, c.resolution, c.spacing, f),
  domain={
    "resolution": record.POSITIVE,
    "thickness": record.POSITIVE,
    "blur_scale": record.POSITIVE,
  },
  apply=lambda k, x, p, c, ctx: apply_resolution(x, p, c, ctx.spacing),
  strength={"resolution": lambda c: c.spacing, "thickness": lambda c: c.spacing},
)
