"""anatomix's multi-scale multiplicative texture inside labels.

The GMM intensities are *multiplied* by `1 + amplitude[label] * noise` (anatomix:
`image * (1 + 0.02 * perlin)`, one field for the whole image; here the field has unit std
and each label has its own amplitude), with `noise` a multi-scale (Perlin-type) field
(`ops.fields.multiscale_noise`) drawn from the synthesis key. Runs on the GMM image,
before the bias field.

References:
  Dey et al., anatomix (2024), `synthetic-data-generation/step2_generate_views.py` and
  `datagen_utils.py` (`draw_perlin_volume`).
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
  integer,
  prob,
  real_range,
)
from synthjax._src.ops import draw, fields, lookup, precision
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage


@config_class
class TextureConfig:
  """Multi-scale multiplicative texture inside labels (anatomix's Perlin texture).

  The GMM intensities are multiplied by `1 + amplitude[label] * noise` (clipped at 0), where
  `noise` is a unit-std multi-scale field: `num_scales` levels from a finest grid of
  `shape / 2**finest_scale` nodes, level `i` weighted by `U[scale_weight]`.

  anatomix (`step2_generate_views.py`) multiplies the GMM image by `1 + 0.02 * perlin`,
  `perlin` the sum of four levels at scales 4, 8, 16, 32 voxels (grids `n/4 .. n/32`)
  with per-level std `U[0, 5]`: a modulation of std `0.02 * sqrt(sum std_i^2)`, between 0
  and 0.2 (0.12 on average). The defaults mirror it: `finest_scale=2`, `num_scales=(4, 4)`,
  `scale_weight=(0, 1)`, and amplitudes `U[0, 0.2]` (the std of the relative modulation,
  one per label here; fix them equal for anatomix's single field). Off by default.

  Attributes:
    amplitude: range of each label's modulation std.
    num_scales: range of the (integer) number of active levels (finest first).
    finest_scale: static pyramid level of the finest grid (`ceil(n / 2**finest_scale)`).
    scale_weight: range of the per-level weights (relative stds).
  """

  amplitude: Range = field(default=(0.0, 0.2), check=real_range(low=0.0))
  num_scales: tuple[int, int] = field(default=(4, 4), check=int_range(low=1))
  finest_scale: int = field(default=2, check=integer(low=0))
  scale_weight: Range = field(default=(0.0, 1.0), check=real_range(low=0.0))
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


def sample_texture(key, cfg: TextureConfig, num_labels: int, fixed=None) -> dict:
  """Applied, per-label `amplitude` `(num_labels,)`, `num_scales`, per-level `weights`."""
  k = jax.random.split(key, 4)
  lo, hi = cfg.num_scales
  return {
    "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
    "amplitude": draw.pick(fixed, "amplitude", draw.uniform(k[1], cfg.amplitude, (num_labels,))),
    "num_scales": draw.pick(
      fixed, "num_scales", jax.random.randint(k[2], (), lo, hi + 1, jnp.int32)
    ),
    "weights": draw.pick(fixed, "weights", draw.uniform(k[3], cfg.scale_weight, (hi,))),
  }


def texture_field(key, p: dict, cfg: TextureConfig, shape) -> jax.Array:
  """The unit-std multi-scale field of the texture stage."""
  return fields.multiscale_noise(
    key,
    shape,
    p["num_scales"],
    cfg.num_scales[1],
    finest=cfg.finest_scale,
    weights=p["weights"],
    normalize="std",
  )


def apply_texture(
  key,
  image: jax.Array,
  p: dict,
  cfg: TextureConfig,
  index_map: jax.Array,
  background_index: int | None = None,
) -> jax.Array:
  """Multiplies `image` by `max(1 + amplitude[index_map] * noise, 0)`.

  Args:
    key: synthesis key (the noise field).
    image: the GMM intensities (any scale; 0..255 in the pipeline), before the bias field.
    p: params from `sample_texture`.
    cfg: the stage config (static).
    index_map: int label-index map of `image`'s shape, indexing `p["amplitude"]`.
    background_index: static label index left untextured (`None`: none).

  Returns:
    The textured image (float32, or float64 with float64 params or image).
  """
  amp = precision.real(p["amplitude"])
  if background_index is not None:
    amp = amp.at[background_index].set(0.0)
  x = precision.real(image)
  noise = texture_field(key, p, cfg, x.shape)
  return x * jnp.maximum(1.0 + lookup.take_small(amp, index_map) * noise, 0.0)


STAGE = Stage(
  "texture",
  lambda k, c, f: sample_texture(k, c.texture, c.num_labels, f),
  domain={
    "amplitude": record.NONNEG,
    "weights": record.NONNEG,
    "num_scales": record.count("weights", 1),
  },
  apply=lambda k, x, p, c, ctx: apply_texture(
    k, x, p, c, ctx.index_map, background_index=ctx.background_index
  ),
  strength={"amplitude": 0.0},
)
