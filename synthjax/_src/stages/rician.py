"""Rician noise, the noise of a magnitude image (MONAI's `RandRicianNoise`).

References:
  MONAI `RandRicianNoise`; Gudbjartsson and Patz, "The Rician distribution of noisy MRI
  data", MRM 1995.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synthjax._src.checks import Range, config_class, field, flag, prob, real_range
from synthjax._src.ops import draw, rng
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage


@config_class
class RicianConfig:
  """Rician noise `sqrt((x + n1)^2 + n2^2)`, `n1, n2 ~ N(0, std)` (MONAI's `RandRicianNoise`).

  The noise of a magnitude image reconstructed from complex data with Gaussian noise; on
  the [0, 1]-normalised image, after the k-space artifacts and before the Gaussian `noise`
  stage (an alternative to it: enable one or the other, or both).

  Attributes:
    std: range of the standard deviation of each of the two Gaussian components.
  """

  std: Range = field(default=(0.0, 0.05), check=real_range(low=0.0))
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


def sample_rician(key, cfg: RicianConfig, fixed=None) -> dict:
  return draw.applied_and_uniform(key, cfg, fixed, "std")


def add_rician(key, x: jax.Array, p: dict) -> jax.Array:
  """`sqrt((x + n1)^2 + n2^2)`, `n1, n2 ~ N(0, std)` drawn from `key`."""
  n = rng.voxel_normal(key, (2,) + x.shape) * p["std"]
  return jnp.sqrt((x + n[0]) ** 2 + n[1] ** 2)


STAGE = Stage(
  "rician",
  lambda k, c, f: sample_rician(k, c.rician, f),
  domain={"std": record.NONNEG},
  apply=lambda k, x, p, c, ctx: add_rician(k, x, p),
  strength={"std": 0.0},
)
