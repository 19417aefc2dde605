"""Multiplicative smooth bias field (SynthSeg's `BiasFieldCorruption`).

The log-field is drawn on a small grid from the synthesis key and upsampled linearly onto
the output grid.

References:
  Billot et al., SynthSeg (MedIA 2023): `BiasFieldCorruption`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synthjax._src.checks import Range, config_class, field, flag, prob, real_range
from synthjax._src.ops import draw, resample
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage


@config_class
class BiasConfig:
  """Multiplicative smooth bias field `exp(N(0, std))` drawn on a small grid.

  Attributes:
    std: range of the log-field standard deviation.
    grid_scale: range of the ratio between the small grid and the output shape.
  """

  std: Range = field(default=(0.0, 0.7), check=real_range(low=0.0))
  grid_scale: Range = field(
    default=(0.025, 0.025), check=real_range(low=0.0, high=1.0, low_open=True)
  )
  prob: float = field(default=0.95, check=prob())
  enabled: bool = field(default=True, check=flag())


def sample_bias(key, cfg: BiasConfig, fixed=None) -> dict:
  return draw.applied_and_uniform(key, cfg, fixed, "std", "grid_scale")


def bias_field(key, p: dict, cfg: BiasConfig, shape) -> jax.Array:
  """Multiplicative field `exp(upsample(N(0, std) on a small grid))` of shape `shape`."""
  shape = tuple(shape)
  g_max = tuple(draw.max_grid_size(cfg.grid_scale[1], s) for s in shape)
  small = jax.random.normal(key, g_max, jnp.float32) * p["std"]
  mats = [
    resample.dynamic_resize_matrix(
      shape[a], g_max[a], draw.grid_size(p["grid_scale"], shape[a], g_max[a])
    )
    for a in range(3)
  ]
  return jnp.exp(resample.apply_separable(small, mats))


def apply_bias(key, image: jax.Array, p: dict, cfg: BiasConfig, ctx) -> jax.Array:
  """The image times the bias field."""
  return image * bias_field(key, p, cfg, ctx.shape)


STAGE = Stage(
  "bias",
  lambda k, c, f: sample_bias(k, c.bias, f),
  per_channel=True,
  domain={"std": record.NONNEG, "grid_scale": record.GRID},
  apply=apply_bias,
  strength={"std": 0.0},
)
