"""End-to-end properties of `synthjax.synthesize`, stage by stage.

Each test switches on only the stage under test (everything else disabled), forces the
parameters it needs through `sample_params(..., fixed=...)`, and compares the output with a
reference computed here in numpy / scipy (closed forms, exact label manipulations, or
statistics with tolerances derived from the sample size). Key cases run eagerly
(`jax.disable_jit`), under the jitted `synthesize`, and under `jax.vmap`.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.stats
from _batches import element
from _configs import ALL_OFF

import synthjax
from synthjax._src import registry
from synthjax._src.stages import geometry

VALUES = (0, 1, 2, 3)
N = 24


def bare_config(values=VALUES, shape=(N, N, N), spacing=(1.0, 1.0, 1.0), **kw):
  """synthseg preset with every stage off, then `kw` applied (stage dicts update fields)."""
  cfg = synthjax.presets.synthseg(values, shape, spacing).replace(**ALL_OFF)
  return cfg.replace(**kw) if kw else cfg


def asym_labels(shape=(N, N, N), values=VALUES, dtype=np.int32):
  """Nested boxes / a sphere with several labels, asymmetric under every flip and rotation."""
  X, Y, Z = shape
  lab = np.full(shape, values[0], dtype)
  x, y, z = np.meshgrid(np.arange(X), np.arange(Y), np.arange(Z), indexing="ij")
  lab[X // 8 : 3 * X // 4, Y // 6 : 5 * Y // 6, Z // 5 : 2 * Z // 3] = values[1]
  sphere = (x - 0.45 * X) ** 2 + (y - 0.4 * Y) ** 2 + (z - 0.35 * Z) ** 2 <= (0.2 * min(shape)) ** 2
  lab[sphere] = values[2]
  lab[X // 2 : 7 * X // 8, Y // 10 : Y // 3, 3 * Z // 4 : Z - 1] = values[3]
  return lab


def index_of(labels, values):
  lut = {v: i for i, v in enumerate(values)}
  return np.vectorize(lut.__getitem__, otypes=[np.int64])(labels)


def np_normalize(x):
  x = np.asarray(x, np.float64)
  return (x - x.min()) / (x.max() - x.min())


def params(cfg, fixed=None, seed=0):
  # Eager: the jitted sampler would compile once per config and `fixed` structure.
  with jax.disable_jit():
    return synthjax.sample_params(jax.random.key(seed), cfg, fixed=fixed)


def render(mode, key, p, labels, cfg):
  """Runs synthesize eagerly, jitted, or under vmap (batch of 2 copies); returns numpy."""
  labels = jnp.asarray(labels)
  if mode == "jit":
    image, seg = synthjax.synthesize(key, p, labels, cfg)
  elif mode == "eager":
    with jax.disable_jit():
      image, seg = synthjax.synthesize(key, p, labels, cfg)
  elif mode == "vmap":
    stack = lambda t: jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), t)
    images, segs = jax.vmap(lambda k, q, l: synthjax.synthesize(k, q, l, cfg))(
      stack(key), stack(p), stack(labels)
    )
    assert images.shape == (2,) + cfg.shape and segs.shape == (2,) + cfg.shape
    np.testing.assert_array_equal(np.asarray(segs[0]), np.asarray(segs[1]))
    np.testing.assert_array_equal(np.asarray(images[0]), np.asarray(images[1]))
    image, seg = images[0], segs[0]
  else:
    raise AssertionError(mode)
  assert image.shape == cfg.shape and seg.shape == cfg.shape
  assert image.dtype == jnp.float32 and seg.dtype == jnp.int32
  return np.asarray(image), np.asarray(seg)


MODES = ("eager", "jit", "vmap")
KEY = jax.random.key(1234)
# A stage that is not applied and the same stage disabled are two programs: XLA may round
# their shared arithmetic differently (fused multiply-adds at another optimisation level),
# by float32 ulps of the [0, 1] image.
OTHER_PROGRAM = 1e-6
IDENT_AFFINE = {"scaling": [1.0, 1.0, 1.0], "shear": [0.0] * 6, "translation": [0.0, 0.0, 0.0]}


def test_asym_labels_is_asymmetric():
  lab = asym_labels()
  assert all(np.count_nonzero(lab == v) > 100 for v in VALUES)
  for axis in range(3):
    assert not np.array_equal(np.flip(lab, axis), lab)
  for axes in ((0, 1), (1, 2), (0, 2)):
    for k in (1, 2, 3):
      assert not np.array_equal(np.rot90(lab, k, axes), lab)


# ---------------------------------------------------------------------------------------
# Identity and label tables


@pytest.mark.parametrize("mode", MODES)
def test_identity_gmm_means(mode):
  cfg = bare_config()
  means = np.array([-20.0, 80.0, 200.0, 350.0])  # below 0 and above the 300 clip
  p = params(cfg, {"gmm": {"means": means, "stds": [0, 0, 0, 0], "background_zero": False}})
  lab = asym_labels()
  image, seg = render(mode, KEY, p, lab, cfg)
  expected = np_normalize(np.clip(means[index_of(lab, VALUES)], 0, 300))
  np.testing.assert_allclose(image, expected, atol=1e-6)
  np.testing.assert_array_equal(seg, lab)


def test_output_labels_mapping():
  out = (0, 1, 0, 7)  # label 2 merged into background, 3 renamed 7
  cfg = bare_config(output_labels=out)
  means = np.array([10.0, 60.0, 120.0, 250.0])
  p = params(cfg, {"gmm": {"means": means, "stds": [0, 0, 0, 0], "background_zero": False}})
  lab = asym_labels()
  image, seg = render("jit", KEY, p, lab, cfg)
  np.testing.assert_array_equal(seg, np.asarray(out)[index_of(lab, VALUES)])
  # Merged labels keep their own generation intensity.
  np.testing.assert_allclose(image, np_normalize(means[index_of(lab, VALUES)]), atol=1e-6)


def test_same_inputs_same_bits_and_key_changes_realisation():
  cfg = bare_config()
  p = params(cfg, {"gmm": {"stds": [10.0, 10.0, 10.0, 10.0], "background_zero": False}})
  lab = asym_labels()
  a, _ = render("jit", KEY, p, lab, cfg)
  b, _ = render("jit", KEY, p, lab, cfg)
  c, _ = render("jit", jax.random.key(99), p, lab, cfg)
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).mean() > 1e-3


# ---------------------------------------------------------------------------------------
# Spatial stage


def rotation_matrix(deg):
  """R = Rz @ Ry @ Rx, angles about axes 0, 1, 2 (geometry.affine_matrix docstring)."""
  a, b, c = np.deg2rad(deg)
  rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
  ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
  rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
  return rz @ ry @ rx


def np_affine_reference(lab, out_shape, mat, translation, spacing, offset, cval=0):
  """Nearest-neighbour resampling with the documented convention: input mm = M @ output mm
  (about the output FOV centre) + translation; the crop offset shifts into the input."""
  centre = (np.asarray(out_shape) - 1) / 2.0
  grid = np.stack(np.meshgrid(*[np.arange(s) for s in out_shape], indexing="ij")).reshape(3, -1)
  sp = np.asarray(spacing)[:, None]
  mm = (grid - centre[:, None]) * sp
  src = (
    (mat @ mm + np.asarray(translation)[:, None]) / sp
    + centre[:, None]
    + np.asarray(offset)[:, None]
  )
  out = ndi.map_coordinates(lab, src, order=0, mode="grid-constant", cval=cval)
  return out.reshape(out_shape)


# np.rot90 call equivalent to a +90 degree rotation about each axis. With input = R @ output:
#   Rx(90): in1 = -o2, in2 = o1  -> out[., i, j] = in[., -j, i]  == np.rot90(k=-1, axes=(1, 2))
#   Ry(90): in0 = o2, in2 = -o0  -> out[i, ., j] = in[j, ., -i]  == np.rot90(k=1, axes=(0, 2))
#   Rz(90): in0 = -o1, in1 = o0  -> out[i, j, .] = in[-j, i, .]  == np.rot90(k=-1, axes=(0, 1))
ROT90 = {0: (-1, (1, 2)), 1: (1, (0, 2)), 2: (-1, (0, 1))}


# Odd sizes only under jit: every case compiles its own program.
@pytest.mark.parametrize("mode,size", [(m, N) for m in MODES] + [("jit", N - 1)])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_rotation_90(axis, mode, size):
  shape = (size,) * 3
  cfg = bare_config(shape=shape, affine={"enabled": True, "prob": 1.0})
  rot = [0.0, 0.0, 0.0]
  rot[axis] = 90.0
  p = params(cfg, {"affine": dict(IDENT_AFFINE, rotation=rot), "gmm": {"stds": [0] * 4}})
  lab = asym_labels(shape)
  k, axes = ROT90[axis]
  expected = np.rot90(lab, k, axes)
  # The np.rot90 call agrees with the documented convention (numpy reference).
  np.testing.assert_array_equal(
    np_affine_reference(lab, shape, rotation_matrix(rot), [0, 0, 0], [1, 1, 1], [0, 0, 0]), expected
  )
  _, seg = render(mode, KEY, p, lab, cfg)
  np.testing.assert_array_equal(seg, expected)
  assert not np.array_equal(seg, lab)


def test_rotation_composition_order():
  """Two non-zero angles: R = Rz @ Ry @ Rx is applied to output coordinates."""
  cfg = bare_config(affine={"enabled": True, "prob": 1.0})
  rot = [90.0, 0.0, 90.0]
  p = params(cfg, {"affine": dict(IDENT_AFFINE, rotation=rot)})
  lab = asym_labels()
  _, seg = render("jit", KEY, p, lab, cfg)
  # out(o) = in(Rz Rx o): first rotate the volume by Rz, then apply Rx to the result.
  kz, az = ROT90[2]
  kx, ax = ROT90[0]
  expected = np.rot90(np.rot90(lab, kz, az), kx, ax)
  np.testing.assert_array_equal(seg, expected)
  # The other composition order gives a different result, so the test discriminates.
  assert not np.array_equal(np.rot90(np.rot90(lab, kx, ax), kz, az), expected)


def test_affine_matches_scipy_reference_with_crop_and_anisotropic_spacing():
  spacing = (1.0, 1.5, 2.0)
  out_shape = (24, 20, 16)
  cfg = bare_config(shape=out_shape, spacing=spacing, affine={"enabled": True, "prob": 1.0})
  in_shape = (30, 26, 21)
  lab = asym_labels(in_shape)
  aff = {
    "rotation": [20.0, -10.0, 35.0],
    "scaling": [1.1, 0.9, 1.05],
    "shear": [0.01, -0.012, 0.0, 0.005, -0.008, 0.011],
    "translation": [2.0, -3.0, 1.5],
  }
  pos = np.array([0.3, 0.6, 0.9])
  p = params(cfg, {"affine": aff, "crop": {"position": pos}})
  _, seg = render("jit", KEY, p, lab, cfg)
  sh = np.array(aff["shear"])
  shear = np.array([[1, sh[0], sh[1]], [sh[2], 1, sh[3]], [sh[4], sh[5], 1]])
  mat = rotation_matrix(aff["rotation"]) @ shear @ np.diag(aff["scaling"])
  offset = [
    min(int(np.floor(pos[a] * (in_shape[a] - out_shape[a] + 1))), in_shape[a] - out_shape[a])
    for a in range(3)
  ]
  expected = np_affine_reference(lab, out_shape, mat, aff["translation"], spacing, offset)
  # Float32 vs float64 coordinates may round differently right at voxel boundaries.
  assert np.mean(seg != expected) < 2e-3
  unmoved = lab[
    offset[0] : offset[0] + out_shape[0],
    offset[1] : offset[1] + out_shape[1],
    offset[2] : offset[2] + out_shape[2],
  ]
  assert np.mean(seg != unmoved) > 0.05


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_translation_in_mm_with_anisotropic_spacing(mode):
  spacing = (2.0, 1.0, 0.5)
  cfg = bare_config(spacing=spacing, affine={"enabled": True, "prob": 1.0})
  p = params(cfg, {"affine": dict(IDENT_AFFINE, rotation=[0, 0, 0], translation=[4.0, -3.0, 1.0])})
  lab = asym_labels()
  _, seg = render(mode, KEY, p, lab, cfg)
  shift = (2, -3, 2)  # mm / spacing: out[o] = in[o + shift], background outside.
  expected = np.zeros_like(lab)
  src = tuple(slice(max(s, 0), N + min(s, 0)) for s in shift)
  dst = tuple(slice(max(-s, 0), N - max(s, 0)) for s in shift)
  expected[dst] = lab[src]
  np.testing.assert_array_equal(seg, expected)


def test_affine_not_applied_is_identity():
  cfg = bare_config(affine={"enabled": True, "prob": 1.0})
  p = params(cfg, {"affine": {"applied": False, "rotation": [30.0, 10.0, 5.0]}})
  lab = asym_labels()
  _, seg = render("jit", KEY, p, lab, cfg)
  np.testing.assert_array_equal(seg, lab)


def swap_values(lab, pairs):
  out = lab.copy()
  for a, b in pairs:
    out[lab == a] = b
    out[lab == b] = a
  return out


# vmap on axis 0 only: every axis compiles its own program.
@pytest.mark.parametrize(
  "mode,axis", [(m, a) for m in MODES if m != "vmap" for a in (0, 1, 2)] + [("vmap", 0)]
)
def test_flip_swaps_pairs(axis, mode):
  pairs = ((1, 2),)
  cfg = bare_config(flip_pairs=pairs, flip={"enabled": True, "prob": 0.5, "axis": axis})
  means = np.array([0.0, 50.0, 100.0, 200.0])
  lab = asym_labels()
  gmm = {"means": means, "stds": [0] * 4, "background_zero": False}
  p = params(cfg, {"flip": {"applied": True}, "gmm": gmm})
  image, seg = render(mode, KEY, p, lab, cfg)
  expected = swap_values(np.flip(lab, axis), pairs)
  np.testing.assert_array_equal(seg, expected)
  # Intensities follow the swapped labels (the flip happens before the GMM).
  np.testing.assert_allclose(image, np_normalize(means[index_of(expected, VALUES)]), atol=1e-6)
  assert not np.array_equal(expected, np.flip(lab, axis))

  p = params(cfg, {"flip": {"applied": False}, "gmm": gmm})
  _, seg = render(mode, KEY, p, lab, cfg)
  np.testing.assert_array_equal(seg, lab)


def test_flip_with_output_labels():
  pairs = ((1, 2),)
  out = (0, 5, 6, 0)
  cfg = bare_config(flip_pairs=pairs, output_labels=out, flip={"enabled": True})
  lab = asym_labels()
  p = params(cfg, {"flip": {"applied": True}})
  _, seg = render("jit", KEY, p, lab, cfg)
  expected = swap_values(np.flip(lab, 0), pairs)
  np.testing.assert_array_equal(seg, np.asarray(out)[index_of(expected, VALUES)])


# ---------------------------------------------------------------------------------------
# Crop and pad


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_flip_mirrors_affine_and_crop_output(mode):
  # The mirror acts on the output grid, so with an affine and a crop (no deformation) the
  # flipped sample is exactly the mirror, with swapped pairs, of the unflipped one.
  pairs = ((1, 2),)
  cfg = bare_config(
    shape=(20, 24, 16),
    flip_pairs=pairs,
    flip={"enabled": True, "axis": 1},
    affine={"enabled": True, "prob": 1.0, "rotation": (-20, 20), "translation": (-3, 3)},
  )
  lab = asym_labels()
  base = {"crop": {"position": [0.2, 0.7, 0.4]}, "affine": {"applied": True}}
  p_on = params(cfg, {**base, "flip": {"applied": True}}, seed=3)
  p_off = params(cfg, {**base, "flip": {"applied": False}}, seed=3)
  _, seg_on = render(mode, KEY, p_on, lab, cfg)
  _, seg_off = render(mode, KEY, p_off, lab, cfg)
  np.testing.assert_array_equal(seg_on, swap_values(np.flip(seg_off, 1), pairs))
  assert not np.array_equal(seg_on, seg_off)


def test_flip_with_deformation_mirrors_grid_before_the_field():
  # With a deformation the flipped sample reads the labels at x' = S x + u(x) (S the mirror
  # about the FOV centre): the output of the mirrored, equally likely, field. Checked on the
  # coordinate maps and against scipy's order-0 resampling of the labels.
  pairs = ((1, 2),)
  cfg = bare_config(
    flip_pairs=pairs, flip={"enabled": True}, deformation={"enabled": True, "prob": 1.0}
  )
  lab = asym_labels()
  p_on = params(cfg, {"flip": {"applied": True}}, seed=4)
  p_off = params(cfg, {"flip": {"applied": False}}, seed=4)
  dkey = jax.random.fold_in(KEY, 1)
  c_on = np.asarray(geometry.coordinate_map(dkey, p_on, cfg, lab.shape))
  c_off = np.asarray(geometry.coordinate_map(dkey, p_off, cfg, lab.shape))
  x = np.arange(N, dtype=np.float32)[:, None, None] - (N - 1) / 2
  np.testing.assert_allclose(c_on[0], c_off[0] - 2 * x, atol=1e-4)
  np.testing.assert_array_equal(c_on[1:], c_off[1:])
  key = jax.random.key(99)
  _, seg_on = render("jit", key, p_on, lab, cfg)
  ref = ndi.map_coordinates(
    lab,
    np.asarray(
      geometry.coordinate_map(
        jax.random.fold_in(key, registry.synth_stream("deformation")), p_on, cfg, lab.shape
      ),
      np.float64,
    ),
    order=0,
    mode="grid-constant",
    cval=0,
  )
  assert np.mean(seg_on == swap_values(ref, pairs)) > 0.999  # rounding ties may differ
  assert not np.array_equal(seg_on, swap_values(np.flip(lab, 0), pairs))


OUT = (20, 24, 16)


@pytest.mark.parametrize(
  "mode,position",
  [(m, p) for m in MODES for p in ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))] + [("jit", (0.5, 0.25, 0.9))],
)
def test_crop(position, mode):
  in_shape = (27, 30, 21)
  cfg = bare_config(shape=OUT)
  lab = asym_labels(in_shape)
  p = params(cfg, {"crop": {"position": list(position)}})
  _, seg = render(mode, KEY, p, lab, cfg)
  off = geometry.crop_offset(in_shape, OUT, np.asarray(position))
  room = np.subtract(in_shape, OUT)
  # The two corners; an interior position lies strictly inside the room.
  if position[0] == 0.0:
    np.testing.assert_array_equal(off, [0, 0, 0])
  elif position[0] == 1.0:
    np.testing.assert_array_equal(off, room)
  else:
    np.testing.assert_array_equal(
      off, np.minimum(np.floor(np.asarray(position) * (room + 1)), room)
    )
  expected = lab[off[0] : off[0] + OUT[0], off[1] : off[1] + OUT[1], off[2] : off[2] + OUT[2]]
  np.testing.assert_array_equal(seg, expected)


def test_crop_position_covers_every_offset():
  in_shape, out_shape = (30, 24, 24), (24, 24, 24)
  pos = np.linspace(0.0, 1.0, 701)
  offs = [int(geometry.crop_offset(in_shape, out_shape, np.array([q, 0.0, 0.0]))[0]) for q in pos]
  counts = np.bincount(offs)
  assert len(counts) == 7 and counts.min() > 0.8 * counts.mean()  # uniform over 0..room


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_pad_centred_with_background(mode):
  in_shape = (15, 24, 11)  # smaller on axes 0 and 2, equal on axis 1
  values = (0, 1, 2, 9)
  cfg = bare_config(values=values, shape=OUT, background=9)
  lab = asym_labels(in_shape, values=(0, 1, 2, 9))
  p = params(cfg, {"crop": {"position": [0.9, 0.3, 0.1]}})
  image, seg = render(mode, KEY, p, lab, cfg)
  before = [(o - i) - (o - i) // 2 for o, i in zip(OUT, in_shape)]
  after = [(o - i) // 2 for o, i in zip(OUT, in_shape)]
  assert all(abs(b - a) <= 1 for b, a in zip(before, after))
  expected = np.pad(lab, list(zip(before, after)), constant_values=9)
  np.testing.assert_array_equal(seg, expected)
  # The position does not move a padded axis.
  p2 = params(cfg, {"crop": {"position": [0.1, 0.8, 0.7]}})
  _, seg2 = render("jit", KEY, p2, lab, cfg)
  np.testing.assert_array_equal(seg2, expected)


def test_crop_and_pad_mixed():
  in_shape = (26, 18, 16)  # crop axis 0, pad axis 1, same axis 2
  cfg = bare_config(shape=OUT)
  lab = asym_labels(in_shape)
  p = params(cfg, {"crop": {"position": [1.0, 0.5, 0.5]}})
  _, seg = render("jit", KEY, p, lab, cfg)
  expected = np.pad(lab[6:26], [(0, 0), (3, 3), (0, 0)])
  np.testing.assert_array_equal(seg, expected)


# ---------------------------------------------------------------------------------------
# GMM


def quadrant_labels(n=48):
  x, y = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
  lab = (2 * (x >= n // 2) + (y >= n // 2)).astype(np.int32)
  return np.broadcast_to(lab[:, :, None], (n, n, n)).copy()


GMM_N = 48


def gmm_config(**kw):
  return bare_config(
    shape=(GMM_N,) * 3,
    gmm={"mean": (20.0, 220.0), "std": (1.0, 4.0), "prob_background_zero": 0.0},
    **kw,
  )


def test_gmm_statistics():
  n = GMM_N
  cfg = gmm_config()
  rng = np.random.default_rng(0)
  means = rng.uniform(50, 200, 4)
  stds = rng.uniform(5, 20, 4)
  p = params(cfg, {"gmm": {"means": means, "stds": stds, "background_zero": False}})
  lab = quadrant_labels(n)
  image, seg = render("jit", KEY, p, lab, cfg)
  np.testing.assert_array_equal(seg, lab)
  counts = np.array([np.count_nonzero(lab == v) for v in VALUES])
  assert counts.min() >= 5000
  emp_mean = np.array([image[lab == v].mean() for v in VALUES])
  emp_std = np.array([image[lab == v].std(ddof=1) for v in VALUES])
  # image = a * raw + b (min-max normalisation): fit a, b on the means.
  A = np.stack([means, np.ones(4)], 1)
  (a, b), *_ = np.linalg.lstsq(A, emp_mean, rcond=None)
  assert a > 0
  se_mean = a * stds / np.sqrt(counts)
  assert np.all(np.abs(A @ [a, b] - emp_mean) < 6 * se_mean + 1e-6)
  rel_se_std = 1.0 / np.sqrt(2 * (counts - 1))
  np.testing.assert_allclose(emp_std, a * stds, rtol=6 * rel_se_std.max())
  # The affine map is the min-max normalisation: 1/a is the raw range.
  raw_lo = (image.min() - b) / a
  assert abs(raw_lo - (means - 4 * stds).min()) < 2.5 * stds.max()
  # Each label's intensities are Gaussian.
  for i, v in enumerate(VALUES):
    z = (image[lab == v] - emp_mean[i]) / emp_std[i]
    assert scipy.stats.kstest(z, "norm").pvalue > 1e-3


def test_gmm_sampled_params_in_range_and_rendered():
  """Means/stds drawn by sample_params lie in the config ranges and drive the image."""
  n = GMM_N
  cfg = gmm_config()
  p = params(cfg, seed=7)
  means, stds = np.asarray(p["gmm"]["means"]), np.asarray(p["gmm"]["stds"])
  assert np.all((means >= 20) & (means <= 220)) and np.all((stds >= 1) & (stds <= 4))
  assert not bool(p["gmm"]["background_zero"])
  lab = quadrant_labels(n)
  image, _ = render("jit", KEY, p, lab, cfg)
  emp = np.array([image[lab == v].mean() for v in VALUES])
  A = np.stack([means, np.ones(4)], 1)
  (a, b), *_ = np.linalg.lstsq(A, emp, rcond=None)
  assert np.max(np.abs(A @ [a, b] - emp)) < 6 * a * stds.max() / np.sqrt(n**3 / 4)


@pytest.mark.parametrize("values,background", [((0, 1, 2, 3), 0), ((3, 0, 7, 1), 7)])
def test_background_zero(values, background):
  n = GMM_N
  cfg = gmm_config(values=values, background=background)
  means = np.array([100.0, 120.0, 140.0, 160.0])
  stds = np.array([10.0, 10.0, 10.0, 10.0])  # every label stays far above 0
  lab = np.asarray(values)[quadrant_labels(n)]
  p = params(cfg, {"gmm": {"means": means, "stds": stds, "background_zero": True}})
  image, _ = render("jit", KEY, p, lab, cfg)
  bg_vox = image[lab == background]
  assert np.all(bg_vox == 0.0)
  assert np.all(image[lab != background] > 0.0)
  # The others keep their Gaussians (not zeroed).
  assert all(image[lab == v].std() > 0.01 for v in values if v != background)
  # Switch off: background is an ordinary Gaussian label again.
  p = params(cfg, {"gmm": {"means": means, "stds": stds, "background_zero": False}})
  image, _ = render("jit", KEY, p, lab, cfg)
  assert image[lab == background].std() > 0.01


# ---------------------------------------------------------------------------------------
# Gamma, bias, noise


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("g", [-0.7, 0.4])
def test_gamma_closed_form(g, mode):
  cfg = bare_config(gamma={"enabled": True, "prob": 1.0})
  means = np.array([-10.0, 90.0, 180.0, 320.0])
  p = params(
    cfg,
    {"gamma": {"log_gamma": g}, "gmm": {"means": means, "stds": [0] * 4, "background_zero": False}},
  )
  lab = asym_labels()
  image, _ = render(mode, KEY, p, lab, cfg)
  expected = np_normalize(np.clip(means[index_of(lab, VALUES)], 0, 300)) ** np.exp(g)
  np.testing.assert_allclose(image, expected, atol=2e-6)


def test_gamma_on_gaussian_image():
  cfg = bare_config(gamma={"enabled": True, "prob": 1.0})
  gmm = {
    "means": [20.0, 90.0, 180.0, 280.0],
    "stds": [5.0, 10.0, 20.0, 30.0],
    "background_zero": False,
  }  # label 3 reaches past the 300 clip
  lab = asym_labels()
  g = 0.55
  on, _ = render("jit", KEY, params(cfg, {"gamma": {"log_gamma": g}, "gmm": gmm}), lab, cfg)
  off, _ = render(
    "jit", KEY, params(cfg, {"gamma": {"applied": False, "log_gamma": g}, "gmm": gmm}), lab, cfg
  )
  cfg_dis = bare_config()
  dis, _ = render("jit", KEY, params(cfg_dis, {"gmm": gmm}), lab, cfg_dis)
  np.testing.assert_allclose(off, dis, rtol=0, atol=OTHER_PROGRAM)
  np.testing.assert_allclose(on, off ** np.exp(g), atol=2e-6)
  assert np.abs(on - off).max() > 0.05
  assert np.count_nonzero(off == 1.0) > 1  # clipped voxels share the maximum


def bias_labels(n=N):
  """Foreground everywhere (corners included) except a small background block."""
  lab = np.ones((n, n, n), np.int32)
  lab[n // 3 : 2 * n // 3, n // 4 : n // 2, n // 2 : 3 * n // 4] = 2
  lab[n // 2 : n // 2 + 2, n // 2 : n // 2 + 2, n // 4 : n // 4 + 2] = 0
  return lab


BIAS_GMM = {
  "means": [0.0, 80.0, 160.0, 50.0],
  "stds": [0.0, 0.0, 0.0, 0.0],
  "background_zero": True,
}


def bias_config():
  # grid_scale 0.05 on 24 voxels: a 2-node grid per axis, so the log-field is multilinear.
  return bare_config(
    bias={"enabled": True, "prob": 1.0, "std": (0.0, 1.0), "grid_scale": (0.05, 0.05)}
  )


def test_bias_not_applied_equals_disabled():
  lab = asym_labels()
  gmm = {"stds": [5.0, 5.0, 5.0, 5.0], "background_zero": False}
  cfg_on = bias_config()
  cfg_off = bare_config()
  a, _ = render("jit", KEY, params(cfg_on, {"bias": {"applied": False}, "gmm": gmm}), lab, cfg_on)
  b, _ = render("jit", KEY, params(cfg_off, {"gmm": gmm}), lab, cfg_off)
  np.testing.assert_allclose(a, b, rtol=0, atol=OTHER_PROGRAM)
  c, _ = render(
    "jit", KEY, params(cfg_on, {"bias": {"applied": True, "std": 0.5}, "gmm": gmm}), lab, cfg_on
  )
  assert np.abs(c - b).max() > 0.01


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_bias_is_smooth_multiplicative_field(mode):
  cfg = bias_config()
  lab = bias_labels()
  p_on = params(cfg, {"bias": {"applied": True, "std": 0.3}, "gmm": BIAS_GMM})
  p_off = params(cfg, {"bias": {"applied": False}, "gmm": BIAS_GMM})
  on, _ = render(mode, KEY, p_on, lab, cfg)
  off, _ = render(mode, KEY, p_off, lab, cfg)
  fg = lab != 0
  assert np.all(on[~fg] == 0) and np.all(off[~fg] == 0)
  log_ratio = np.log(on[fg] / off[fg])
  x, y, z = [c[fg] / (N - 1.0) for c in np.meshgrid(*[np.arange(N)] * 3, indexing="ij")]
  A = np.stack([np.ones_like(x), x, y, z, x * y, x * z, y * z, x * y * z], 1)
  coef, *_ = np.linalg.lstsq(A, log_ratio, rcond=None)
  assert np.abs(A @ coef - log_ratio).max() < 1e-4
  assert np.std(log_ratio) > 0.05
  # The same field multiplies every label: the ratio does not depend on the label.
  lab_fg = lab[fg]
  resid_by_label = [np.abs(A @ coef - log_ratio)[lab_fg == v].max() for v in (1, 2)]
  assert max(resid_by_label) < 1e-4


def test_bias_strength_statistics():
  """Corner log-field values are the grid nodes ~ N(0, std^2); CV grows with std."""
  cfg = bias_config()
  lab = bias_labels()
  n_keys = 16
  keys = jax.random.split(jax.random.key(5), n_keys)
  corners = np.ix_([0, N - 1], [0, N - 1], [0, N - 1])
  p_off = params(cfg, {"bias": {"applied": False}, "gmm": BIAS_GMM})
  off, _ = render("jit", KEY, p_off, lab, cfg)
  # One vmapped program renders the keys (a batch renders each sample as the single call).
  batch = jax.jit(jax.vmap(lambda k, q: synthjax.synthesize(k, q, lab, cfg)))
  cvs = []
  for s in (0.1, 0.3, 0.6):
    p = synthjax.sample_params(
      keys, cfg, fixed={"bias": {"std": s, "applied": True}, "gmm": BIAS_GMM}
    )
    assert p["bias"]["std"].shape == (n_keys,)
    images = np.asarray(batch(keys, p)[0])
    var = np.mean([np.var(np.log(im[corners] / off[corners]), ddof=1) for im in images])
    dof = 7 * n_keys
    assert abs(var / s**2 - 1) < 4 * np.sqrt(2.0 / dof), (s, var)
    cvs.append(np.mean([im[lab == 1].std() / im[lab == 1].mean() for im in images]))
  assert cvs[0] < cvs[1] < cvs[2]


def noise_config():
  return bare_config(noise={"enabled": True, "prob": 1.0, "std": (0.0, 0.2)})


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("s", [0.03, 0.1])
def test_noise_std(s, mode):
  n = N
  cfg = noise_config()
  lab = (quadrant_labels(n) >= 2).astype(np.int32)  # labels 0 and 1 only
  gmm = {"means": [50.0, 150.0, 0.0, 0.0], "stds": [0.0] * 4, "background_zero": False}
  clean, _ = render(
    mode, KEY, params(cfg, {"noise": {"applied": False, "std": s}, "gmm": gmm}), lab, cfg
  )
  np.testing.assert_array_equal(clean, lab.astype(np.float32))  # noise-free image is {0, 1}
  noisy, _ = render(
    mode, KEY, params(cfg, {"noise": {"applied": True, "std": s}, "gmm": gmm}), lab, cfg
  )
  # noisy = (clean + s * eps - lo) / span; undo the affine with the label means.
  m0, m1 = noisy[lab == 0].mean(), noisy[lab == 1].mean()
  span = 1.0 / (m1 - m0)
  resid = (noisy - m0) * span - clean
  nvox = lab.size
  assert abs(resid.mean()) < 5 * s / np.sqrt(nvox) + 1e-6
  assert abs(resid.std() / s - 1) < 5 / np.sqrt(2 * nvox)
  assert scipy.stats.kstest(resid.ravel() / resid.std(), "norm").pvalue > 1e-3
  # The final min-max is attained by the noisy image.
  assert noisy.min() == 0.0 and noisy.max() == 1.0


def test_noise_not_applied_equals_disabled():
  lab = asym_labels()
  gmm = {"stds": [3.0] * 4, "background_zero": False}
  cfg_on = noise_config()
  cfg_off = bare_config()
  a, _ = render(
    "jit", KEY, params(cfg_on, {"noise": {"applied": False, "std": 0.05}, "gmm": gmm}), lab, cfg_on
  )
  b, _ = render("jit", KEY, params(cfg_off, {"gmm": gmm}), lab, cfg_off)
  np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------
# vmap and eager vs jit on the full preset


def full_config(n=N):
  return synthjax.presets.synthseg(
    VALUES, (n, n, n), flip_pairs=((1, 2),), noise={"prob": 0.5, "std": (0.0, 0.05)}
  )


def test_vmap_matches_single_calls():
  cfg = full_config()
  b = 3
  keys = jax.random.split(jax.random.key(3), b)
  p = synthjax.sample_params(keys, cfg)
  labs = jnp.stack(
    [
      jnp.asarray(asym_labels()),
      jnp.asarray(np.flip(asym_labels(), 1)),
      jnp.asarray(np.roll(asym_labels(), 3, 2)),
    ]
  )
  synth_keys = jax.random.split(jax.random.key(4), b)
  images, segs = jax.vmap(lambda k, q, l: synthjax.synthesize(k, q, l, cfg))(synth_keys, p, labs)
  assert images.shape == (b,) + cfg.shape
  for i in range(b):
    p_i = element(p, i)
    # A batch of keys gives the params of each key on its own (here drawn eagerly).
    with jax.disable_jit():
      p_single = synthjax.sample_params(keys[i], cfg)
    # (eager and compiled draws may differ in the last ulp: XLA fuses lo + u * (hi - lo))
    jax.tree_util.tree_map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), p_i, p_single
    )
    image, seg = synthjax.synthesize(synth_keys[i], p_i, labs[i], cfg)
    np.testing.assert_array_equal(np.asarray(segs[i]), np.asarray(seg))
    np.testing.assert_allclose(np.asarray(images[i]), np.asarray(image), atol=1e-6)
  assert np.abs(np.asarray(images[0]) - np.asarray(images[1])).mean() > 1e-3
  assert not np.array_equal(
    np.asarray(p["affine"]["rotation"][0]), np.asarray(p["affine"]["rotation"][1])
  )


class ContractTest(chex.TestCase):
  """`sample_params` and `synthesize` called directly and inside the caller's jit: the
  same params and images, a vmapped batch equal to its samples, and replay bit for bit."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_sample_and_synthesize_under_the_callers_jit_and_vmap(self):
    # The plumbing under test is the same for every stage: a light config compiles fast.
    n = 12
    cfg = bare_config(
      shape=(n, n, n),
      flip={"enabled": True, "prob": 0.5},
      noise={"enabled": True, "prob": 1.0, "std": (0.02, 0.05)},
    )
    labels = jnp.asarray(asym_labels((n, n, n)))
    keys = jax.random.split(jax.random.key(5), 2)
    sample = self.variant(synthjax.sample_params, static_argnums=1)
    render = self.variant(synthjax.synthesize, static_argnums=3)
    # Against direct calls: the caller's jit may fuse draws differently, by an ulp.
    p = sample(keys[0], cfg)
    direct = synthjax.sample_params(keys[0], cfg)
    chex.assert_trees_all_close(p, direct, rtol=1e-6, atol=1e-6)
    image, seg = render(keys[1], p, labels, cfg)
    chex.assert_shape((image, seg), cfg.shape)
    chex.assert_type((image, seg), (jnp.float32, jnp.int32))
    want_image, want_seg = synthjax.synthesize(keys[1], direct, labels, cfg)
    chex.assert_trees_all_equal(seg, want_seg)
    chex.assert_trees_all_close(image, want_image, atol=1e-6)
    chex.assert_trees_all_equal(render(keys[1], p, labels, cfg), (image, seg))  # replay
    # A batch: each element is its own call.
    batch = self.variant(jax.vmap(lambda k: synthjax.sample_params(k, cfg)))(keys)
    images, segs = self.variant(jax.vmap(lambda k, q: synthjax.synthesize(k, q, labels, cfg)))(
      keys, batch
    )
    for i in range(2):
      p_i = element(batch, i)
      chex.assert_trees_all_close(p_i, sample(keys[i], cfg), rtol=1e-6, atol=1e-6)
      one_image, one_seg = render(keys[i], p_i, labels, cfg)
      chex.assert_trees_all_equal(segs[i], one_seg)
      chex.assert_trees_all_close(images[i], one_image, atol=1e-6)
    assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))


@pytest.mark.parametrize("applied", [True, False])
def test_eager_matches_jit_full_preset(applied):
  cfg = full_config()
  stages = ("affine", "deformation", "flip", "bias", "gamma", "resolution", "noise")
  fixed = {s: {"applied": applied} for s in stages}
  fixed["deformation"]["std"] = 2.0
  p = params(cfg, fixed, seed=11)
  lab = asym_labels()
  img_j, seg_j = render("jit", KEY, p, lab, cfg)
  img_e, seg_e = render("eager", KEY, p, lab, cfg)
  np.testing.assert_array_equal(seg_e, seg_j)
  np.testing.assert_allclose(img_e, img_j, atol=1e-5)
  assert img_j.min() == 0.0 and img_j.max() == 1.0
  if applied:
    assert np.mean(seg_j != lab) > 0.05


# ---------------------------------------------------------------------------------------
# Errors and label dtypes


def test_synthesize_rejects_bad_labels():
  cfg = bare_config()
  p = params(cfg)
  with pytest.raises(ValueError, match="rank-3"):
    synthjax.synthesize(KEY, p, jnp.zeros((N, N), jnp.int32), cfg)
  with pytest.raises(TypeError, match="integer"):
    synthjax.synthesize(KEY, p, jnp.zeros((N, N, N), jnp.float32), cfg)
  with pytest.raises(TypeError):
    synthjax.synthesize(KEY, p, jnp.zeros((N, N, N), jnp.int32), {"shape": (N, N, N)})


def test_validate_labels():
  cfg = bare_config()
  lab = asym_labels()
  bad = lab.copy()
  bad[0, 0, :3] = 17
  bad[1, 1, 1] = 99
  with pytest.raises(ValueError) as err:
    synthjax.validate_labels(bad, cfg, name="seg.nii.gz")
  msg = str(err.value)
  assert "17 (3 voxels)" in msg and "99 (1 voxels)" in msg and "seg.nii.gz" in msg
  frac = lab.astype(np.float32)
  frac[2, 3, 4] = 1.5
  with pytest.raises(ValueError, match="non-integer"):
    synthjax.validate_labels(frac, cfg)
  nan = lab.astype(np.float64)
  nan[0, 0, 0] = np.nan
  with pytest.raises(ValueError, match="non-integer"):
    synthjax.validate_labels(nan, cfg)
  with pytest.raises(ValueError, match="rank 3"):
    synthjax.validate_labels(lab[0], cfg)
  out = synthjax.validate_labels(lab.astype(np.float32), cfg)
  assert out.dtype == np.int32 and out.shape == lab.shape
  np.testing.assert_array_equal(out, lab)
  out = synthjax.validate_labels(lab.astype(np.uint8), cfg)
  assert out.dtype == np.int32
  np.testing.assert_array_equal(out, lab)


def test_sample_params_rejects_bad_fixed():
  cfg = bare_config()
  with pytest.raises(ValueError, match="blur"):
    synthjax.sample_params(KEY, cfg, fixed={"blur": {}})
  with pytest.raises(ValueError, match="angle"):
    synthjax.sample_params(KEY, cfg, fixed={"affine": {"angle": [0, 0, 0]}})
  with pytest.raises(ValueError, match="rotation"):
    synthjax.sample_params(KEY, cfg, fixed={"affine": {"rotation": [0, 0]}})


def _dtype_config():
  return bare_config(
    flip_pairs=((1, 2),),
    flip={"enabled": True},
    affine={"enabled": True, "prob": 1.0},
    shape=(20, 24, 22),
  )


def _dtype_params(cfg):
  return params(
    cfg,
    {
      "flip": {"applied": True},
      "crop": {"position": [0.2, 0.5, 0.8]},
      "affine": {"rotation": [10.0, -5.0, 20.0]},
    },
  )


@pytest.mark.parametrize("dtype", [np.uint8, np.int16])
def test_label_dtypes_agree(dtype):
  cfg = _dtype_config()
  p = _dtype_params(cfg)
  lab = asym_labels((26, 21, 22))
  ref_img, ref_seg = render("jit", KEY, p, lab.astype(np.int32), cfg)
  img, seg = render("jit", KEY, p, lab.astype(dtype), cfg)
  np.testing.assert_array_equal(seg, ref_seg)
  np.testing.assert_array_equal(img, ref_img)
  assert np.mean(ref_seg == 0) < 0.9


def test_label_dtype_int64_with_x64():
  cfg = _dtype_config()
  p = _dtype_params(cfg)
  lab = asym_labels((26, 21, 22))
  ref_img, ref_seg = render("jit", KEY, p, lab.astype(np.int32), cfg)
  with jax.enable_x64(True):
    lab64 = jnp.asarray(lab.astype(np.int64))
    assert lab64.dtype == jnp.int64
    img, seg = synthjax.synthesize(KEY, p, lab64, cfg)
    img, seg = np.asarray(img), np.asarray(seg)
  np.testing.assert_array_equal(seg, ref_seg)
  np.testing.assert_allclose(img, ref_img, atol=1e-6)


def test_bool_labels():
  cfg = bare_config(values=(0, 1))
  lab = asym_labels() > 0
  gmm = {"means": [10.0, 110.0], "stds": [0.0, 0.0], "background_zero": False}
  image, seg = render("jit", KEY, params(cfg, {"gmm": gmm}), lab, cfg)
  np.testing.assert_array_equal(seg, lab.astype(np.int32))
  np.testing.assert_allclose(image, lab.astype(np.float32), atol=1e-6)


FS_VALUES = (0, 2, 3, 41, 42, 1035, 2035)


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_freesurfer_values(mode):
  cfg = bare_config(values=FS_VALUES, flip={"enabled": True})
  assert set(cfg.flip_pairs) == {(2, 41), (3, 42), (1035, 2035)}
  lab = np.zeros((N, N, N), np.int16)
  lab[2:10, 2:20, 3:21] = 2
  lab[14:22, 2:20, 3:21] = 41
  lab[4:8, 5:12, 6:14] = 3
  lab[16:20, 9:16, 6:14] = 42
  lab[3:9, 14:19, 15:20] = 1035
  lab[15:21, 14:19, 4:9] = 2035
  means = np.linspace(0.0, 240.0, len(FS_VALUES))
  gmm = {"means": means, "stds": [0.0] * len(FS_VALUES), "background_zero": False}
  image, seg = render(mode, KEY, params(cfg, {"gmm": gmm, "flip": {"applied": False}}), lab, cfg)
  np.testing.assert_array_equal(seg, lab)
  np.testing.assert_allclose(image, np_normalize(means[index_of(lab, FS_VALUES)]), atol=1e-6)
  _, seg = render(mode, KEY, params(cfg, {"gmm": gmm, "flip": {"applied": True}}), lab, cfg)
  expected = swap_values(np.flip(lab, 0), cfg.flip_pairs)
  np.testing.assert_array_equal(seg, expected)
  assert not np.array_equal(expected, np.flip(lab, 0))


def test_large_label_values_sorted_lookup():
  values = (7, 0, 70_000, 2_000_000_000)  # above the dense lookup-table limit
  cfg = bare_config(values=values, background=70_000)
  lab = asym_labels(values=values)
  lab[0, 0, :4] = 123_456  # unknown values render as background
  lab[1, 0, :4] = -1
  lab[2, 0, :4] = 5
  means = np.array([10.0, 40.0, 90.0, 200.0])
  gmm = {"means": means, "stds": [0.0] * 4, "background_zero": False}
  image, seg = render("jit", KEY, params(cfg, {"gmm": gmm}), lab, cfg)
  expected = np.where(np.isin(lab, values), lab, 70_000)
  np.testing.assert_array_equal(seg, expected)
  np.testing.assert_allclose(image, np_normalize(means[index_of(expected, values)]), atol=1e-6)


def test_unknown_values_render_as_background():
  """Documented: values unknown to the config (negative ones too) render as background."""
  values = (0, 1, 2, 9)
  cfg = bare_config(values=values, background=9, shape=(8, 8, 8))
  lab = np.full((8, 8, 8), 1, np.int32)
  lab[0] = -1
  lab[1] = 5
  lab[2] = 200_000
  lab[3] = 0
  _, seg = render("jit", KEY, params(cfg), lab, cfg)
  expected = np.where(np.isin(lab, values), lab, 9)
  np.testing.assert_array_equal(seg, expected)


def test_int64_values_beyond_int32_render_as_background():
  cfg = bare_config(values=(0, 1, 2), background=1, shape=(8, 8, 8))
  lab = np.full((8, 8, 8), 2, np.int64)
  lab[0] = 2**32  # wraps to 0 if cast to int32
  lab[1] = 2**32 + 2  # wraps to 2
  lab[2] = 0
  p = params(cfg)
  with jax.enable_x64(True):
    _, seg = synthjax.synthesize(KEY, p, jnp.asarray(lab), cfg)
    seg = np.asarray(seg)
  np.testing.assert_array_equal(seg, np.where(np.isin(lab, (0, 1, 2)), lab, 1))


def test_uint8_labels_pad_with_background_above_255():
  cfg = bare_config(values=(0, 44, 300), background=300, shape=(8, 8, 8))
  lab = np.full((6, 6, 6), 44, np.uint8)
  _, seg = render("jit", KEY, params(cfg), lab, cfg)
  np.testing.assert_array_equal(seg, np.pad(lab.astype(np.int32), 1, constant_values=300))
