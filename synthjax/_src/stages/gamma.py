"""Clipping, min-max normalisation and a gamma transform (SynthSeg's
`IntensityAugmentation`).

References:
  Billot et al., SynthSeg (MedIA 2023): `IntensityAugmentation`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synthjax._src.checks import config_class, field, flag, positive, prob, real
from synthjax._src.ops import draw
from synthjax._src.stages.record import Stage


@config_class
class GammaConfig:
  """Gamma transform `x ** exp(g)`, `g ~ N(0, std)`, on the [0, 1]-normalised image.

  Attributes:
    std: standard deviation of the log-gamma.
    clip: intensities are clipped to [0, clip] before normalisation (SynthSeg: 300).
  """

  std: float = field(default=0.5, check=real(low=0.0))
  clip: float = field(default=300.0, check=positive())
  prob: float = field(default=1.0, check=prob())
  enabled: bool = field(default=True, check=flag())


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
  """Clips to [0, clip], normalises to [0, 1], then raises to `exp(log_gamma)`.

  Where the stage is not applied, the generator still clips and normalises (`STAGE.off`).
  """
  x = normalize(jnp.clip(x, 0.0, cfg.clip))
  # exp(g log x) rather than x ** g: XLA's general power handles negative bases and
  # special exponents at twice the cost; here x is in [0, 1] and g > 0.
  powered = jnp.where(x > 0, jnp.exp(jnp.exp(p["log_gamma"]) * jnp.log(jnp.maximum(x, 1e-30))), 0.0)
  return powered


STAGE = Stage(
  "gamma",
  lambda k, c, f: sample_gamma(k, c.gamma, f),
  per_channel=True,
  apply=lambda k, x, p, c, ctx: apply_gamma(x, p, c),
  strength={"log_gamma": 0.0},
  # Without gamma the image is still clipped and brought to [0, 1].
  off=lambda x, c: normalize(jnp.clip(x, 0.0, c.clip)),
)
