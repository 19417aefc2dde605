"""Multi-contrast synthesis: `num_channels` images of one deformed label map.

SynthSeg's generator renders `n_channels` contrasts of one label map, and cornucopia's
can correlate them: the anatomy (the spatial transform, the deformation field and the
label resampling) is shared, and each channel has its own appearance. Here the stages
whose record is drawn per channel (`Stage.per_channel`: the label Gaussians, the bias
field, gamma; `CHANNEL_STAGES`) draw one set of params per channel (a leading axis of
`num_channels`); every other stage's params are shared.
Channel `c` renders with its own synthesis key (its voxel noise and fields), channel 0
with the sample's key, so channel 0 is the one-channel image of the same params.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from synthjax._src import registry
from synthjax._src.stages import gmm

# The registry's stages drawn once per channel.
CHANNEL_STAGES = tuple(s.name for s in registry.STAGES if s.per_channel)
# `fold_in` id of channel c's key (c >= 1) under a channel stage's params key and under
# the sample's synthesis key. Channel 0 uses the keys themselves.
CHANNEL_STREAM = 0x4348

__all__ = ["CHANNEL_STAGES", "channel_keys", "per_channel", "render_aligned", "render_channels"]


def channel_keys(key, num_channels: int):
  """`num_channels` keys: `key`, then `fold_in(key, CHANNEL_STREAM + c)`."""
  return jnp.stack(
    [key] + [jax.random.fold_in(key, CHANNEL_STREAM + c) for c in range(1, num_channels)]
  )


def _channel_fixed(fixed, shapes, c, num_channels):
  """Channel `c`'s fixed values: entry `[c]` of a value with a leading channel axis,
  else the value itself (shared by every channel)."""
  if not fixed:
    return fixed
  out = {}
  for name, value in fixed.items():
    if value is not None and name in shapes:
      value = jnp.asarray(value)
      if value.shape == (num_channels,) + tuple(shapes[name].shape):
        value = value[c]
    out[name] = value
  return out


def _correlate(means, fixed, config):
  """Channel c's means correlated with channel 0's through a Gaussian copula: each mean
  keeps its uniform distribution on the GMM's range, and its (Pearson) correlation with
  channel 0's mean of the same label is `channel_correlation`."""
  rho = config.channel_correlation
  lo, hi = config.gmm.mean
  if config.gmm.label_mean:  # each label's own range (its uniform is kept per label)
    lo, hi = gmm.per_label_range(
      config.gmm.mean, config.gmm.label_mean, config.label_values, "label_mean"
    )
    hi = np.maximum(hi, lo + np.float32(1e-6))  # a label with a single value stays put
  if (
    rho == 0.0
    or np.all(np.asarray(hi) <= np.asarray(lo))
    or (fixed and fixed.get("means") is not None)
  ):
    return means
  # Uniforms with Gaussian-copula correlation r have Pearson correlation
  # (6 / pi) asin(r / 2); this r gives `rho`.
  r = 2.0 * math.sin(math.pi * rho / 6.0)
  eps = 1e-6
  u = jnp.clip((means - lo) / (hi - lo), eps, 1.0 - eps)
  z = jax.scipy.special.ndtri(u)
  mixed = r * z[:1] + math.sqrt(max(1.0 - r * r, 0.0)) * z
  moved = lo + (hi - lo) * jax.scipy.special.ndtr(mixed)
  return jnp.concatenate([means[:1], moved[1:].astype(means.dtype)])


def per_channel(sampler, config, name: str):
  """`sampler(key, fixed)` of stage `name`, drawn once per channel and stacked."""
  num = config.num_channels

  def sample(key, fixed):
    # Entry shapes of one channel, to tell per-channel fixed values from shared ones.
    shapes = jax.eval_shape(lambda k: sampler(k, {}), key) if fixed else {}
    keys = channel_keys(key, num)
    draws = [sampler(keys[c], _channel_fixed(fixed, shapes, c, num)) for c in range(num)]
    out = jax.tree.map(lambda *xs: jnp.stack(xs), *draws)
    if name == "gmm":
      out["means"] = _correlate(out["means"], fixed, config)
    return out

  return sample


def render_aligned(
  render_one, keys, params, in_axes, labels, config, seeds=None, image=None, *, spatial_key
):
  """Images of one label map under one spatial transform: `render_one(keys[i], params_i,
  labels, config, seeds, image, spatial_key=spatial_key)` mapped over `i`, where `params_i`
  takes entry `i` of the stages whose `in_axes` is 0 and shares those whose `in_axes` is
  None. For the channels of a multi-contrast sample the label resampling depends on shared
  values only, so it is computed once. The views of a pair (`views.py`) render so too, but
  through `rendering.render`, which maps each view's whole program (`batching.per_sample`),
  so each view resamples the labels itself.
  """
  return jax.vmap(
    lambda k, p: render_one(k, p, labels, config, seeds, image, spatial_key=spatial_key),
    in_axes=(0, in_axes),
  )(keys, params)


def render_channels(
  render_one, key, params, labels, config, seeds=None, image=None, spatial_key=None
):
  """The `(num_channels, X, Y, Z)` image and the `(X, Y, Z)` segmentation: the channel
  stages' params and the synthesis keys per channel, everything else shared."""
  per_channel = {s.name for s in registry.stages_of(config) if s.per_channel}
  in_axes = {s: (0 if s in per_channel else None) for s in params}
  images, segs = render_aligned(
    render_one,
    channel_keys(key, config.num_channels),
    params,
    in_axes,
    labels,
    config,
    seeds,
    image,
    spatial_key=key if spatial_key is None else spatial_key,
  )
  return images, segs[0]
