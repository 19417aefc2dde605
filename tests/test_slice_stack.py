"""Slice-stack acquisition with inter-slice motion (FetalSynthGen's `SimulateMotion`), pure
JAX.

The reconstruction is compared with numpy/scipy references written here: the slice profile
is `scipy.ndimage.gaussian_filter1d` along the slice axis (FWHM = thickness), the slices are
read by linear interpolation at their centres and the volume is rebuilt by linear
interpolation between slice centres (`np.interp` along the axis); motion is checked with
closed forms (integer translations move whole slices, 90/180 degree in-plane rotations
permute them).
"""

import functools
import math

import _maps as maps
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from _batches import element

from synthjax._src.stages import slice_stack
from synthjax._src.stages.slice_stack import SliceStackConfig

SHAPE = (32, 30, 28)  # distinct sizes, so an axis mix-up cannot pass
ISO = (1.0, 1.0, 1.0)
ANISO = (1.0, 1.5, 2.0)
SIGMA_PER_FWHM = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def smooth_image(seed=0, shape=SHAPE):
  """A [0, 1] image with edges, smooth content and some texture."""
  return maps.smooth_image(shape, seed, noise=0.1)


# One config for every apply call (apply depends on the config only through the slot axes,
# the number of slice slots and the largest blur radius), so each spacing compiles once.
CFG = SliceStackConfig(thickness=(1.0, 3.5), gap=(0.0, 2.0), prob=0.5, enabled=True)
_CACHE = {}


def apply(x, p, cfg=CFG, spacing=ISO):
  """jit of apply_slice_stack, one compilation per (cfg, spacing)."""
  spacing = tuple(spacing)
  if (cfg, spacing) not in _CACHE:
    _CACHE[cfg, spacing] = jax.jit(lambda x, p: slice_stack.apply_slice_stack(x, p, cfg, spacing))
  return np.asarray(_CACHE[cfg, spacing](jnp.asarray(x), p))


sample_jit = jax.jit(slice_stack.sample_slice_stack, static_argnums=(1, 2, 3))


def make_params(
  shape=SHAPE,
  spacing=ISO,
  cfg=CFG,
  active=(True, False, False),
  thickness=1.0,
  gap=0.0,
  offset=0.0,
  rotation=0.0,
  translation=0.0,
  applied=True,
):
  """Params written directly (no sampling): motion (S, K, 3) broadcast from what is given."""
  s, k = len(slice_stack.slot_axes(cfg)), slice_stack.max_slices(cfg, shape, spacing)
  vec = lambda v: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (s,))
  motion = lambda v: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (s, k, 3))
  return {
    "applied": jnp.asarray(applied),
    "num_stacks": jnp.int32(sum(active)),
    "active": jnp.asarray(active, bool),
    "thickness": vec(thickness),
    "gap": vec(gap),
    "offset": vec(offset),
    "interleave": jnp.full((s,), 2, jnp.int32),
    "rotation_std": vec(0.0),
    "translation_std": vec(0.0),
    "rotation": motion(rotation),
    "translation": motion(translation),
  }


def one_hot(i, n=3):
  return tuple(bool(v) for v in np.arange(n) == i)


# numpy references (float64)


def np_slice_blur(x, axis, thickness, spacing):
  sigma = SIGMA_PER_FWHM * thickness / spacing[axis]
  return scipy.ndimage.gaussian_filter1d(
    x.astype(np.float64), sigma, axis=axis, mode="reflect", truncate=4.0
  )


def np_stack(x, axis, thickness, gap, offset, spacing):
  """One motion-free stack: blur, read the slices at their centres, interpolate back."""
  n, s = x.shape[axis], spacing[axis]
  d = float(thickness) + float(gap)
  z = []
  k = 0
  while (offset + k) * d <= (n - 1) * s + 1e-6:
    z.append((offset + k) * d)
    k += 1
  if not z:
    z = [offset * d]
  z = np.asarray(z)
  grid = np.arange(n, dtype=np.float64)
  eye = np.eye(n)
  read = np.stack([np.interp(z / s, grid, eye[i]) for i in range(n)], 1)  # (N, n)
  back = np.stack([np.interp(grid * s, z, np.eye(len(z))[j]) for j in range(len(z))], 1)
  op = back @ read  # (n, n)
  b = np_slice_blur(x, axis, thickness, spacing)
  return np.moveaxis(np.tensordot(op, b, axes=([1], [axis])), 0, axis)


def np_interleave(num, m):
  """SVoRT's interleave_index: time index of each spatial slice."""
  idx = [None] * num
  t = 0
  for i in range(m):
    for j in range(i, num, m):
      idx[j] = t
      t += 1
  return idx


# ---------------------------------------------------------------------------------------
# Motion-free acquisitions against the scipy / numpy references


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_thin_contiguous_slices_are_just_the_slice_profile(axis):
  # Thickness = voxel spacing, no gap, no offset, no motion: every voxel plane is a slice.
  x = smooth_image(axis)
  p = make_params(spacing=ANISO, active=one_hot(axis), thickness=ANISO[axis])
  out = apply(x, p, spacing=ANISO)
  np.testing.assert_allclose(out, np_slice_blur(x, axis, ANISO[axis], ANISO), atol=2e-6)


def test_motion_free_stacks_average_per_axis_references():
  x = smooth_image(3)
  thick, gap, off = [2.3, 1.7, 3.4], [0.9, 0.0, 1.6], [0.37, 0.0, 0.81]
  for active in ([True, True, True], [True, False, True], [False, True, False]):
    p = make_params(spacing=ANISO, active=active, thickness=thick, gap=gap, offset=off)
    out = apply(x, p, spacing=ANISO)
    refs = [np_stack(x, a, thick[a], gap[a], off[a], ANISO) for a in range(3) if active[a]]
    np.testing.assert_allclose(out, np.mean(refs, 0), atol=1e-5)


def test_gap_larger_than_the_volume_gives_one_slice():
  x = smooth_image(4)
  p = make_params(gap=40.0, offset=0.5)  # the only centre on axis 0 is at 20.5 mm
  out = apply(x, p)
  np.testing.assert_allclose(out, np_stack(x, 0, 1.0, 40.0, 0.5, ISO), atol=1e-5)
  assert np.allclose(out, out[:1])  # one slice, extended along the axis


# ---------------------------------------------------------------------------------------
# Motion: closed forms (thin contiguous slices along axis 2: slice k is voxel plane k)


def test_integer_translations_shift_exactly_their_slices():
  x = smooth_image(5)
  k = slice_stack.max_slices(CFG, SHAPE, ISO)
  trans = np.zeros((3, k, 3), np.float32)
  trans[2, 3] = (0.0, 2.0, 0.0)  # in-plane, 2 voxels along axis 1
  trans[2, 7] = (-3.0, 0.0, 0.0)  # in-plane, -3 voxels along axis 0
  trans[2, 10] = (0.0, 0.0, 1.0)  # through-plane: reads the next plane
  out = apply(x, make_params(active=one_hot(2), translation=trans))
  ref = np_slice_blur(x, 2, 1.0, ISO)
  want = ref.copy()
  nx, ny = SHAPE[:2]
  want[:, :, 3] = ref[:, np.minimum(np.arange(ny) + 2, ny - 1), 3]
  want[:, :, 7] = ref[np.maximum(np.arange(nx) - 3, 0), :, 7]
  want[:, :, 10] = ref[:, :, 11]
  np.testing.assert_allclose(out, want, atol=2e-6)
  moved = np.abs(out - ref).max(axis=(0, 1)) > 1e-4
  assert set(np.flatnonzero(moved)) == {3, 7, 10}


def test_in_plane_rotations_about_the_centre_permute_the_slice():
  x = smooth_image(6)
  k = slice_stack.max_slices(CFG, SHAPE, ISO)
  rot = np.zeros((3, k, 3), np.float32)
  rot[2, 5] = (0.0, 0.0, 90.0)
  rot[2, 9] = (0.0, 0.0, 180.0)
  out = apply(x, make_params(active=one_hot(2), rotation=rot))
  ref = np_slice_blur(x, 2, 1.0, ISO)
  want = ref.copy()
  nx, ny = SHAPE[:2]
  c0, c1 = (nx - 1) / 2, (ny - 1) / 2
  # R = Rz(90) maps (u, v) about the centre to (-v, u): voxel (i, j) reads
  # (c0 - (j - c1), c1 + (i - c0)), integers here as nx - ny is even; clamped at the edges.
  i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
  src_i = np.clip(np.rint(c0 - (j - c1)).astype(int), 0, nx - 1)
  src_j = np.clip(np.rint(c1 + (i - c0)).astype(int), 0, ny - 1)
  want[:, :, 5] = ref[src_i, src_j, 5]
  want[:, :, 9] = ref[::-1, ::-1, 9]
  np.testing.assert_allclose(out, want, atol=1e-5)
  moved = np.abs(out - ref).max(axis=(0, 1)) > 1e-4
  assert set(np.flatnonzero(moved)) == {5, 9}


# ---------------------------------------------------------------------------------------
# Stacks, masking, applied


def test_absent_stacks_are_masked_and_none_present_is_identity():
  x = smooth_image(8)
  rng = np.random.default_rng(0)
  k = slice_stack.max_slices(CFG, SHAPE, ISO)
  keep = dict(
    thickness=[2.0, 2.5, 3.0],
    gap=[0.5, 1.0, 0.0],
    offset=[0.1, 0.5, 0.9],
    rotation=rng.normal(0, 2, (3, k, 3)),
    translation=rng.normal(0, 1, (3, k, 3)),
  )
  single = [apply(x, make_params(active=one_hot(i), **keep)) for i in range(3)]
  assert all(np.abs(a - x).max() > 0.05 for a in single)
  two = apply(x, make_params(active=(True, False, True), **keep))
  np.testing.assert_allclose(two, (single[0] + single[2]) / 2, atol=1e-6)
  three = apply(x, make_params(active=(True, True, True), **keep))
  np.testing.assert_allclose(three, sum(single) / 3, atol=1e-6)
  np.testing.assert_array_equal(apply(x, make_params(active=(False,) * 3, **keep)), x)


def test_blocks_of_planes_give_the_same_image(monkeypatch):
  # 6720 voxels per block: 8 planes along axis 0 (4 blocks), 7 along axis 1 (5 blocks, the
  # last one padded), 7 along axis 2 (4 blocks).
  x = smooth_image(10)
  rng = np.random.default_rng(1)
  k = slice_stack.max_slices(CFG, SHAPE, ISO)
  p = make_params(
    active=(True, True, True),
    thickness=[2.0, 2.5, 3.0],
    gap=[0.5, 1.0, 0.0],
    offset=[0.1, 0.5, 0.9],
    rotation=rng.normal(0, 2, (3, k, 3)),
    translation=rng.normal(0, 1, (3, k, 3)),
  )
  whole = apply(x, p)
  monkeypatch.setattr(slice_stack, "BLOCK_VOXELS", 6720)
  blocked = jax.jit(lambda x, p: slice_stack.apply_slice_stack(x, p, CFG, ISO))(x, p)
  np.testing.assert_allclose(np.asarray(blocked), whole, atol=1e-6)


# One batch of sampled params (one compilation) for the statistics below: up to 6 stacks,
# each stack's slice geometry and motion level fixed.
CFG6 = SliceStackConfig(
  num_stacks=(1, 6), thickness=(1.0, 3.5), gap=(0.0, 2.0), prob=0.5, enabled=True
)
WALK = {"thickness": 2.0, "gap": 1.0, "offset": 0.25, "rotation_std": 2.0, "translation_std": 0.5}


@functools.cache
def batch6():
  keys = jax.random.split(jax.random.key(0), 300)
  p = jax.jit(jax.vmap(lambda k: slice_stack.sample_slice_stack(k, CFG6, SHAPE, ISO, WALK)))(keys)
  return jax.tree_util.tree_map(np.asarray, p)


def test_stack_count_and_orthogonal_orientations():
  p = batch6()
  active, num = p["active"], p["num_stacks"]
  assert (active.sum(1) == num).all()
  assert set(num) == set(range(1, 7))
  axes = np.asarray(slice_stack.slot_axes(CFG6))
  for row in active:
    counts = np.bincount(axes[row], minlength=3)
    assert counts.max() - counts.min() <= 1  # each orientation once before repeats
  first = np.bincount(axes[np.argmax(active[num == 1], axis=1)], minlength=3)
  assert (first >= 5).all()  # any orientation can be the lone stack
  assert 0.4 < p["applied"].mean() < 0.6
  # Fewer stacks than orientations: still one slot per orientation.
  assert slice_stack.slot_axes(SliceStackConfig(num_stacks=(1, 1))) == (0, 1, 2)
  assert slice_stack.slot_axes(SliceStackConfig(num_stacks=(1, 4), axes=(2, 1))) == (2, 1, 2, 1)


# ---------------------------------------------------------------------------------------
# Motion sampling


_order = jax.jit(lambda n, m: slice_stack.acquisition_order(n, m, 14))


@pytest.mark.parametrize("num", [1, 2, 5, 7, 12])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_acquisition_order_is_svort_interleaving(num, m):
  got = np.asarray(_order(jnp.int32(num), jnp.int32(m)))[:num]
  assert got.tolist() == np_interleave(num, m)


def num_slices(n, spacing, d, offset):
  return int(math.floor(((n - 1) * spacing - offset * d) / d + 1e-6)) + 1


def test_motion_is_a_centred_random_walk_in_acquisition_time():
  p = batch6()
  for slot, n_axis in enumerate(SHAPE):
    n = num_slices(n_axis, 1.0, 3.0, 0.25)
    rot = p["rotation"][:, slot]  # (B, K, 3)
    trans = p["translation"][:, slot]
    assert np.all(rot[:, n:] == 0) and np.all(trans[:, n:] == 0)
    np.testing.assert_allclose(rot[:, :n].mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(trans[:, :n].mean(1), 0, atol=1e-4)
    steps_r, steps_t = [], []
    for b in range(len(rot)):
      m = int(p["interleave"][b, slot])
      assert 2 <= m <= max(2, math.isqrt(n))
      order = np.argsort(np_interleave(n, m))  # spatial index of each time
      steps_r.append(np.diff(rot[b, order], axis=0))
      steps_t.append(np.diff(trans[b, order], axis=0))
    assert abs(np.std(steps_r) / 2.0 - 1) < 0.05  # step std = rotation_std
    assert abs(np.std(steps_t) / 0.5 - 1) < 0.05
    # Neighbours in space are acquired far apart in time: larger than one step.
    assert np.std(np.diff(rot[:, :n], axis=1)) > 1.5 * 2.0


def test_fixed_values_are_kept_and_used_others_vary():
  p = batch6()
  for name, value in WALK.items():
    assert np.all(p[name] == np.float32(value)), name
  for name in ("num_stacks", "active", "interleave", "rotation", "translation", "applied"):
    assert len(np.unique(p[name], axis=0)) > 1, name
  # The fixed geometry sets how many slices move (checked per slot in the walk test) and
  # the fixed stds their steps; a fixed motion array replaces the walk entirely.
  with pytest.raises(ValueError, match="rotation"):
    sample_jit(jax.random.key(0), CFG, SHAPE, ISO, {"rotation": jnp.zeros((2, 2))})


def test_params_for_another_shape_are_refused():
  with pytest.raises(ValueError, match="slice_stack params"):
    slice_stack.apply_slice_stack(jnp.zeros(SHAPE), make_params(shape=(16, 16, 16)), CFG, ISO)


# ---------------------------------------------------------------------------------------
# jit / vmap, sampled params


def test_vmap_equals_single_calls_and_eager_equals_jit():
  keys = jax.random.split(jax.random.key(0), 300)[:3]  # the first rows of batch6
  batch = jax.tree_util.tree_map(lambda v: v[:3], batch6())
  for i, k in enumerate(keys):
    single = sample_jit(k, CFG6, SHAPE, ISO, WALK)
    for name, v in single.items():
      np.testing.assert_allclose(batch[name][i], np.asarray(v), rtol=1e-6, atol=1e-6, err_msg=name)
  # CFG's three slots are CFG6's first three (same axes and slice slots).
  assert slice_stack.slot_axes(CFG) == slice_stack.slot_axes(CFG6)[:3]
  batch = {n: (jnp.asarray(v[:, :3]) if v.ndim > 1 else jnp.asarray(v)) for n, v in batch.items()}
  x = jnp.stack([jnp.asarray(smooth_image(i)) for i in range(3)])
  run = jax.jit(jax.vmap(lambda x, p: slice_stack.apply_slice_stack(x, p, CFG, ISO)))
  out = np.asarray(run(x, batch))
  assert out.shape == (3,) + SHAPE and out.dtype == np.float32 and np.isfinite(out).all()
  for i in range(3):
    p = element(batch, i)
    np.testing.assert_allclose(out[i], apply(x[i], p), atol=1e-5)
  assert np.abs(out[0] - np.asarray(x[0])).max() > 0.05
  # Motion moves the image away from the motion-free acquisition of the same stacks.
  p0 = jax.tree_util.tree_map(lambda v: v[0], batch)
  calm = apply(
    x[0],
    dict(
      p0, rotation=jnp.zeros_like(p0["rotation"]), translation=jnp.zeros_like(p0["translation"])
    ),
  )
  assert np.abs(out[0] - calm).max() > 0.02
  assert abs(out[0].mean() - calm.mean()) < 0.02
  # Eager (no jit) gives the same image.
  eager = slice_stack.apply_slice_stack(x[0], p0, CFG, ISO)
  np.testing.assert_allclose(np.asarray(eager), out[0], atol=1e-5)


# ---------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"num_stacks": (0, 2)}, "num_stacks"),
    ({"num_stacks": (3, 2)}, "num_stacks"),
    ({"num_stacks": (1.5, 2)}, "num_stacks"),
    ({"axes": (0, 0)}, "axes"),
    ({"axes": (3,)}, "axes"),
    ({"axes": ()}, "axes"),
    ({"thickness": (0.0, 1.0)}, "thickness"),
    ({"thickness": (2.0, 1.0)}, "thickness"),
    ({"thickness": (1.0, 2.0), "gap": (-1.0, 0.0)}, "gap"),
    ({"gap": (1.0, float("nan"))}, "gap"),
    ({"rotation_std": (-1.0, 1.0)}, "rotation_std"),
    ({"translation_std": (0.0, -1.0)}, "translation_std"),
    ({"prob": 1.5}, "prob"),
  ],
)
def test_config_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    SliceStackConfig(**kwargs)


def test_config_is_hashable_and_normalised():
  a = SliceStackConfig(num_stacks=[2, 5], axes=[2, 0], thickness=[1, 2])
  assert a.num_stacks == (2, 5) and a.axes == (2, 0) and a.thickness == (1.0, 2.0)
  assert hash(a) == hash(SliceStackConfig(num_stacks=(2, 5), axes=(2, 0), thickness=(1, 2)))
  assert slice_stack.slot_axes(a) == (2, 0, 2, 0, 2, 0)
  assert not SliceStackConfig().enabled and SliceStackConfig().prob == 0.0
  # Overlapping slices (negative gap) are allowed while centres stay apart.
  assert SliceStackConfig(thickness=(2.0, 3.0), gap=(-1.0, 0.0)).gap == (-1.0, 0.0)
