"""Additive Gaussian noise on the [0, 1] image (SynthSeg, FetalSynthGen).

The voxel noise is a keyed hash of the synthesis key (`ops.rng`), so it does not hold a
threefry state per voxel.

References:
  Billot et al., SynthSeg (MedIA 2023); Zalevskyi et al., FetalSynthGen (MICCAI 2024).
"""

from __future__ import annotations

import jax

from synthjax._src.checks import Range, config_class, field, flag, prob, real_range
from synthjax._src.ops import draw, rng
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage


@config_class
class NoiseConfig:
  """Additive Gaussian noise on the [0, 1]-normalised image.

  Attributes:
    std: range of the noise standard deviation (FetalSynthGen's 5..15 on a 0..255 scale is
      (5/255, 15/255) here).
  """

  std: Range = field(default=(0.0, 0.0), check=real_range(low=0.0))
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=True, check=flag())


def sample_noise(key, cfg: NoiseConfig, fixed=None) -> dict:
  return draw.applied_and_uniform(key, cfg, fixed, "std")


def add_noise(key, x: jax.Array, p: dict, scale: float = 1.0) -> jax.Array:
  """`x` plus voxel noise of std `p["std"]` (times `scale`, `SynthConfig.voxel_std_scale`)."""
  std = p["std"] if scale == 1.0 else p["std"] * scale
  return x + rng.voxel_normal(key, x.shape) * std


STAGE = Stage(
  "noise",
  lambda k, c, f: sample_noise(k, c.noise, f),
  domain={"std": record.NONNEG},
  apply=lambda k, x, p, c, ctx: add_noise(k, x, p, ctx.std_scale),
  strength={"std": 0.0},
)
