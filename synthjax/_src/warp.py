"""`warp` and `unwarp`: a sample's spatial transform, and its inverse, applied to any volume.

`synthesize` resamples the labels once, by nearest neighbour, through one coordinate map
(affine, deformation, crop and flip composed). `warp` samples any other volume through the
same map for the same key and params: a real image, probability maps, or several channels,
by nearest neighbour, trilinear or cubic B-spline interpolation. That is how a real image
is augmented with exactly the geometry of a synthetic sample. `unwarp` maps a volume on
the output grid back to the input grid (the inverse affine and the inverse flow of the
deformation), and `tta_predict` averages a model's predictions on warped copies of a scan,
each mapped back (test-time augmentation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from synthjax._src import registry, sampling
from synthjax._src.config import SynthConfig
from synthjax._src.ops import precision, resample
from synthjax._src.pytypes import ParamsLike, PRNGKey
from synthjax._src.stages import geometry

ORDERS = (0, 1, 3)
# Zero-padding around the volume before the spline prefilter, as scipy.ndimage does for
# mode="grid-constant": the prefilter's boundary then changes the coefficients inside by
# less than 0.268 ** 12 (its pole to the 12th power), about 1e-7.
_SPLINE_PAD = 12


@functools.lru_cache(maxsize=32)
def spline_prefilter_matrix(n: int) -> np.ndarray:
  """`(n, n)` matrix turning samples into cubic B-spline coefficients (mirror boundary).

  The inverse of the interpolation matrix `(c[i - 1] + 4 c[i] + c[i + 1]) / 6` with
  `c[-1] = c[1]` and `c[n] = c[n - 2]` (scipy's "mirror"), so that the spline through the
  coefficients passes through the samples.
  """
  if n == 1:
    return np.ones((1, 1), np.float32)
  interp = np.zeros((n, n))
  for i in range(n):
    for d, w in ((-1, 1 / 6), (0, 4 / 6), (1, 1 / 6)):
      j = i + d
      j = -j if j < 0 else (2 * (n - 1) - j if j > n - 1 else j)
      interp[i, j] += w
  return np.linalg.inv(interp).astype(np.float32)


def _cubic_weights(t):
  """Cubic B-spline weights of the samples at offsets -1, 0, 1, 2 from `floor(x)`."""
  s = 1.0 - t
  return (
    s**3 / 6.0,
    (3.0 * t**3 - 6.0 * t**2 + 4.0) / 6.0,
    (-3.0 * t**3 + 3.0 * t**2 + 3.0 * t + 1.0) / 6.0,
    t**3 / 6.0,
  )


def sample_cubic(volume: jax.Array, coords, *, cval=0.0) -> jax.Array:
  """Cubic B-spline interpolation of a 3-D volume at continuous voxel coordinates.

  Mirrors `scipy.ndimage.map_coordinates(volume, coords, order=3, mode="grid-constant",
  cval=cval)` (with its spline prefilter): the volume is padded with `cval`, turned into
  spline coefficients by a separable prefilter, and each point sums its 4 x 4 x 4
  neighbourhood of coefficients.

  Args:
    volume: float array `(X, Y, Z)`.
    coords: float array `(3, ...)`, or a sequence of three arrays.
    cval: the value outside the volume.

  Returns:
    Array of shape `coords[0].shape`, of the volume's floating dtype.
  """
  pad = _SPLINE_PAD
  x = jnp.pad(volume, pad, constant_values=jnp.asarray(cval, volume.dtype))
  shape = x.shape
  mats = [jnp.asarray(spline_prefilter_matrix(n), x.dtype) for n in shape]
  coef = resample.apply_separable(x, mats).reshape(-1)
  base, weights = [], []
  for a in range(3):
    c = coords[a] + pad
    f = jnp.floor(c)
    base.append(f.astype(jnp.int32) - 1)
    weights.append(_cubic_weights(c - f))
  out = jnp.zeros(coords[0].shape, x.dtype)
  for i in range(4):
    xi = jnp.clip(base[0] + i, 0, shape[0] - 1)
    for j in range(4):
      yj = jnp.clip(base[1] + j, 0, shape[1] - 1)
      wij = weights[0][i] * weights[1][j]
      for k in range(4):
        zk = jnp.clip(base[2] + k, 0, shape[2] - 1)
        flat = (xi * shape[1] + yj) * shape[2] + zk
        out = out + wij * weights[2][k] * jnp.take(coef, flat, mode="clip")
  # Beyond the padding the spline of the padded volume is the constant `cval`.
  outside = False
  for a in range(3):
    outside = outside | (coords[a] < -pad + 2) | (coords[a] > volume.shape[a] - 1 + pad - 2)
  return jnp.where(outside, jnp.asarray(cval, x.dtype), out)


def _sample(volume, coords, order, cval):
  if order == 0:
    return resample.sample_nearest(volume, coords, cval=cval)
  volume = precision.real(volume)
  if order == 1:
    return resample.sample_linear(volume, coords, cval=cval)
  return sample_cubic(volume, coords, cval=cval)


def _deform_key(key):
  return jax.random.fold_in(key, registry.synth_stream("deformation"))


def _map_dtype(params, config):
  """float64 for float64 spatial params (x64), so gradients can be checked in float64."""
  return precision.float_dtype(
    *jax.tree.leaves({s.name: params[s.name] for s in registry.in_phase(config, "spatial")})
  )


def _sample_channels(volume, coords, order, cval):
  if volume.ndim == 3:
    return _sample(volume, coords, order, cval)
  return jax.vmap(lambda v: _sample(v, coords, order, cval))(volume)


@functools.partial(jax.jit, static_argnames=("config", "order"))
def _warp_jit(key, params, volume, config, order, cval):
  coords = geometry.coordinate_components(
    _deform_key(key), params, config, volume.shape[-3:], dtype=_map_dtype(params, config)
  )
  return _sample_channels(volume, coords, order, cval)


@functools.partial(jax.jit, static_argnames=("config", "order", "in_shape"))
def _unwarp_jit(key, params, volume, config, order, in_shape, cval):
  coords = geometry.inverse_coordinate_map(
    _deform_key(key), params, config, in_shape, dtype=_map_dtype(params, config)
  )
  return _sample_channels(volume, coords, order, cval)


def _check(config, order, volume, grid: str):
  if not isinstance(config, SynthConfig):
    raise TypeError(f"config must be a SynthConfig, got {type(config).__name__}")
  if order not in ORDERS:
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
  volume = jnp.asarray(volume)
  if volume.ndim not in (3, 4):
    raise ValueError(
      f"volume must be (X, Y, Z) or (C, X, Y, Z) on the {grid} grid, got shape {volume.shape}"
    )
  if order > 0 and not (
    jnp.issubdtype(volume.dtype, jnp.floating) or jnp.issubdtype(volume.dtype, jnp.integer)
  ):
    raise TypeError(
      f"volume of dtype {volume.dtype} cannot be interpolated (order {order}); use order=0"
    )
  return volume


def warp(
  key: PRNGKey,
  params: ParamsLike,
  volume: ArrayLike,
  config: SynthConfig,
  *,
  order: int = 1,
  cval: float = 0.0,
) -> jax.Array:
  """Applies a sample's spatial transform (affine, deformation, crop, flip) to a volume.

  For the same `key` and `params` the coordinate map is the one `synthesize` resamples the
  labels with: `warp(key, params, labels, config, order=0, cval=config.background)` is
  `synthesize`'s label map before the output-label lookup (and before a flip's left/right
  label swap, which is a relabelling, not a move). The flip's mirror is in the map.

  Args:
    key: the key given to `synthesize` (its deformation stream draws the field).
    params: the params given to `synthesize` (`sample_params`, or read from JSON).
    volume: an array on the labels' grid, `(X, Y, Z)` or channels first `(C, X, Y, Z)`
      (e.g. a real image, or one probability map per class). A larger grid is cropped and a
      smaller one padded as the labels would be.
    config: the `SynthConfig` of the sample.
    order: 0 (nearest neighbour, any dtype), 1 (trilinear) or 3 (cubic B-spline with its
      prefilter, as `scipy.ndimage.map_coordinates(order=3, mode="grid-constant")`).
    cval: the value taken outside the volume.

  Returns:
    The warped volume, `config.shape` (or `(C,) + config.shape`); nearest neighbour keeps
    the dtype, interpolation gives float32 (float64 for a float64 volume with x64).

  Examples:
    >>> import jax, jax.numpy as jnp, synthjax
    >>> cfg = synthjax.presets.synthseg((0, 1), (32, 32, 32))
    >>> params = synthjax.sample_params(jax.random.key(0), cfg)
    >>> image = jnp.ones((32, 32, 32))
    >>> synthjax.warp(jax.random.key(1), params, image, cfg, order=3).shape
    (32, 32, 32)
  """
  volume = _check(config, order, volume, "labels'")
  return _warp_jit(key, sampling.as_device_params(params, config), volume, config, order, cval)


def unwarp(
  key: PRNGKey,
  params: ParamsLike,
  volume: ArrayLike,
  config: SynthConfig,
  *,
  in_shape: Sequence[int],
  order: int = 1,
  cval: float = 0.0,
) -> jax.Array:
  """Maps a volume on the output grid back to the input grid: the inverse of `warp`.

  The coordinate map is inverted exactly in its affine part (and the flip) and, for the
  deformation, by a fixed-point iteration started from the flow of the negated velocity.
  `unwarp(warp(x))` is `x` up to the interpolation error, wherever the output grid saw it;
  elsewhere it is `cval`.

  Args:
    key, params, config: those of the sample (as for `warp` and `synthesize`).
    volume: `config.shape` or `(C,) + config.shape`, e.g. a prediction on a warped scan.
    in_shape: the input grid's shape `(X, Y, Z)` (the labels' or the real scan's).
    order: 0, 1 or 3, as for `warp`.
    cval: the value where the input voxel maps outside the output grid.

  Returns:
    The volume on the input grid, `in_shape` (or `(C,) + in_shape`).
  """
  volume = _check(config, order, volume, "output")
  in_shape = tuple(int(n) for n in in_shape)
  if len(in_shape) != 3 or min(in_shape) < 1:
    raise ValueError(f"in_shape must be three positive sizes, got {in_shape}")
  if volume.shape[-3:] != tuple(config.shape):
    raise ValueError(
      f"volume has spatial shape {volume.shape[-3:]}, expected the output "
      f"grid {tuple(config.shape)}"
    )
  return _unwarp_jit(
    key, sampling.as_device_params(params, config), volume, config, order, in_shape, cval
  )


def tta_predict(
  key: PRNGKey,
  fn: Callable[[jax.Array], jax.Array],
  image: ArrayLike,
  config: SynthConfig,
  *,
  n: int,
  order: int = 1,
) -> jax.Array:
  """Test-time augmentation: the mean of `n` predictions on warped copies of `image`, each
  mapped back to `image`'s grid.

  Copy `i` draws its spatial params from `config` (`sample_params`), is warped by `warp`,
  predicted by `fn` and mapped back by `unwarp`; a voxel averages the copies that saw it
  (one that none saw is 0).

  Args:
    key: PRNG key; copy `i` uses `jax.random.split(key, n)[i]`.
    fn: the model: a volume of `config.shape` to `config.shape` or `(C,) + config.shape`
      (class probabilities, say).
    image: the scan, `(X, Y, Z)`.
    config: a `SynthConfig` whose spatial stages define the augmentation.
    n: number of copies.
    order: interpolation order of both warps.

  Returns:
    The averaged prediction on `image`'s grid.
  """
  if not isinstance(n, int) or n < 1:
    raise ValueError(f"n must be a positive integer, got {n!r}")
  image = _check(config, order, image, "input")
  if image.ndim != 3:
    raise ValueError(f"image must be (X, Y, Z), got shape {image.shape}")
  total, seen = 0.0, 0.0
  for k in jax.random.split(key, n):
    k_params, k_warp = jax.random.split(k)
    params = sampling.sample_params(k_params, config)
    pred = fn(warp(k_warp, params, image, config, order=order))
    # The prediction and a volume of ones go back together (one inverse map): near the
    # field of view's edge a mapped-back prediction is part `cval` (0), and dividing by
    # the mapped-back ones undoes that.
    channels = pred.reshape((-1,) + tuple(config.shape))
    ones = jnp.ones((1,) + tuple(config.shape), channels.dtype)
    back = unwarp(
      k_warp, params, jnp.concatenate([channels, ones]), config, in_shape=image.shape, order=order
    )
    total = total + back[:-1].reshape(pred.shape[:-3] + image.shape)
    seen = seen + back[-1]
  return jnp.where(seen > 0, total / jnp.where(seen > 0, seen, 1.0), 0.0)
