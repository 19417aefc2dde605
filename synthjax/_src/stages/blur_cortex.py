"""FetalSynthGen's cortex blur: the locally blurred cortex of imprecise super-resolution
reconstructions.

The whole image is blurred with a (per-axis) Gaussian, and the blurred image replaces the
original inside a mixture of Gaussian blobs centred in the cortex,
`out = x * (1 - g) + blur(x) * g`. Centres are drawn without replacement among the cortex
voxels, with probabilities proportional to FetalSynthGen's prior that favours the two ends
of axis 0 (frontal and occipital poles in its orientation).

Shapes stay static: the number of blobs has a static maximum (`nblur[1]` slots, the extra
slots masked by the traced count); centres come from one Gumbel top-k over the volume
(exact sampling without replacement, no Python loop); the blob mask is a sum of separable
Gaussians (one contraction of per-axis profiles); the blur is one Gaussian matrix per axis
(`ops.filters.gaussian_matrix`, scipy's `gaussian_filter` with `mode="reflect"`).

References:
  FetalSynthGen (Medical-Image-Analysis-Laboratory/fetalsyngen),
  `generator/augmentation/artifacts.py`: `BlurCortex`; `generator/artifacts/utils.py`:
  `mog_3d_tensor`, `gaussian_blur_3d`.
  Sanchez et al., "Assessing data quality on fetal brain MRI reconstruction" (PIPPI 2024).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from synthjax._src.checks import config_class, field, flag, int_range, integer, positive, prob
from synthjax._src.ops import draw, filters, precision, resample
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage


@config_class
class BlurCortexConfig:
  """Local blur of the cortex (FetalSynthGen's `BlurCortex`).

  The image is blurred with per-axis Gaussian stds `~ Gamma(blur_std_shape,
  blur_std_scale)` voxels, and mixed back inside `nblur ~ U{nblur}` Gaussian blobs whose
  per-axis sigmas are `~ Gamma(blob_sigma_shape, blob_sigma_scale)` voxels and whose centres
  are cortex voxels (the `region_mask` given to `apply_blur_cortex`).

  Attributes:
    nblur: inclusive range of the number of blobs; `nblur[1]` fixes the params shape. The
      peer's default `randint(50, 200)` is `(50, 199)`.
    blob_sigma_shape, blob_sigma_scale: Gamma prior of the blob sigmas (peer: 3, 1).
    blur_std_shape, blur_std_scale: Gamma prior of the blur stds (peer: 2, 1).
    max_blur_std: blur stds are clipped to this (voxels), which bounds the static kernel
      radius (`P(Gamma(2, 1) > 10) ~ 5e-4`).
    frontal_prior: draw centres with the peer's prior (two isotropic Gaussians at both ends
      of axis 0); `False` draws them uniformly in the region.
    cortex_label: label value of the cortex (FeTA: 2), for the pipeline to build the
      region mask; `apply_blur_cortex` itself takes the mask.
  """

  nblur: tuple[int, int] = field(
    default=(50, 199), check=int_range(low=0, high_at_least=1, what="blob")
  )
  blob_sigma_shape: float = field(default=3.0, check=positive())
  blob_sigma_scale: float = field(default=1.0, check=positive())
  blur_std_shape: float = field(default=2.0, check=positive())
  blur_std_scale: float = field(default=1.0, check=positive())
  max_blur_std: float = field(default=10.0, check=positive())
  frontal_prior: bool = field(default=True, check=flag())
  cortex_label: int = field(default=2, check=integer())
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


_HIGHEST = jax.lax.Precision.HIGHEST


def sample_blur_cortex(key, cfg: BlurCortexConfig, fixed=None) -> dict:
  """Applied, number of blobs, blur stds `(3,)` and blob sigmas `(nblur[1], 3)` (voxels).

  A fixed `blob_sigma` of shape `(3,)` is used for every blob slot.
  """
  k = jax.random.split(key, 3)
  lo, hi = cfg.nblur
  fixed = dict(fixed or {})
  sig = fixed.get("blob_sigma")
  if sig is not None:
    sig = jnp.asarray(sig, jnp.float32)
    if sig.shape == (3,):
      fixed["blob_sigma"] = jnp.broadcast_to(sig, (hi, 3))
  shapes = np.concatenate([np.full(3, cfg.blur_std_shape), np.full(3 * hi, cfg.blob_sigma_shape)])
  g = _gamma(k[2], shapes)
  blur_std = g[:3] * cfg.blur_std_scale
  blob_sigma = g[3:].reshape(hi, 3) * cfg.blob_sigma_scale
  return {
    "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
    "nblur": draw.pick(fixed, "nblur", jax.random.randint(k[1], (), lo, hi + 1, jnp.int32)),
    "blur_std": draw.pick(fixed, "blur_std", jnp.minimum(blur_std, cfg.max_blur_std)),
    "blob_sigma": draw.pick(fixed, "blob_sigma", blob_sigma),
  }


def _gamma(key, shapes: np.ndarray) -> jax.Array:
  """Gamma(shape, 1) draws for static shapes.

  Integer shapes (the peer's 2 and 3) are sums of unit exponentials, which compile in a
  fraction of the time of `jax.random.gamma`'s rejection loop (seconds on CPU, per program).
  """
  shapes = np.asarray(shapes, np.float64)
  k = int(shapes.max()) if shapes.size else 0
  if shapes.size and np.all(shapes == np.round(shapes)) and shapes.min() >= 1 and k <= 16:
    e = jax.random.exponential(key, (k,) + shapes.shape, jnp.float32)
    keep = np.arange(k)[:, None] < shapes[None, :]
    return jnp.sum(jnp.where(jnp.asarray(keep), e, 0.0), axis=0)
  return jax.random.gamma(key, jnp.asarray(shapes, jnp.float32), dtype=jnp.float32)


def cortex_prior_logits(shape) -> jax.Array:
  """Log of the peer's blur prior: `min(1, G1 + G2)` with isotropic Gaussians centred at
  `(0, n1, n2 // 2)` (std `n0 // 5`) and `(n0, n1, n2 // 2)` (std `n1 // 5`), in voxels.

  Computed in the log domain (`logaddexp`), so far voxels keep a finite weight.
  """
  n0, n1, n2 = (int(s) for s in shape)
  ax = [
    jnp.arange(s, dtype=jnp.float32).reshape([-1 if a == b else 1 for b in range(3)])
    for a, s in enumerate(shape)
  ]
  rest = (ax[1] - n1) ** 2 + (ax[2] - n2 // 2) ** 2
  s1, s2 = float(max(n0 // 5, 1)), float(max(n1 // 5, 1))
  a1 = -0.5 * (ax[0] ** 2 + rest) / s1**2
  a2 = -0.5 * ((ax[0] - n0) ** 2 + rest) / s2**2
  return jnp.minimum(jnp.logaddexp(a1, a2), 0.0)


def sample_centres(key, region_mask: jax.Array, count: int, prior: bool = True):
  """`count` distinct voxels of `region_mask`, drawn without replacement.

  Gumbel top-k: the `count` largest `log p + Gumbel` values are an exact draw without
  replacement from `p` (as `torch.multinomial(p, count)`), with one pass over the volume.
  `p` is `cortex_prior_logits` (or uniform) restricted to the region.

  Returns:
    `(count, 3)` int32 voxel indices and a `(count,)` bool validity mask (False for the
    slots beyond the number of region voxels).
  """
  shape = region_mask.shape
  logits = cortex_prior_logits(shape) if prior else jnp.zeros(shape, jnp.float32)
  logits = jnp.where(region_mask, logits, -jnp.inf).reshape(-1)
  scores = logits + jax.random.gumbel(key, logits.shape, jnp.float32)
  k = min(count, logits.shape[0])
  top, idx = jax.lax.top_k(scores, k)
  valid = top > -jnp.inf
  if k < count:
    idx = jnp.concatenate([idx, jnp.zeros(count - k, idx.dtype)])
    valid = jnp.concatenate([valid, jnp.zeros(count - k, bool)])
  centres = jnp.stack(jnp.unravel_index(idx, shape), axis=-1).astype(jnp.int32)
  return centres, valid


def blob_mask(centres: jax.Array, sigmas: jax.Array, active: jax.Array, shape) -> jax.Array:
  """`clip(sum_i exp(-|(x - c_i) / s_i|^2 / 2), 0, 1)` over the active blobs (`mog_3d_tensor`).

  Each blob is the product of three 1-D profiles, so the sum is one contraction of
  `(K, n)` profiles instead of `K` full volumes.
  """
  sig = jnp.maximum(precision.real(sigmas), 1e-3)
  c = centres.astype(jnp.float32)
  prof = []
  for a, n in enumerate(shape):
    d = (jnp.arange(n, dtype=jnp.float32)[None, :] - c[:, a : a + 1]) / sig[:, a : a + 1]
    prof.append(jnp.exp(-0.5 * d * d))
  prof[0] = prof[0] * active.astype(jnp.float32)[:, None]
  mog = jnp.einsum("ka,kb,kc->abc", *prof, precision=_HIGHEST)
  return jnp.clip(mog, 0.0, 1.0)


def blur_radius(cfg: BlurCortexConfig) -> int:
  """Static kernel radius bound for stds up to `cfg.max_blur_std` (scipy's truncate 4)."""
  return int(math.floor(filters.TRUNCATE * cfg.max_blur_std + 0.5)) + 1


def gaussian_blur(x: jax.Array, stds: jax.Array, cfg: BlurCortexConfig) -> jax.Array:
  """Per-axis Gaussian blur with traced `stds` (voxels, clipped to `max_blur_std`).

  Equals `scipy.ndimage.gaussian_filter(x, stds, mode="reflect", truncate=4)`; a zero std
  leaves its axis unchanged. (The peer zero-pads with a `ceil(3 std)` kernel, which darkens
  the borders; the reflect boundary avoids that.)
  """
  stds = jnp.minimum(precision.real(stds), cfg.max_blur_std)
  r = blur_radius(cfg)
  mats = [filters.gaussian_matrix(n, stds[a], min(r, 4 * n)) for a, n in enumerate(x.shape)]
  return resample.apply_separable(x, mats)


def blur_cortex_weights(key, p: dict, cfg: BlurCortexConfig, region_mask: jax.Array) -> jax.Array:
  """The blob mask `g` of `apply_blur_cortex` (centres drawn from `key` in the region)."""
  centres, valid = sample_centres(key, region_mask, cfg.nblur[1], cfg.frontal_prior)
  active = valid & (jnp.arange(cfg.nblur[1]) < p["nblur"])
  return blob_mask(centres, p["blob_sigma"], active, region_mask.shape)


def apply_blur_cortex(
  key, image: jax.Array, p: dict, cfg: BlurCortexConfig, region_mask: jax.Array
) -> jax.Array:
  """`image * (1 - g) + blur(image) * g` with `g` the blob mask.

  Args:
    key: synthesis key; draws the blob centres.
    image: `(X, Y, Z)` float image (the pipeline's [0, 1] image).
    p: params from `sample_blur_cortex`.
    cfg: the stage config.
    region_mask: bool `(X, Y, Z)`, the voxels where blobs may be centred (the cortex of the
      deformed segmentation). An empty region leaves the image unchanged.

  Returns:
    The image, float32.
  """
  record.check_mask_shape("region_mask", region_mask, image.shape)
  region_mask = jnp.asarray(region_mask).astype(bool)
  x = precision.real(image)
  g = blur_cortex_weights(key, p, cfg, region_mask)
  # Written as an update so that g = 0 or blur(x) = x returns x exactly.
  return x + g * (gaussian_blur(x, p["blur_std"], cfg) - x)


STAGE = Stage(
  "blur_cortex",
  lambda k, c, f: sample_blur_cortex(k, c.blur_cortex, f),
  domain={
    "blob_sigma": record.POSITIVE,
    "blur_std": record.NONNEG,
    "nblur": record.count("blob_sigma"),
  },
  strength={},
  apply=lambda k, x, p, c, ctx: apply_blur_cortex(
    k, x, p, c, record.label_mask((c.cortex_label,), ctx)
  ),
)
