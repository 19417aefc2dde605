"""A real image as the intensity source (FetalSynthGen's `image_as_intensity`).

References:
  Zalevskyi et al., "Improving cross-domain brain tissue segmentation in fetal MRI with
  synthetic data" (MICCAI 2024).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synthjax._src.checks import config_class, field, flag, positive, prob
from synthjax._src.ops import draw, resample
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage


@config_class
class ImageIntensityConfig:
  """A real image as the intensity prior (FetalSynthGen's `image_as_intensity`).

  Where applied, the image passed to `synthesize` as `image` is deformed with the labels'
  coordinate map (trilinear), min-max scaled to [0, scale] and used instead of the GMM
  intensities; the rest of the pipeline (bias, gamma, resolution, artifacts) follows.

  Attributes:
    scale: the intensity range the image is scaled to (the GMM's 0..255 scale).
  """

  scale: float = field(default=255.0, check=positive())
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


def sample_image_intensity(key, cfg: ImageIntensityConfig, fixed=None) -> dict:
  """Whether the real image replaces the GMM intensities."""
  return {"applied": draw.pick(fixed, "applied", draw.bernoulli(key, cfg.prob))}


def scale_image(image: jax.Array, scale: float) -> jax.Array:
  """Min-max scaling of a real image to [0, scale] (a constant image maps to 0)."""
  lo, hi = jnp.min(image), jnp.max(image)
  span = hi - lo
  return jnp.where(span > 0, (image - lo) * (scale / jnp.where(span > 0, span, 1.0)), 0.0)


def render_source(key, image, p: dict, cfg: ImageIntensityConfig, ctx: record.RenderContext):
  """The source stage: where applied, the real image (`inputs["image"]`) deformed with the
  labels' coordinate map (trilinear) and scaled, instead of the sources before it."""
  real = (ctx.inputs or {}).get("image")
  if real is None:  # `synthesize` refuses an enabled stage without an image
    return image
  real = resample.sample_linear(jnp.asarray(real, jnp.float32), ctx.coords, cval=0.0)
  real = scale_image(real, cfg.scale)
  return jnp.where(p["applied"], real, image)


STAGE = Stage(
  "image_intensity",
  lambda k, c, f: sample_image_intensity(k, c.image_intensity, f),
  phase="source",
  apply=render_source,
)
