"""FetalSynthGen's super-resolution artifacts: cortex blur and skull-stripping boundaries.

`blur_cortex` mimics the locally blurred cortex of imprecise super-resolution
reconstructions: the whole image is blurred with a (per-axis) Gaussian, and the blurred
image replaces the original inside a mixture of Gaussian blobs centred in the cortex,
`out = x * (1 - g) + blur(x) * g`. Centres are drawn without replacement among the cortex
voxels, with probabilities proportional to FetalSynthGen's prior that favours the two ends
of axis 0 (frontal and occipital poles in its orientation).

`boundary` mimics brain-extraction masks: no mask at all, the brain mask (`seg > 0`), a
"halo" (the mask dilated by a ball of 5..14 voxels), and "fuzzy" irregular boundaries.

Shapes stay static: the number of blobs has a static maximum (`nblur[1]` slots, the extra
slots masked by the traced count); centres come from one Gumbel top-k over the volume
(exact sampling without replacement, no Python loop); the blob mask is a sum of separable
Gaussians (one contraction of per-axis profiles); the blur is one Gaussian matrix per axis
(`resolution.gaussian_matrix`, scipy's `gaussian_filter` with `mode="reflect"`). The ball
dilation thresholds an exact squared Euclidean distance transform truncated at a static
radius (separable min-plus passes), so it equals `scipy.ndimage.binary_dilation` with a
ball for any traced radius up to that maximum.

References:
  FetalSynthGen (Medical-Image-Analysis-Laboratory/fetalsyngen),
  `generator/augmentation/artifacts.py`: `BlurCortex`, `SimulatedBoundaries`;
  `generator/artifacts/utils.py`: `mog_3d_tensor`, `gaussian_blur_3d`, `dilate`, `erode`.
  Sanchez et al., "Assessing data quality on fetal brain MRI reconstruction" (PIPPI 2024).
"""

from __future__ import annotations

import math

import numpy as np
import jax
import jax.numpy as jnp

from synthjax._src import draw
from synthjax._src import resample
from synthjax._src import resolution
from synthjax._src.config import BlurCortexConfig, BoundaryConfig

_HIGHEST = jax.lax.Precision.HIGHEST


def _check_shape(name: str, mask, shape):
  if tuple(mask.shape) != tuple(shape):
    raise ValueError(f"{name} must have the image shape {tuple(shape)}, got {tuple(mask.shape)}")


# ---------------------------------------------------------------------------------------
# Cortex blur


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
  if shapes.size and np.all(shapes == np.round(shapes)) and 1 <= shapes.min() and k <= 16:
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
  ax = [jnp.arange(s, dtype=jnp.float32).reshape([-1 if a == b else 1 for b in range(3)])
        for a, s in enumerate(shape)]
  rest = (ax[1] - n1) ** 2 + (ax[2] - n2 // 2) ** 2
  s1, s2 = float(max(n0 // 5, 1)), float(max(n1 // 5, 1))
  a1 = -0.5 * (ax[0] ** 2 + rest) / s1 ** 2
  a2 = -0.5 * ((ax[0] - n0) ** 2 + rest) / s2 ** 2
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
  sig = jnp.maximum(sigmas.astype(jnp.float32), 1e-3)
  c = centres.astype(jnp.float32)
  prof = []
  for a, n in enumerate(shape):
    d = (jnp.arange(n, dtype=jnp.float32)[None, :] - c[:, a:a + 1]) / sig[:, a:a + 1]
    prof.append(jnp.exp(-0.5 * d * d))
  prof[0] = prof[0] * active.astype(jnp.float32)[:, None]
  mog = jnp.einsum("ka,kb,kc->abc", *prof, precision=_HIGHEST)
  return jnp.clip(mog, 0.0, 1.0)


def blur_radius(cfg: BlurCortexConfig) -> int:
  """Static kernel radius bound for stds up to `cfg.max_blur_std` (scipy's truncate 4)."""
  return int(math.floor(resolution.TRUNCATE * cfg.max_blur_std + 0.5)) + 1


def gaussian_blur(x: jax.Array, stds: jax.Array, cfg: BlurCortexConfig) -> jax.Array:
  """Per-axis Gaussian blur with traced `stds` (voxels, clipped to `max_blur_std`).

  Equals `scipy.ndimage.gaussian_filter(x, stds, mode="reflect", truncate=4)`; a zero std
  leaves its axis unchanged. (The peer zero-pads with a `ceil(3 std)` kernel, which darkens
  the borders; the reflect boundary avoids that.)
  """
  stds = jnp.minimum(jnp.asarray(stds, jnp.float32), cfg.max_blur_std)
  r = blur_radius(cfg)
  mats = [resolution.gaussian_matrix(n, stds[a], min(r, 4 * n)) for a, n in enumerate(x.shape)]
  return resample.apply_separable(x, mats)


def blur_cortex_weights(key, p: dict, cfg: BlurCortexConfig, region_mask: jax.Array) -> jax.Array:
  """The blob mask `g` of `apply_blur_cortex` (centres drawn from `key` in the region)."""
  centres, valid = sample_centres(key, region_mask, cfg.nblur[1], cfg.frontal_prior)
  active = valid & (jnp.arange(cfg.nblur[1]) < p["nblur"])
  return blob_mask(centres, p["blob_sigma"], active, region_mask.shape)


def apply_blur_cortex(key, image: jax.Array, p: dict, cfg: BlurCortexConfig,
                      region_mask: jax.Array) -> jax.Array:
  """`image * (1 - g) + blur(image) * g` with `g` the blob mask, if applied.

  Args:
    key: synthesis key; draws the blob centres.
    image: `(X, Y, Z)` float image (the pipeline's [0, 1] image).
    p: params from `sample_blur_cortex`.
    cfg: the stage config.
    region_mask: bool `(X, Y, Z)`, the voxels where blobs may be centred (the cortex of the
      deformed segmentation). An empty region leaves the image unchanged.

  Returns:
    The image, float32; `image` itself when not applied.
  """
  _check_shape("region_mask", region_mask, image.shape)
  region_mask = jnp.asarray(region_mask).astype(bool)

  def on(x):
    g = blur_cortex_weights(key, p, cfg, region_mask)
    # Written as an update so that g = 0 or blur(x) = x returns x exactly.
    return x + g * (gaussian_blur(x, p["blur_std"], cfg) - x)

  return jax.lax.cond(p["applied"], on, lambda x: x, image.astype(jnp.float32))


# ---------------------------------------------------------------------------------------
# Simulated boundaries


def sample_boundary(key, cfg: BoundaryConfig, fixed=None) -> dict:
  """Applied, the `no_mask`/`halo`/`fuzzy` switches, halo radius and fuzzy extents.

  The switches are drawn independently (the peer draws `halo` and `fuzzy` only when
  masking; here they are recorded but unused when `no_mask`).
  """
  k = jax.random.split(key, 7)
  lo, hi = cfg.halo_radius
  return {
      "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
      "no_mask": draw.pick(fixed, "no_mask", draw.bernoulli(k[1], cfg.prob_no_mask)),
      "halo": draw.pick(fixed, "halo", draw.bernoulli(k[2], cfg.prob_halo)),
      "halo_radius": draw.pick(fixed, "halo_radius",
                               jax.random.randint(k[3], (), lo, hi + 1, jnp.int32)),
      "fuzzy": draw.pick(fixed, "fuzzy", draw.bernoulli(k[4], cfg.prob_fuzzy)),
      "fuzzy_width": draw.pick(fixed, "fuzzy_width", draw.uniform(k[5], cfg.fuzzy_width)),
      "fuzzy_jitter": draw.pick(fixed, "fuzzy_jitter", draw.uniform(k[6], cfg.fuzzy_jitter)),
  }


def squared_distance(mask: jax.Array, r_max: int) -> jax.Array:
  """Squared Euclidean distance to the nearest `mask` voxel, exact wherever it is `<= r_max^2`.

  The squared distance is separable, `min_a [(i-a)^2 + min_b [(j-b)^2 + min_c [(k-c)^2 +
  f]]]` with `f = 0` on the mask; each pass is a min-plus filter over the offsets
  `|o| <= r_max` (a distance `<= r_max` never needs a larger per-axis offset). Voxels farther
  than `r_max` get a value `> r_max^2`. Outside the volume counts as not in the mask (as
  `scipy.ndimage.binary_dilation`'s default border).

  Cost: `3 * (2 r_max + 1)` fused shifted minima per voxel.
  """
  r_max = int(r_max)
  big = float((r_max + 1) ** 2)
  d = jnp.where(mask, 0.0, big).astype(jnp.float32)
  for axis, n in enumerate(mask.shape):
    r = min(r_max, n - 1)
    if r <= 0:
      continue
    pad = [(0, 0)] * 3
    pad[axis] = (r, r)
    dp = jnp.pad(d, pad, constant_values=big)
    out = d
    for o in range(1, r + 1):
      lo = jax.lax.slice_in_dim(dp, r - o, r - o + n, axis=axis)
      hi = jax.lax.slice_in_dim(dp, r + o, r + o + n, axis=axis)
      out = jnp.minimum(out, jnp.minimum(lo, hi) + float(o * o))
    d = jnp.minimum(out, big)
  return d


def dilate_ball(mask: jax.Array, radius, r_max: int) -> jax.Array:
  """Binary dilation by the ball `|v|^2 <= radius^2` (skimage's `ball(radius)`), exact for a
  (traced) `radius <= r_max`; equals `scipy.ndimage.binary_dilation(mask, ball(radius))`."""
  radius = jnp.clip(jnp.asarray(radius, jnp.float32), 0.0, float(r_max))
  return squared_distance(mask, r_max) <= radius * radius


def _smooth_uniform(key, shape, scale: float) -> jax.Array:
  g = tuple(draw.max_grid_size(scale, n) for n in shape)
  return resample.resize_linear(jax.random.uniform(key, g, jnp.float32), shape)


def boundary_mask(key, p: dict, cfg: BoundaryConfig, foreground: jax.Array) -> jax.Array:
  """The bool mask of `apply_boundary` (ignores `applied` and `no_mask`).

  Voxels within `R(x) = halo * halo_radius + fuzzy * (fuzzy_width * u_c(x) + fuzzy_jitter *
  u_f(x))` of the foreground, with the fields `u_c`, `u_f` in [0, 1] drawn from `key`:
  plain (`R = 0`): `foreground`; halo only: `dilate_ball(foreground, halo_radius)`. Radii are
  clipped to the config ranges' upper ends, which size the static distance transform.

  One distance transform serves every mode (under `vmap` a switch between modes would
  compute all of them); it is skipped (outside `vmap`) when neither halo nor fuzzy is on.
  """
  fg = jnp.asarray(foreground).astype(bool)
  shape = fg.shape
  h_max = cfg.halo_radius[1]
  w_max, j_max = cfg.fuzzy_width[1], cfg.fuzzy_jitter[1]
  r_max = int(math.ceil(h_max + w_max + j_max))

  def dilated():
    k1, k2 = jax.random.split(key)
    width = jnp.clip(p["fuzzy_width"], 0.0, w_max)
    jitter = jnp.clip(p["fuzzy_jitter"], 0.0, j_max)
    extra = (width * _smooth_uniform(k1, shape, cfg.fuzzy_grid_scale)
             + jitter * _smooth_uniform(k2, shape, cfg.jitter_grid_scale))
    r_halo = jnp.clip(p["halo_radius"], 0, h_max).astype(jnp.float32)
    radius = jnp.where(p["halo"], r_halo, 0.0) + jnp.where(p["fuzzy"], extra, 0.0)
    return squared_distance(fg, r_max) <= radius * radius

  return jax.lax.cond(p["halo"] | p["fuzzy"], dilated, lambda: fg)


def apply_boundary(key, image: jax.Array, p: dict, cfg: BoundaryConfig,
                   foreground: jax.Array) -> jax.Array:
  """`image * mask` unless not applied or `no_mask` (then `image` unchanged).

  Args:
    key: synthesis key; draws the fuzzy fields.
    image: `(X, Y, Z)` float image.
    p: params from `sample_boundary`.
    cfg: the stage config.
    foreground: bool `(X, Y, Z)`, `seg > 0` of the deformed segmentation.

  Returns:
    The masked image, float32.
  """
  _check_shape("foreground", foreground, image.shape)

  def on(x):
    return x * boundary_mask(key, p, cfg, foreground).astype(x.dtype)

  return jax.lax.cond(p["applied"] & ~p["no_mask"], on, lambda x: x,
                      image.astype(jnp.float32))
