"""Patch grids over a volume, and stitching patch predictions back into a volume.

`grid_patches` cuts a volume into a regular grid of overlapping patches that covers every
voxel, `assemble` blends (predicted) patches back into a volume, and `sliding_window` runs a
JAX function over the grid in fixed-size batches.

`grid_patches` and `assemble` are plain numpy, so they run in Grain CPU workers without
importing JAX; only `sliding_window` touches JAX.

References:
  * TorchIO `GridSampler` (`_get_patch_locations`) and `GridAggregator` (overlap mode
    "average");
  * MONAI `dense_patch_slices`, `compute_importance_map` (`BlendMode.CONSTANT` /
    `BlendMode.GAUSSIAN`) and `sliding_window_inference`.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from synthjax._src.pytypes import Size3

MODES = ("average", "gaussian")
# MONAI `compute_importance_map` clamps Gaussian weights to at least this value, so that
# voxels at a patch corner still get a (small) say where no other patch overlaps them.
MIN_WEIGHT = 1e-3


def _triple(value, name):
  """Returns `value` (an int or a length-3 sequence of ints) as a 3-tuple of ints."""
  items = (value,) * 3 if np.ndim(value) == 0 else tuple(np.asarray(value).reshape(-1))
  if np.ndim(value) > 1 or len(items) != 3:
    raise ValueError(f"{name} must be an int or a 3-tuple of ints, got {value!r}")
  try:
    return tuple(operator.index(v) for v in items)
  except TypeError:
    raise ValueError(f"{name} must be an int or a 3-tuple of ints, got {value!r}") from None


def _check_sizes(patch_size, overlap):
  """Validates and normalises `patch_size` and `overlap` to 3-tuples."""
  patch = _triple(patch_size, "patch_size")
  over = _triple(overlap, "overlap")
  if min(patch) < 1:
    raise ValueError(f"patch_size must be positive along every axis, got {patch}")
  if min(over) < 0:
    raise ValueError(f"overlap must be non-negative along every axis, got {over}")
  if any(o >= p for o, p in zip(over, patch)):
    raise ValueError(
      f"overlap must be smaller than patch_size along every axis, got "
      f"overlap={over} and patch_size={patch}"
    )
  return patch, over


def _axis_starts(size, patch, step):
  """Patch origins along one axis: `0, step, 2 * step, ...`, the last one flush with the end."""
  if size <= patch:
    return [0]
  starts = list(range(0, size - patch + 1, step))
  if starts[-1] != size - patch:
    starts.append(size - patch)
  return starts


def grid_patches(
  volume: np.ndarray, patch_size: Size3, overlap: Size3 = 0, *, pad_value: float = 0
) -> tuple[np.ndarray, np.ndarray]:
  """Cuts a volume into a grid of overlapping patches that covers every voxel.

  Along each axis patches start at `0, step, 2 * step, ...` with `step = patch_size -
  overlap`, and the last patch is shifted back to end exactly at the volume edge, so
  sizes that the step does not divide are covered without padding (the last two patches
  then overlap by more than `overlap`). An axis shorter than the patch is padded at its end
  with `pad_value` and holds a single patch at origin 0. Origins are listed in C order
  over `(x, y, z)`.

  Mirrors TorchIO `GridSampler` (`_get_patch_locations`) and MONAI `dense_patch_slices`,
  except that `overlap` is in voxels and may be odd (TorchIO requires an even overlap,
  MONAI takes a fraction of the patch).

  Args:
    volume: array of shape `(X, Y, Z)` or `(X, Y, Z, C...)`, any dtype.
    patch_size: int or 3-tuple of ints, the spatial patch shape `(px, py, pz)`.
    overlap: int or 3-tuple of ints, voxels shared by neighbouring patches;
      `0 <= overlap < patch_size`.
    pad_value: fill value for axes shorter than the patch.

  Returns:
    `(patches, origins)`: `patches` of shape `(N, px, py, pz, C...)` with the dtype of
    `volume`, and `origins` of shape `(N, 3)` (int64), the voxel index of each patch's
    first corner in `volume`.

  Raises:
    ValueError: if `volume` has fewer than 3 axes, or a size is not positive, or
      `overlap` is negative or not smaller than `patch_size`.

  Examples:
    >>> import numpy as np
    >>> patches, origins = grid_patches(np.zeros((10, 8, 3)), 4, overlap=1)
    >>> patches.shape
    (9, 4, 4, 4)
    >>> sorted(set(origins[:, 0].tolist())), sorted(set(origins[:, 1].tolist()))
    ([0, 3, 6], [0, 3, 4])
  """
  volume = np.asarray(volume)
  if volume.ndim < 3:
    raise ValueError(f"volume must have shape (X, Y, Z) or (X, Y, Z, C...), got {volume.shape}")
  patch, over = _check_sizes(patch_size, overlap)
  spatial = volume.shape[:3]
  if min(spatial) < 1:
    raise ValueError(f"volume must be non-empty along every spatial axis, got {spatial}")
  pad = [(0, max(p - s, 0)) for p, s in zip(patch, spatial)]
  if any(after for _, after in pad):
    pad += [(0, 0)] * (volume.ndim - 3)
    volume = np.pad(volume, pad, constant_values=pad_value)
  starts = [_axis_starts(s, p, p - o) for s, p, o in zip(spatial, patch, over)]
  origins = np.array(list(itertools.product(*starts)), np.int64).reshape(-1, 3)
  patches = np.empty((len(origins),) + patch + volume.shape[3:], volume.dtype)
  for i, (x, y, z) in enumerate(origins):
    patches[i] = volume[x : x + patch[0], y : y + patch[1], z : z + patch[2]]
  return patches, origins


def _importance_map(patch_shape, sigma_scale=0.125):
  """Separable Gaussian weights of one patch, as MONAI `compute_importance_map`.

  Each axis holds `exp(-d**2 / (2 * sigma**2))` with `d` the distance to the patch centre
  `(p - 1) / 2` and `sigma = sigma_scale * p`; the product is clamped to at least
  `MIN_WEIGHT`. Returns float64 of shape `patch_shape`.
  """
  scales = _scales(sigma_scale)
  weights = np.ones(patch_shape, np.float64)
  for axis, (p, s) in enumerate(zip(patch_shape, scales)):
    d = np.arange(p, dtype=np.float64) - (p - 1) / 2.0
    g = np.exp(-0.5 * (d / (s * p)) ** 2)
    weights = weights * g.reshape([-1 if a == axis else 1 for a in range(3)])
  return np.maximum(weights, MIN_WEIGHT)


def _scales(sigma_scale):
  """Returns `sigma_scale` (a float or a length-3 sequence) as 3 positive floats."""
  scales = np.asarray(sigma_scale, np.float64).reshape(-1)
  if scales.size == 1:
    scales = np.repeat(scales, 3)
  if scales.size != 3 or not np.all(np.isfinite(scales)) or np.any(scales <= 0):
    raise ValueError(
      f"sigma_scale must be a positive float or a 3-tuple of positive floats, got {sigma_scale!r}"
    )
  return tuple(scales.tolist())


def assemble(
  patches: np.ndarray,
  origins: np.ndarray,
  shape: Sequence[int],
  mode: str = "average",
  *,
  sigma_scale: float = 0.125,
) -> np.ndarray:
  """Blends patches (e.g. per-patch predictions) back into one volume.

  Each voxel gets the weighted mean of the patch values that cover it: weight 1 for
  `"average"`, a Gaussian importance map centred on each patch for `"gaussian"`, which
  damps patch borders where predictions are least reliable. Parts of a patch beyond
  `shape` (a padded patch from `grid_patches`) are cropped; voxels no patch covers are 0.

  Mirrors TorchIO `GridAggregator` (overlap mode "average") and the blending of MONAI
  `sliding_window_inference` (`BlendMode.CONSTANT` / `BlendMode.GAUSSIAN`, importance map
  from `compute_importance_map` with `sigma = sigma_scale * patch_size`, clamped to at
  least 1e-3).

  Accumulation is in float64. Float patches give their own dtype back; integer and bool
  patches give their own dtype back when every blended value is exactly representable in
  it (e.g. an untouched round trip), else float64. The round trip
  `assemble(*grid_patches(x, p, o), x.shape[:3], mode)` returns `x` bit for bit in
  both modes.

  Args:
    patches: array of shape `(N, px, py, pz, C...)`.
    origins: int array of shape `(N, 3)`, the first voxel of each patch in the volume.
    shape: spatial shape `(X, Y, Z)` of the output volume.
    mode: `"average"` or `"gaussian"`.
    sigma_scale: float or 3-tuple, Gaussian sigma as a fraction of the patch size
      (`"gaussian"` only).

  Returns:
    Array of shape `shape + patches.shape[4:]`.

  Raises:
    ValueError: on an unknown `mode`, malformed `patches`, `origins` or `shape`, a count
      mismatch between `patches` and `origins`, negative origins, patches that all lie
      outside the volume, or a non-positive `sigma_scale`.

  Examples:
    >>> import numpy as np
    >>> x = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    >>> patches, origins = grid_patches(x, 4, overlap=2)
    >>> y = assemble(patches * 2, origins, x.shape, "gaussian")
    >>> bool(np.array_equal(y, 2 * x)), y.dtype
    (True, dtype('float32'))
  """
  if mode not in MODES:
    raise ValueError(f"unknown mode {mode!r}; allowed modes are {', '.join(MODES)}")
  patches = np.asarray(patches)
  origins = np.asarray(origins)
  if patches.ndim < 4:
    raise ValueError(f"patches must have shape (N, px, py, pz, C...), got {patches.shape}")
  if origins.ndim != 2 or origins.shape[1] != 3:
    raise ValueError(f"origins must have shape (N, 3), got {origins.shape}")
  if len(origins) != len(patches):
    raise ValueError(
      f"got {len(patches)} patches but {len(origins)} origins; they must match one to one"
    )
  if origins.size and not np.issubdtype(origins.dtype, np.integer):
    raise ValueError(f"origins must be integers, got dtype {origins.dtype}")
  if np.any(origins < 0):
    raise ValueError(
      f"origins must be non-negative, got {origins.min(axis=0).tolist()} as per-axis minimum"
    )
  shape = _triple(shape, "shape")
  if min(shape) < 1:
    raise ValueError(f"shape must be positive along every axis, got {shape}")
  if len(origins) and not np.any(np.all(origins < np.asarray(shape), axis=1)):
    raise ValueError(
      f"no patch covers any voxel of the volume of shape {shape}: every origin "
      f"lies outside it (e.g. {origins[0].tolist()})"
    )

  patch_shape = patches.shape[1:4]
  channels = patches.shape[4:]
  if mode == "gaussian":
    weights = _importance_map(patch_shape, sigma_scale)
  else:
    weights = np.ones(patch_shape, np.float64)
  weights = weights.reshape(patch_shape + (1,) * len(channels))

  acc_dtype = np.result_type(patches.dtype, np.float64)
  out_shape = shape + channels
  # Blend deviations from a reference value per voxel (any covering patch value), not raw
  # values: identical values then stay bit-exact (summing three float64 0.1 and dividing by
  # 3 does not give 0.1 back), and differing values lose less precision.
  reference = np.zeros(out_shape, acc_dtype)
  regions = []
  for patch, origin in zip(patches, origins):
    extent = [max(0, min(p, s - o)) for p, s, o in zip(patch_shape, shape, origin)]
    dst = tuple(slice(o, o + e) for o, e in zip(origin, extent))
    src = tuple(slice(0, e) for e in extent)
    regions.append((dst, src))
    reference[dst] = patch[src]
  numer = np.zeros(out_shape, acc_dtype)
  denom = np.zeros(shape + (1,) * len(channels), np.float64)
  for patch, (dst, src) in zip(patches, regions):
    values, ref = patch[src], reference[dst]
    # Equal values deviate by exactly 0, also where they are infinite (inf - inf is nan).
    deviation = np.subtract(values, ref, out=np.zeros(ref.shape, acc_dtype), where=values != ref)
    numer[dst] += weights[src] * deviation
    denom[dst] += weights[src]
  blended = reference + np.divide(numer, denom, out=np.zeros_like(numer), where=denom > 0)

  if patches.dtype.kind in "biu":
    exact = blended.astype(patches.dtype)
    return exact if np.array_equal(exact, blended) else blended
  return blended.astype(patches.dtype)


def sliding_window(
  fn: Callable[[Any], Any],
  volume: np.ndarray,
  patch_size: Size3,
  overlap: Size3 = 0,
  *,
  batch_size: int = 4,
  mode: str = "gaussian",
  sigma_scale: float = 0.125,
  pad_value: float = 0,
) -> np.ndarray:
  """Runs a JAX function patch-wise over a volume and blends the outputs.

  The volume is cut with `grid_patches`, `fn` runs on batches of exactly `batch_size`
  patches (the last batch is zero-padded and its padded outputs dropped, so a jitted `fn`
  compiles once), and the outputs are stitched with `assemble`.

  Mirrors MONAI `sliding_window_inference` (`sw_batch_size`, `mode`, `sigma_scale`), with
  the overlap in voxels rather than as a fraction of the patch.

  Args:
    fn: callable mapping a JAX array `(B, px, py, pz[, C])` to `(B, px, py, pz[, C'])`,
      typically `jax.jit`-ed.
    volume: array of shape `(X, Y, Z)` or `(X, Y, Z, C...)`.
    patch_size: int or 3-tuple of ints, see `grid_patches`.
    overlap: int or 3-tuple of ints, see `grid_patches`.
    batch_size: patches per call of `fn`.
    mode: blending, `"gaussian"` or `"average"`, see `assemble`.
    sigma_scale: Gaussian sigma as a fraction of the patch size, see `assemble`.
    pad_value: fill value for axes shorter than the patch, see `grid_patches`.

  Returns:
    numpy array of shape `volume.shape[:3] + C'` with the dtype of `fn`'s outputs (see
    `assemble` for integer outputs).

  Raises:
    ValueError: on invalid sizes or mode, a non-positive `batch_size`, or `fn` outputs
      whose leading `(B, px, py, pz)` axes differ from its inputs'.

  Examples:
    >>> import jax, numpy as np
    >>> x = np.random.default_rng(0).random((9, 10, 11), np.float32)
    >>> y = sliding_window(jax.jit(lambda b: 2 * b), x, 6, overlap=2, batch_size=3)
    >>> bool(np.allclose(y, 2 * x)), y.shape
    (True, (9, 10, 11))
  """
  # Imported here so that workers that only cut or assemble patches never load JAX.
  import jax.numpy as jnp

  if mode not in MODES:
    raise ValueError(f"unknown mode {mode!r}; allowed modes are {', '.join(MODES)}")
  if operator.index(batch_size) < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  _scales(sigma_scale)  # fail before running fn over the whole volume
  volume = np.asarray(volume)
  patches, origins = grid_patches(volume, patch_size, overlap, pad_value=pad_value)
  outputs = []
  for start in range(0, len(patches), batch_size):
    batch = patches[start : start + batch_size]
    n = len(batch)
    if n < batch_size:
      filler = np.zeros((batch_size - n,) + batch.shape[1:], batch.dtype)
      batch = np.concatenate([batch, filler])
    out = np.asarray(fn(jnp.asarray(batch)))
    if out.ndim < 4 or out.shape[:4] != batch.shape[:4]:
      raise ValueError(
        f"fn must map (B, px, py, pz[, C]) to (B, px, py, pz[, C']); "
        f"got {batch.shape} -> {out.shape}"
      )
    outputs.append(out[:n])
  return assemble(np.concatenate(outputs), origins, volume.shape[:3], mode, sigma_scale=sigma_scale)
