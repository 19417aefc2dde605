"""Numerical tests of `synthjax._src.ops.resample` against scipy/numpy references.

References:
  * `scipy.ndimage.map_coordinates` (order 0 and 1; modes "grid-constant" and "nearest")
    for `sample_nearest` / `sample_linear`, including points outside the volume;
  * `scipy.ndimage.affine_transform` for sampling along a random affine grid;
  * `map_coordinates` / `np.interp` at align-corners positions `i * (n_in - 1) / (n_out - 1)`
    for `resize_linear`, `linear_resize_matrix` and `dynamic_resize_matrix`;
  * `np.einsum` for `apply_separable`, `np.indices` for `grid_coords`.

Every comparison runs eagerly (`jax.disable_jit`) and under `jax.jit`; batched cases also
under `jax.vmap`. Tolerances are float32 round-off on O(1) data.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from synthjax._src.ops import resample

ATOL = 2e-5
# One volume shape, and coordinates on a grid of the same shape, for the single-volume
# tests: eager (op-by-op) runs then reuse each other's compiled primitives.
SHAPE = (9, 12, 7)


def _call(fn, mode, *args):
  """Runs `fn(*args)` eagerly or jitted and returns numpy."""
  if mode == "eager":
    with jax.disable_jit():
      return np.asarray(fn(*args))
  return np.asarray(jax.jit(fn)(*args))


def _random_coords(rng, shape, out_shape=SHAPE, margin=2.5, avoid_ties=False):
  """`(3,) + out_shape` float32 coordinates, uniform in `[-margin, s - 1 + margin]` per axis.

  With `avoid_ties`, no coordinate lies within 1e-3 of a half-integer, where
  nearest-neighbour rounding is ambiguous between float32 and float64.
  """
  n = int(np.prod(out_shape))
  lo = -margin
  hi = np.asarray(shape, np.float64)[:, None] - 1 + margin
  c = (lo + rng.uniform(size=(3, 2 * n)) * (hi - lo)).astype(np.float32)
  if avoid_ties:
    frac = c.astype(np.float64) - np.floor(c)
    c = c[:, (np.abs(frac - 0.5) > 1e-3).all(axis=0)]
  return c[:, :n].reshape((3,) + tuple(out_shape))


def _align_corners(n_in, n_out):
  return np.arange(n_out) * (n_in - 1) / max(n_out - 1, 1)


def _align_corners_grid(in_shape, out_shape):
  axes = [_align_corners(i, o) for i, o in zip(in_shape, out_shape)]
  return np.stack(np.meshgrid(*axes, indexing="ij"))


# ---------------------------------------------------------------------------------------
# sample_nearest


@pytest.mark.parametrize(
  "dtype,cval,mode",
  [
    (np.int32, -1, "eager"),
    (np.int32, -1, "jit"),
    (np.int16, 7, "jit"),
    (np.uint8, 200, "jit"),
    (np.float32, -3.5, "jit"),
  ],
)
def test_sample_nearest_matches_map_coordinates(dtype, cval, mode):
  rng = np.random.default_rng(0)
  shape = SHAPE
  if np.issubdtype(dtype, np.integer):
    vol = rng.integers(0, 100, size=shape).astype(dtype)
  else:
    vol = rng.normal(size=shape).astype(dtype)
  coords = _random_coords(rng, shape, avoid_ties=True)
  ref = ndimage.map_coordinates(
    vol, coords.astype(np.float64), order=0, mode="grid-constant", cval=cval
  )
  fn = lambda v, c: resample.sample_nearest(v, c, cval=cval)
  out = _call(fn, mode, jnp.asarray(vol), jnp.asarray(coords))
  assert out.dtype == vol.dtype
  # The draw must include both inside and outside points for the test to mean anything.
  idx = np.floor(coords + 0.5).reshape(3, -1)
  outside = (idx < 0) | (idx > np.array(shape)[:, None] - 1)
  assert 0.1 < outside.any(axis=0).mean() < 0.9
  np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_sample_nearest_half_integers_round_up(mode):
  # Exact ties (representable in float32) follow floor(c + 0.5), as scipy: -0.5 reads voxel
  # 0 and s - 0.5 falls outside.
  rng = np.random.default_rng(6)
  vol = rng.integers(0, 100, size=SHAPE).astype(np.int32)
  halves = [np.arange(-2, s + 2) - 0.5 for s in SHAPE]
  coords = np.stack(np.meshgrid(*halves, indexing="ij")).astype(np.float32)
  ref = ndimage.map_coordinates(
    vol, coords.astype(np.float64), order=0, mode="grid-constant", cval=-1
  )
  out = _call(
    lambda v, c: resample.sample_nearest(v, c, cval=-1), mode, jnp.asarray(vol), jnp.asarray(coords)
  )
  np.testing.assert_array_equal(out, ref)
  # Closed form: coordinate k - 0.5 reads voxel k for k in [0, s), and cval elsewhere.
  inside = np.full(out.shape, False)
  inside[2:-2, 2:-2, 2:-2] = True
  np.testing.assert_array_equal(out[2:-2, 2:-2, 2:-2], vol)
  assert (out[~inside] == -1).all()


def test_sample_nearest_vmap_and_batch_shape():
  rng = np.random.default_rng(1)
  shape = (8, 6, 10)
  vols = rng.integers(0, 50, size=(3,) + shape).astype(np.int32)
  coords = np.stack([_random_coords(rng, shape, (20, 25), avoid_ties=True) for _ in range(3)])
  out = np.asarray(
    jax.jit(jax.vmap(lambda v, c: resample.sample_nearest(v, c, cval=-9)))(
      jnp.asarray(vols), jnp.asarray(coords)
    )
  )
  assert out.shape == (3, 20, 25)
  for b in range(3):
    ref = ndimage.map_coordinates(
      vols[b], coords[b].astype(np.float64), order=0, mode="grid-constant", cval=-9
    )
    np.testing.assert_array_equal(out[b], ref)


# ---------------------------------------------------------------------------------------
# sample_linear


@pytest.mark.parametrize("cval,mode", [(0.0, "eager"), (0.0, "jit"), (2.5, "jit")])
def test_sample_linear_matches_map_coordinates(cval, mode):
  rng = np.random.default_rng(2)
  shape = SHAPE
  vol = rng.normal(size=shape).astype(np.float32)
  coords = _random_coords(rng, shape)
  ref = ndimage.map_coordinates(
    vol.astype(np.float64), coords.astype(np.float64), order=1, mode="grid-constant", cval=cval
  )
  fn = lambda v, c: resample.sample_linear(v, c, cval=cval)
  out = _call(fn, mode, jnp.asarray(vol), jnp.asarray(coords))
  np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize(
  "margin,mode",
  [(0.0, "jit"), (3.0, "eager"), (3.0, "jit")],
  ids=["in-range-jit", "out-of-range-eager", "out-of-range-jit"],
)
def test_sample_linear_clamp_matches_nearest_mode(margin, mode):
  # Clamping coordinates into the volume is edge extension, which is scipy's "nearest" mode
  # for linear interpolation, both for in-range and out-of-range coordinates.
  rng = np.random.default_rng(3)
  shape = SHAPE
  vol = rng.normal(size=shape).astype(np.float32)
  coords = _random_coords(rng, shape, margin=margin)
  ref = ndimage.map_coordinates(
    vol.astype(np.float64), coords.astype(np.float64), order=1, mode="nearest"
  )
  fn = lambda v, c: resample.sample_linear(v, c, clamp=True)
  out = _call(fn, mode, jnp.asarray(vol), jnp.asarray(coords))
  np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape", [(1, 6, 5), (6, 1, 5), (2, 5, 1)])
def test_sample_linear_clamp_with_thin_axes(shape):
  # The clamped path puts the base corner in [0, n - 2]; axes of one or two voxels are its
  # edge cases.
  rng = np.random.default_rng(6)
  vol = rng.normal(size=shape).astype(np.float32)
  coords = _random_coords(rng, shape, (20, 30), margin=2.0)
  ref = ndimage.map_coordinates(
    vol.astype(np.float64), coords.astype(np.float64), order=1, mode="nearest"
  )
  out = _call(
    lambda v, c: resample.sample_linear(v, c, clamp=True),
    "jit",
    jnp.asarray(vol),
    jnp.asarray(coords),
  )
  np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("clamp", [False, True])
def test_sample_linear_channels_match_per_channel(clamp):
  rng = np.random.default_rng(4)
  shape = (8, 9, 7)
  vol = rng.normal(size=shape + (3,)).astype(np.float32)
  coords = _random_coords(rng, shape, (30, 40))
  scipy_mode = "nearest" if clamp else "grid-constant"
  ref = np.stack(
    [
      ndimage.map_coordinates(
        vol[..., ch].astype(np.float64), coords.astype(np.float64), order=1, mode=scipy_mode
      )
      for ch in range(3)
    ],
    axis=-1,
  )
  fn = lambda v, c: resample.sample_linear(v, c, clamp=clamp)
  out = _call(fn, "jit", jnp.asarray(vol), jnp.asarray(coords))
  assert out.shape == (30, 40, 3)
  np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)


def test_sample_linear_vmap_over_volumes_and_coords():
  rng = np.random.default_rng(5)
  shape = (7, 8, 9)
  vols = rng.normal(size=(4,) + shape).astype(np.float32)
  coords = np.stack([_random_coords(rng, shape, (500,)) for _ in range(4)])
  out = np.asarray(
    jax.jit(jax.vmap(resample.sample_linear))(jnp.asarray(vols), jnp.asarray(coords))
  )
  for b in range(4):
    ref = ndimage.map_coordinates(
      vols[b].astype(np.float64), coords[b].astype(np.float64), order=1, mode="grid-constant"
    )
    np.testing.assert_allclose(out[b], ref, rtol=0, atol=ATOL)


# ---------------------------------------------------------------------------------------
# Sampling along an affine grid


def _random_affine(rng, shape):
  """4x4 matrix: rotation and anisotropic scaling about the centre, plus a shift."""
  a, b, c = np.deg2rad(rng.uniform(-25, 25, size=3))
  rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
  ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
  rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
  lin = rz @ ry @ rx @ np.diag(rng.uniform(0.8, 1.25, size=3))
  lin += rng.uniform(-0.05, 0.05, size=(3, 3))
  centre = (np.asarray(shape) - 1) / 2.0
  m = np.eye(4)
  m[:3, :3] = lin
  m[:3, 3] = centre - lin @ centre + rng.uniform(-2, 2, size=3)
  return m


@pytest.mark.parametrize(
  "order,seed,mode", [(0, 0, "jit"), (0, 1, "jit"), (1, 0, "eager"), (1, 1, "jit")]
)
def test_affine_sampling_matches_affine_transform(order, seed, mode):
  rng = np.random.default_rng(10 + seed)
  shape = SHAPE
  m = _random_affine(rng, shape)
  grid = np.indices(shape, dtype=np.float64)
  coords64 = np.einsum("ij,j...->i...", m[:3, :3], grid) + m[:3, 3].reshape(3, 1, 1, 1)
  coords = coords64.astype(np.float32)
  if order == 0:
    vol = rng.integers(0, 20, size=shape).astype(np.int32)
    ref = ndimage.affine_transform(
      vol, m[:3, :3], offset=m[:3, 3], order=0, mode="grid-constant", cval=-1
    )
    out = _call(
      lambda v, c: resample.sample_nearest(v, c, cval=-1),
      mode,
      jnp.asarray(vol),
      jnp.asarray(coords),
    )
    # Compare where float32 and float64 coordinates cannot round differently.
    frac = coords64 - np.floor(coords64)
    ok = (np.abs(frac - 0.5) > 1e-3).all(axis=0)
    assert ok.mean() > 0.98
    np.testing.assert_array_equal(out[ok], ref[ok])
  else:
    vol = rng.normal(size=shape).astype(np.float32)
    ref = ndimage.affine_transform(
      vol.astype(np.float64), m[:3, :3], offset=m[:3, 3], order=1, mode="grid-constant", cval=0.0
    )
    out = _call(resample.sample_linear, mode, jnp.asarray(vol), jnp.asarray(coords))
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)
  # The affine must push part of the grid outside the volume.
  assert (ref == (-1 if order == 0 else 0)).any()


# ---------------------------------------------------------------------------------------
# Resizes


RESIZES = [
  ((8, 9, 10), (16, 18, 21)),  # upsampling
  ((20, 17, 12), (7, 5, 4)),  # downsampling
  ((10, 12, 14), (10, 25, 6)),  # one axis kept, one up, one down
  ((2, 3, 5), (33, 1, 5)),  # two nodes to many, and to a single node
]


@pytest.mark.parametrize(
  "in_shape,out_shape,mode", [RESIZES[0] + ("eager",)] + [r + ("jit",) for r in RESIZES]
)
def test_resize_linear_matches_align_corners_map_coordinates(in_shape, out_shape, mode):
  rng = np.random.default_rng(20)
  x = rng.normal(size=in_shape).astype(np.float32)
  ref = ndimage.map_coordinates(
    x.astype(np.float64), _align_corners_grid(in_shape, out_shape), order=1, mode="nearest"
  )
  out = _call(lambda x: resample.resize_linear(x, out_shape), mode, jnp.asarray(x))
  assert out.shape == out_shape
  np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)


def test_resize_linear_channels_and_vmap():
  rng = np.random.default_rng(21)
  in_shape, out_shape = (5, 6, 7), (9, 4, 13)
  x = rng.normal(size=(2,) + in_shape + (3,)).astype(np.float32)
  out = np.asarray(jax.jit(jax.vmap(lambda x: resample.resize_linear(x, out_shape)))(x))
  assert out.shape == (2,) + out_shape + (3,)
  grid = _align_corners_grid(in_shape, out_shape)
  for b in range(2):
    for ch in range(3):
      ref = ndimage.map_coordinates(x[b, ..., ch].astype(np.float64), grid, order=1, mode="nearest")
      np.testing.assert_allclose(out[b, ..., ch], ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("n_in,n_out", [(4, 11), (11, 4), (7, 7), (2, 30), (30, 1)])
def test_linear_resize_matrix_matches_interp(n_in, n_out):
  rng = np.random.default_rng(22)
  x = rng.normal(size=n_in)
  m = resample.linear_resize_matrix(n_out, n_in)
  assert m.shape == (n_out, n_in)
  ref = np.interp(_align_corners(n_in, n_out), np.arange(n_in), x)
  np.testing.assert_allclose(m @ x, ref, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------
# dynamic_resize_matrix (traced number of nodes)

N_MAX = 12
NODE_COUNTS = (2, 3, 4, 6, 7, 8, 10, 11, 12)
# (n_out, how n is traced); 80 outputs from 7 nodes is SynthSeg's velocity grid at 160^3.
DYNAMIC_CASES = [(n, m) for n in (1, 5, 14, 22, 36, 80) for m in ("jit", "vmap")] + [
  (14, "eager"),
  (80, "eager"),
]


@functools.cache
def _dynamic_matrices(mode, n_out):
  """`dynamic_resize_matrix(n_out, N_MAX, n)` for every n in NODE_COUNTS, stacked (cached)."""
  ns = jnp.asarray(NODE_COUNTS, jnp.float32)
  fn = lambda n: resample.dynamic_resize_matrix(n_out, N_MAX, n)
  if mode == "eager":
    with jax.disable_jit():
      return np.stack([np.asarray(fn(n)) for n in ns])
  if mode == "jit":
    return np.stack([np.asarray(jax.jit(fn)(n)) for n in ns])
  return np.asarray(jax.jit(jax.vmap(fn))(ns))


@pytest.mark.parametrize("n_out,mode", DYNAMIC_CASES)
def test_dynamic_resize_matrix_matches_interp_on_first_n_nodes(n_out, mode):
  rng = np.random.default_rng(30)
  mats = _dynamic_matrices(mode, n_out)
  assert mats.shape == (len(NODE_COUNTS), n_out, N_MAX)
  for m, n in zip(mats, NODE_COUNTS):
    x = rng.normal(size=N_MAX)
    ref = np.interp(_align_corners(n, n_out), np.arange(n), x[:n])
    np.testing.assert_allclose(m @ x, ref, rtol=0, atol=1e-5, err_msg=f"n={n}")


@pytest.mark.parametrize("mode", ["eager", "jit", "vmap"])
def test_dynamic_resize_matrix_ignores_nodes_beyond_n(mode):
  # Documented contract: "Columns >= n get weight 0", so whatever sits in the unused tail of
  # the static grid (random normals in `bias_field` / `displacement_field`) cannot leak in.
  rng = np.random.default_rng(31)
  leaks = []
  for n_out in sorted({n for n, _ in DYNAMIC_CASES}):
    for m, n in zip(_dynamic_matrices(mode, n_out), NODE_COUNTS):
      x = rng.normal(size=N_MAX)
      garbage = np.where(np.arange(N_MAX) < n, x, 1e6)
      leak = np.abs(m @ garbage - m @ np.where(np.arange(N_MAX) < n, x, 0.0)).max()
      if np.any(m[:, n:] != 0.0) or leak != 0.0:
        col = n + int(np.argmax(m[:, n:].max(axis=0)))
        leaks.append(
          f"(n_out={n_out}, n={n}): weight {m[:, n:].max():.3g} on column {col}, "
          f"tail=1e6 shifts output by {leak:.3g}"
        )
  assert not leaks, "nodes >= n influence the result:\n" + "\n".join(leaks)


# ---------------------------------------------------------------------------------------
# apply_separable and grid_coords


@pytest.mark.parametrize("channels,mode", [((), "eager"), ((), "jit"), ((2,), "jit")])
def test_apply_separable_matches_einsum(channels, mode):
  rng = np.random.default_rng(40)
  x = rng.normal(size=(8, 9, 10) + channels).astype(np.float32)
  mats = [
    rng.normal(size=(5, 8)).astype(np.float32),
    rng.normal(size=(7, 9)).astype(np.float32),
    rng.normal(size=(6, 10)).astype(np.float32),
  ]
  ref = np.einsum(
    "ia,jb,kc,abc...->ijk...", *[m.astype(np.float64) for m in mats], x.astype(np.float64)
  )
  out = _call(
    lambda x, a, b, c: resample.apply_separable(x, [a, b, c]),
    mode,
    jnp.asarray(x),
    *map(jnp.asarray, mats),
  )
  assert out.shape == (5, 7, 6) + channels
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)


def test_apply_separable_vmap():
  rng = np.random.default_rng(41)
  x = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
  mats = [rng.normal(size=(3, s, s)).astype(np.float32) for s in (4, 5, 6)]
  out = np.asarray(
    jax.jit(jax.vmap(lambda x, a, b, c: resample.apply_separable(x, [a, b, c])))(x, *mats)
  )
  for i in range(3):
    ref = np.einsum("ia,jb,kc,abc->ijk", mats[0][i], mats[1][i], mats[2][i], x[i])
    np.testing.assert_allclose(out[i], ref, rtol=1e-5, atol=1e-4)


def test_grid_coords_matches_indices():
  shape = (3, 5, 4)
  out = np.asarray(resample.grid_coords(shape))
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, np.indices(shape))
