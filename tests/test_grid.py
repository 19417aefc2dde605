"""Tests of `synthjax._src.data.grid` against numpy references.

References:
  * per-axis patch origins `0, step, 2 * step, ..., n - p` (TorchIO `GridSampler`), their
    count `ceil((n - p) / step) + 1` (MONAI `dense_patch_slices`) and a voxel-count map of
    the grid coverage;
  * direct slicing of the (end-padded) volume for patch contents;
  * a brute-force per-patch weighted sum for `assemble`, and a non-separable numpy
    evaluation of MONAI's Gaussian importance map (`compute_importance_map`);
  * `2 * x + 1` evaluated by numpy for `sliding_window`.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _tracing import traced

from synthjax._src.data import grid

MODES = ("average", "gaussian")
PATCHES = (8, (8, 6, 10))
# Divisible by the step (overlap 0, both patch sizes), not divisible, and shorter than the
# patch along one axis.
SHAPES = ((16, 18, 20), (17, 23, 19), (5, 20, 18), (24, 9, 40))
OVERLAPS = (0, 1, 3, (2, 0, 5))


def _triple(v):
  return (v,) * 3 if np.ndim(v) == 0 else tuple(v)


def _volume(shape, dtype, channels=(), seed=0):
  rng = np.random.default_rng(seed)
  full = tuple(shape) + tuple(channels)
  if np.issubdtype(dtype, np.integer):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, full, dtype=dtype, endpoint=True)
  # Values with full mantissas, e.g. 0.1 + 0.1 + 0.1 != 3 * 0.1 in float64.
  return (rng.standard_normal(full) * 10).astype(dtype)


def _reference_map(patch, sigma_scale=0.125):
  """MONAI's Gaussian importance map, evaluated on the full 3-D distance (not separable)."""
  patch = np.asarray(patch, np.float64)
  sigma = np.asarray(sigma_scale, np.float64) * patch
  idx = np.indices(patch.astype(int)).astype(np.float64)
  centre = (patch - 1) / 2
  r2 = sum(((idx[a] - centre[a]) / sigma[a]) ** 2 for a in range(3))
  return np.maximum(np.exp(-r2 / 2), 1e-3)


def _reference_assemble(patches, origins, shape, weights):
  """Brute-force weighted mean: sum(w * patch) / sum(w) per voxel, 0 where uncovered."""
  channels = patches.shape[4:]
  num = np.zeros(tuple(shape) + channels)
  den = np.zeros(tuple(shape))
  for patch, o in zip(patches, origins):
    ex = [min(p, s - oo) for p, s, oo in zip(patch.shape[:3], shape, o)]
    w = weights[: ex[0], : ex[1], : ex[2]]
    num[o[0] : o[0] + ex[0], o[1] : o[1] + ex[1], o[2] : o[2] + ex[2]] += (
      w.reshape(w.shape + (1,) * len(channels)) * patch[: ex[0], : ex[1], : ex[2]]
    )
    den[o[0] : o[0] + ex[0], o[1] : o[1] + ex[1], o[2] : o[2] + ex[2]] += w
  den = den.reshape(den.shape + (1,) * len(channels))
  return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


# ---------------------------------------------------------------------------------------
# grid_patches
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("patch", PATCHES)
@pytest.mark.parametrize("overlap", OVERLAPS)
def test_origins_cover_volume(shape, patch, overlap):
  p, o = _triple(patch), _triple(overlap)
  _, origins = grid.grid_patches(np.zeros(shape, np.uint8), patch, overlap)
  assert origins.shape[1] == 3 and np.issubdtype(origins.dtype, np.integer)
  assert len(np.unique(origins, axis=0)) == len(origins)

  # Every voxel is covered, and no patch starts outside the volume.
  count = np.zeros(shape, int)
  for x, y, z in origins:
    count[x : x + p[0], y : y + p[1], z : z + p[2]] += 1
  assert count.min() >= 1
  assert np.all(origins >= 0) and np.all(origins < np.asarray(shape))

  starts = []
  for a in range(3):
    n, step = shape[a], p[a] - o[a]
    s = np.unique(origins[:, a])
    starts.append(s.tolist())
    assert s[0] == 0
    if n <= p[a]:
      np.testing.assert_array_equal(s, [0])
      continue
    assert s[-1] + p[a] == n  # the last patch ends at the edge
    d = np.diff(s)
    np.testing.assert_array_equal(d[:-1], step)  # regular step except the last one
    assert 0 < d[-1] <= step
    assert len(s) == math.ceil((n - p[a]) / step) + 1  # MONAI's window count
  # The grid is the full product of the per-axis origins, in C order.
  np.testing.assert_array_equal(origins, list(itertools.product(*starts)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channels", [(), (2,), (2, 3)])
def test_patch_contents_and_padding(shape, channels):
  patch, overlap, pad_value = (8, 6, 10), (3, 1, 4), -7
  vol = _volume(shape, np.int16, channels)
  patches, origins = grid.grid_patches(vol, patch, overlap, pad_value=pad_value)
  assert patches.shape == (len(origins),) + patch + channels
  assert patches.dtype == vol.dtype
  pad = [(0, max(p - s, 0)) for p, s in zip(patch, shape)] + [(0, 0)] * len(channels)
  padded = np.pad(vol, pad, constant_values=pad_value)
  for pt, (x, y, z) in zip(patches, origins):
    np.testing.assert_array_equal(pt, padded[x : x + patch[0], y : y + patch[1], z : z + patch[2]])
  if min(s - p for s, p in zip(shape, patch)) < 0:
    assert np.any(patches == pad_value)


def test_grid_patches_accepts_jax_arrays():
  vol = np.arange(16**3, dtype=np.float32).reshape(16, 16, 16)
  a, oa = grid.grid_patches(jnp.asarray(vol), 8, 2)
  b, ob = grid.grid_patches(vol, 8, 2)
  assert isinstance(a, np.ndarray)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(oa, ob)


# ---------------------------------------------------------------------------------------
# assemble
# ---------------------------------------------------------------------------------------

ROUND_TRIP_DATA = [
  (np.float32, ()),
  (np.float64, ()),
  (np.int16, ()),
  (np.uint8, ()),
  (np.float32, (2,)),
  (np.int32, (3,)),
  (np.float64, (2, 2)),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("overlap", OVERLAPS)
@pytest.mark.parametrize("dtype,channels", ROUND_TRIP_DATA)
def test_round_trip_is_exact(mode, shape, overlap, dtype, channels):
  vol = _volume(shape, dtype, channels, seed=len(shape) + sum(shape))
  patches, origins = grid.grid_patches(vol, (8, 6, 10), overlap)
  out = grid.assemble(patches, origins, vol.shape[:3], mode)
  assert out.dtype == vol.dtype
  assert out.shape == vol.shape
  np.testing.assert_array_equal(out, vol)


@pytest.mark.parametrize("mode", MODES)
def test_round_trip_keeps_infinities(mode):
  vol = _volume((17, 16, 16), np.float32)
  vol[0, 0, 0], vol[8, 7, 6], vol[16, 15, 15] = np.inf, -np.inf, np.inf
  patches, origins = grid.grid_patches(vol, 8, 3)
  np.testing.assert_array_equal(grid.assemble(patches, origins, vol.shape, mode), vol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels", [(), (2,)])
def test_assemble_matches_weighted_mean(mode, channels):
  # Differing patch values, patches partly beyond the volume and uncovered voxels.
  rng = np.random.default_rng(3)
  shape, patch = (20, 17, 16), (8, 6, 10)
  origins = np.stack([rng.integers(0, s, 12) for s in shape], axis=1)
  patches = rng.standard_normal((12,) + patch + channels)
  weights = _reference_map(patch) if mode == "gaussian" else np.ones(patch)
  ref = _reference_assemble(patches, origins, shape, weights)
  out = grid.assemble(patches, origins, shape, mode)
  assert out.shape == shape + channels and out.dtype == np.float64
  np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
  assert np.any(ref == 0)  # the case covers voxels no patch reaches


def test_integer_patches_blend_to_float_unless_exact():
  origins = np.array([[0, 0, 0], [0, 0, 2]])
  patches = np.stack([np.full((4, 4, 4), 1, np.int32), np.full((4, 4, 4), 2, np.int32)])
  out = grid.assemble(patches, origins, (4, 4, 6), "average")
  assert out.dtype == np.float64
  np.testing.assert_array_equal(out[:, :, 2:4], 1.5)
  np.testing.assert_array_equal(out[:, :, :2], 1.0)
  patches[1] = 1
  out = grid.assemble(patches, origins, (4, 4, 6), "average")
  assert out.dtype == np.int32
  np.testing.assert_array_equal(out, 1)


@pytest.mark.parametrize(
  "patch,sigma_scale",
  [
    ((8, 8, 8), 0.125),
    ((7, 6, 10), 0.125),
    ((16, 9, 5), (0.05, 0.2, 0.125)),
  ],
)
def test_importance_map_matches_reference(patch, sigma_scale):
  ref = _reference_map(patch, sigma_scale)
  np.testing.assert_allclose(grid._importance_map(patch, sigma_scale), ref, rtol=1e-12)
  if sigma_scale != 0.125:
    assert ref.min() == 1e-3  # the clamp is exercised


@pytest.mark.parametrize("sigma_scale", [0.125, 0.3])
def test_gaussian_blend_of_two_patches(sigma_scale):
  # Two constant patches a and b overlapping on x in [4, 8): the blend there is the
  # weighted mean with weights read from the reference map at each patch's local index.
  a, b, p = 1.0, 5.0, 8
  patches = np.stack([np.full((p,) * 3, a), np.full((p,) * 3, b)]).astype(np.float32)
  origins = np.array([[0, 0, 0], [4, 0, 0]])
  out = grid.assemble(patches, origins, (12, p, p), "gaussian", sigma_scale=sigma_scale)
  w = _reference_map((p,) * 3, sigma_scale)
  expected = np.empty((12, p, p))
  expected[:4], expected[8:] = a, b
  wa, wb = w[4:8], w[0:4]
  expected[4:8] = (wa * a + wb * b) / (wa + wb)
  np.testing.assert_allclose(out, expected, rtol=1e-6)
  # Weights fall off from each patch centre, so the blend leans to the nearer patch.
  assert out[4, 4, 4] < (a + b) / 2 < out[7, 4, 4]
  avg = grid.assemble(patches, origins, (12, p, p), "average")
  np.testing.assert_array_equal(avg[4:8], (a + b) / 2)


# ---------------------------------------------------------------------------------------
# sliding_window
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(17, 20, 16), (5, 20, 18)])
def test_sliding_window_affine_compiles_once(mode, shape):
  vol = _volume(shape, np.float32)
  fn = jax.jit(lambda x: x * 2 + 1)
  _, origins = grid.grid_patches(vol, 8, 2)
  assert len(origins) % 4 != 0  # the last batch is padded
  with traced() as seen:
    out = grid.sliding_window(fn, vol, 8, 2, batch_size=4, mode=mode)
  assert out.shape == shape and out.dtype == np.float32
  np.testing.assert_allclose(out, 2 * vol + 1, rtol=1e-6)
  assert seen["<lambda>"] == 1, seen


def test_sliding_window_changes_channels():
  vol = _volume((18, 16, 17), np.float32)
  fn = jax.jit(lambda x: jnp.stack([x, -x], axis=-1))
  out = grid.sliding_window(fn, vol, (8, 6, 10), (2, 1, 3), batch_size=3)
  assert out.shape == vol.shape + (2,)
  np.testing.assert_allclose(out, np.stack([vol, -vol], -1), rtol=1e-6)
  # And from channels to none.
  out = grid.sliding_window(jax.jit(lambda x: x.sum(-1)), out, 8, 3, mode="average")
  np.testing.assert_allclose(out, np.zeros(vol.shape), atol=1e-6)


def test_sliding_window_batch_size_larger_than_grid():
  vol = _volume((16, 16, 16), np.float32)
  fn = jax.jit(lambda x: x * 2 + 1)
  with traced() as seen:
    out = grid.sliding_window(fn, vol, 16, 0, batch_size=5)
  np.testing.assert_allclose(out, 2 * vol + 1, rtol=1e-6)
  assert seen["<lambda>"] == 1, seen


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------

_VOL = np.zeros((16, 16, 16), np.float32)
_P, _O = grid.grid_patches(_VOL, 8, 2)
_ID = lambda x: x  # noqa: E731


@pytest.mark.parametrize(
  "call,match",
  [
    (lambda: grid.grid_patches(_VOL, 8, 8), r"overlap must be smaller than patch_size"),
    (lambda: grid.grid_patches(_VOL, 8, (1, 9, 1)), r"overlap must be smaller"),
    (lambda: grid.grid_patches(_VOL, -4), r"patch_size must be positive"),
    (lambda: grid.grid_patches(_VOL, (8, 0, 8)), r"patch_size must be positive"),
    (lambda: grid.grid_patches(_VOL, 8, -1), r"overlap must be non-negative"),
    (lambda: grid.grid_patches(_VOL, (8, 8)), r"patch_size must be an int or a 3-tuple"),
    (lambda: grid.grid_patches(_VOL, 2.5), r"patch_size must be an int or a 3-tuple"),
    (lambda: grid.grid_patches(_VOL, 8, 1.5), r"overlap must be an int or a 3-tuple"),
    (lambda: grid.grid_patches(np.zeros((16, 16)), 8), r"volume must have shape"),
    (
      lambda: grid.assemble(_P[:-1], _O, (16, 16, 16)),
      rf"{len(_P) - 1} patches but "
      rf"{len(_O)} origins",
    ),
    (
      lambda: grid.assemble(_P, _O, (16, 16, 16), "max"),
      r"unknown mode 'max'; allowed modes are average, gaussian",
    ),
    (lambda: grid.assemble(_P, _O[:, :2], (16, 16, 16)), r"origins must have shape \(N, 3\)"),
    (lambda: grid.assemble(_P, _O - 1, (16, 16, 16)), r"origins must be non-negative"),
    (lambda: grid.assemble(_P, _O.astype(float), (16, 16, 16)), r"origins must be integers"),
    (lambda: grid.assemble(_P[:, 0], _O, (16, 16, 16)), r"patches must have shape"),
    (lambda: grid.assemble(_P, _O, (16, 0, 16)), r"shape must be positive"),
    (lambda: grid.assemble(_P, _O, (16, 16)), r"shape must be an int or a 3-tuple"),
    (
      lambda: grid.assemble(_P, _O, (16, 16, 16), "gaussian", sigma_scale=0),
      r"sigma_scale must be a positive",
    ),
    (lambda: grid.sliding_window(_ID, _VOL, 8, batch_size=0), r"batch_size must be positive"),
    (lambda: grid.sliding_window(_ID, _VOL, 8, mode="mean"), r"allowed modes are average"),
    (lambda: grid.sliding_window(_ID, _VOL, 8, 8), r"overlap must be smaller"),
    (
      lambda: grid.sliding_window(lambda x: x[:, :4], _VOL, 8),
      r"fn must map \(B, px, py, pz\[, C\]\)",
    ),
    (lambda: grid.sliding_window(lambda x: x[:1], _VOL, 8), r"fn must map"),
  ],
)
def test_errors(call, match):
  with pytest.raises(ValueError, match=match):
    call()
