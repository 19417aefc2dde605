"""The intensity source: one Gaussian per label (SynthSeg's `SampleConditionalGMM`).

Every per-label table is indexed with the label-index map (no one-hot volumes); the voxel
noise is a keyed hash of the synthesis key (`ops.rng`).

References:
  Billot et al., SynthSeg (MedIA 2023): `SampleConditionalGMM`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from synthjax._src.checks import (
  LabelRanges,
  Range,
  config_class,
  field,
  flag,
  label_ranges,
  prob,
  real_range,
)
from synthjax._src.ops import draw, lookup, precision, rng
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage


@config_class
class GMMConfig:
  """Per-label Gaussian intensities (SynthSeg's `SampleConditionalGMM`).

  Attributes:
    mean: range of the uniform prior on each label's mean intensity.
    std: range of the uniform prior on each label's standard deviation.
    prob_background_zero: probability that the background label gets mean 0 and std 0.
    label_mean: `(label, low, high)` triples: the labels named draw their mean from their
      own range instead of `mean` (contrast-specific priors, SynthSeg's `prior_means`;
      `synthjax.priors.estimate` measures them on real scans).
    label_std: the same for the standard deviation.
  """

  mean: Range = field(default=(0.0, 250.0), check=real_range())
  std: Range = field(default=(0.0, 30.0), check=real_range(low=0.0))
  prob_background_zero: float = field(default=0.05, check=prob())
  # Kept for a uniform stage interface; the GMM is always rendered.
  prob: float = field(default=1.0, check=prob())
  enabled: bool = field(default=True, check=flag())
  label_mean: LabelRanges = field(default=(), check=label_ranges())
  label_std: LabelRanges = field(default=(), check=label_ranges(low=0.0))


def per_label_range(default: Range, rows: LabelRanges, label_values, field_name: str):
  """`(low, high)` arrays over `label_values`: each label's own row, else `default`."""
  own = {r[0]: r[1:] for r in rows}
  unknown = sorted(set(own) - set(int(v) for v in label_values))
  if unknown:
    raise ValueError(
      f"GMMConfig.{field_name} names label(s) {unknown}, which are not in the "
      f"config's label_values {tuple(label_values)}"
    )
  lo, hi = zip(*(own.get(int(v), default) for v in label_values))
  return np.asarray(lo, np.float32), np.asarray(hi, np.float32)


def _draw(key, default: Range, rows: LabelRanges, label_values, field_name: str):
  if not rows:
    return draw.uniform(key, default, (len(label_values),))
  lo, hi = per_label_range(default, rows, label_values, field_name)
  return draw.uniform(key, (lo, hi), (len(label_values),))


def sample_gmm(key, cfg: GMMConfig, label_values, fixed=None) -> dict:
  """Draws a mean and a std per generation label (from its own range where the config gives
  one) and the background-zero switch."""
  if isinstance(label_values, int):  # a count: every label draws from the shared ranges
    label_values = tuple(range(label_values))
  k = jax.random.split(key, 3)
  return {
    "means": draw.pick(
      fixed, "means", _draw(k[0], cfg.mean, cfg.label_mean, label_values, "label_mean")
    ),
    "stds": draw.pick(
      fixed, "stds", _draw(k[1], cfg.std, cfg.label_std, label_values, "label_std")
    ),
    "background_zero": draw.pick(
      fixed, "background_zero", draw.bernoulli(k[2], cfg.prob_background_zero)
    ),
  }


def label_tables(
  p: dict, background_index: int, std_scale: float = 1.0
) -> tuple[jax.Array, jax.Array]:
  """Each label's mean and std (times `std_scale`, `SynthConfig.voxel_std_scale`), with the
  background's zeroed where `background_zero`."""
  means = precision.real(p["means"])
  stds = precision.real(p["stds"])
  if std_scale != 1.0:
    stds = stds * std_scale
  zero_bg = p["background_zero"] & (jnp.arange(means.shape[0]) == background_index)
  return jnp.where(zero_bg, 0.0, means), jnp.where(zero_bg, 0.0, stds)


def render_gmm(
  key, p: dict, index_map: jax.Array, background_index: int, std_scale: float = 1.0
) -> jax.Array:
  """`means[l] + std_scale * stds[l] * N(0, 1)` at each voxel of label index `l`."""
  means, stds = label_tables(p, background_index, std_scale)
  noise = rng.voxel_normal(key, index_map.shape)
  return lookup.take_small(means, index_map) + lookup.take_small(stds, index_map) * noise


def render_source(key, image, p: dict, cfg: GMMConfig, ctx: record.RenderContext):
  """The source stage: the label Gaussians on the deformed label-index map."""
  return render_gmm(key, p, ctx.index_map, ctx.background_index, ctx.std_scale)


STAGE = Stage(
  "gmm",
  lambda k, c, f: sample_gmm(k, c.gmm, c.label_values, f),
  phase="source",
  per_channel=True,
  apply=render_source,
  domain={"stds": record.NONNEG},
)
