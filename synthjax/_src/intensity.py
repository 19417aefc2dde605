"""Intensity stages: per-label Gaussians, bias field, gamma, noise and normalisation.

Every per-label table is indexed with the label-index map (no one-hot volumes). Random
realisations (voxel noise, the bias field's small grid) come from the synthesis key; the
stage strengths live in the params.

References:
  Billot et al., SynthSeg (MedIA 2023): `SampleConditionalGMM`, `BiasFieldCorruption`,
  `IntensityAugmentation`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synthjax._src import draw
from synthjax._src import lookup
from synthjax._src import resample
from synthjax._src import rng
from synthjax._src.config import BiasConfig, GammaConfig, GMMConfig, NoiseConfig


def sample_gmm(key, cfg: GMMConfig, num_labels: int, fixed=None) -> dict:
  """Draws a mean and a std per generation label and the background-zero switch."""
  k = jax.random.split(key, 3)
  return {
      "means": draw.pick(fixed, "means", draw.uniform(k[0], cfg.mean, (num_labels,))),
      "stds": draw.pick(fixed, "stds", draw.uniform(k[1], cfg.std, (num_labels,))),
      "background_zero": draw.pick(fixed, "background_zero",
                                   draw.bernoulli(k[2], cfg.prob_background_zero)),
  }


def render_gmm(key, p: dict, index_map: jax.Array, background_index: int) -> jax.Array:
  """`means[l] + stds[l] * N(0, 1)` at each voxel of label index `l`."""
  means = p["means"].astype(jnp.float32)
  stds = p["stds"].astype(jnp.float32)
  zero_bg = p["background_zero"] & (jnp.arange(means.shape[0]) == background_index)
  means = jnp.where(zero_bg, 0.0, means)
  stds = jnp.where(zero_bg, 0.0, stds)
  noise = rng.voxel_normal(key, index_map.shape)
  return lookup.take_small(means, index_map) + lookup.take_small(stds, index_map) * noise


def sample_bias(key, cfg: BiasConfig, fixed=None) -> dict:
  k = jax.random.split(key, 3)
  return {
      "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
      "std": draw.pick(fixed, "std", draw.uniform(k[1], cfg.std)),
      "grid_scale": draw.pick(fixed, "grid_scale", draw.uniform(k[2], cfg.grid_scale)),
  }


def bias_field(key, p: dict, cfg: BiasConfig, shape) -> jax.Array:
  """Multiplicative field `exp(upsample(N(0, std) on a small grid))` of shape `shape`."""
  shape = tuple(shape)
  g_max = tuple(draw.max_grid_size(cfg.grid_scale[1], s) for s in shape)
  small = jax.random.normal(key, g_max, jnp.float32) * p["std"]
  mats = [resample.dynamic_resize_matrix(shape[a], g_max[a],
                                         draw.grid_size(p["grid_scale"], shape[a], g_max[a]))
          for a in range(3)]
  return jnp.exp(resample.apply_separable(small, mats))


def sample_gamma(key, cfg: GammaConfig, fixed=None) -> dict:
  k = jax.random.split(key, 2)
  return {
      "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
      "log_gamma": draw.pick(fixed, "log_gamma", jax.random.normal(k[1], (), jnp.float32) * cfg.std),
  }


def normalize(x: jax.Array) -> jax.Array:
  """Min-max normalisation to [0, 1] (a constant image maps to 0)."""
  lo, hi = jnp.min(x), jnp.max(x)
  span = hi - lo
  return jnp.where(span > 0, (x - lo) / jnp.where(span > 0, span, 1.0), 0.0)


def apply_gamma(x: jax.Array, p: dict, cfg: GammaConfig) -> jax.Array:
  """Clips to [0, clip], normalises to [0, 1], then raises to `exp(log_gamma)` if applied."""
  x = normalize(jnp.clip(x, 0.0, cfg.clip))
  # exp(g log x) rather than x ** g: XLA's general power handles negative bases and
  # special exponents at twice the cost; here x is in [0, 1] and g > 0.
  powered = jnp.where(x > 0, jnp.exp(jnp.exp(p["log_gamma"]) * jnp.log(jnp.maximum(x, 1e-30))),
                      0.0)
  return jnp.where(p["applied"], powered, x)


def sample_noise(key, cfg: NoiseConfig, fixed=None) -> dict:
  k = jax.random.split(key, 2)
  return {
      "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
      "std": draw.pick(fixed, "std", draw.uniform(k[1], cfg.std)),
  }


def add_noise(key, x: jax.Array, p: dict) -> jax.Array:
  # A cond, not a where: an unapplied stage then draws no full-volume Gaussian (outside vmap).
  return jax.lax.cond(
      p["applied"],
      lambda x: x + rng.voxel_normal(key, x.shape) * p["std"],
      lambda x: x, x)
