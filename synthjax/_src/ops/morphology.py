"""Binary morphology with traced radii: an exact truncated distance transform.

The ball dilation thresholds an exact squared Euclidean distance transform truncated at a
static radius (separable min-plus passes), so it equals `scipy.ndimage.binary_dilation`
with a ball for any traced radius up to that maximum.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def squared_distance(mask: jax.Array, r_max: float, spacing=None) -> jax.Array:
  """Squared Euclidean distance to the nearest `mask` voxel, exact wherever it is `<= r_max^2`.

  The squared distance is separable, `min_a [(i-a)^2 + min_b [(j-b)^2 + min_c [(k-c)^2 +
  f]]]` with `f = 0` on the mask; each pass is a min-plus filter over the offsets
  `|o| <= r_max` (a distance `<= r_max` never needs a larger per-axis offset). Voxels farther
  than `r_max` get a value `> r_max^2`. Outside the volume counts as not in the mask (as
  `scipy.ndimage.binary_dilation`'s default border).

  With `spacing` (one length per axis), distances and `r_max` are in those units (mm): an
  offset of `o` voxels along an axis costs `(o * spacing)^2`, as
  `scipy.ndimage.distance_transform_edt(~mask, sampling=spacing)` measures.

  Cost: `sum_axes (2 floor(r_max / spacing) + 1)` fused shifted minima per voxel.
  """
  steps = (1.0,) * mask.ndim if spacing is None else tuple(float(s) for s in spacing)
  if len(steps) != mask.ndim:
    raise ValueError(f"spacing must give one length per axis of {mask.shape}, got {spacing}")
  if spacing is None:
    r_max = int(r_max)
  big = float((r_max + max(steps)) ** 2)
  d = jnp.where(mask, 0.0, big).astype(jnp.float32)
  for axis, n in enumerate(mask.shape):
    r = min(int(r_max / steps[axis]), n - 1)
    if r <= 0:
      continue
    pad = [(0, 0)] * mask.ndim
    pad[axis] = (r, r)
    dp = jnp.pad(d, pad, constant_values=big)
    out = d
    for o in range(1, r + 1):
      lo = jax.lax.slice_in_dim(dp, r - o, r - o + n, axis=axis)
      hi = jax.lax.slice_in_dim(dp, r + o, r + o + n, axis=axis)
      out = jnp.minimum(out, jnp.minimum(lo, hi) + float((o * steps[axis]) ** 2))
    d = jnp.minimum(out, big)
  return d


def dilate_ball(mask: jax.Array, radius, r_max: int) -> jax.Array:
  """Binary dilation by the ball `|v|^2 <= radius^2` (skimage's `ball(radius)`), exact for a
  (traced) `radius <= r_max`; equals `scipy.ndimage.binary_dilation(mask, ball(radius))`."""
  radius = jnp.clip(jnp.asarray(radius, jnp.float32), 0.0, float(r_max))
  return squared_distance(mask, r_max) <= radius * radius
