"""Numerical tests of the random fields and spatial maps against scipy/numpy references.

References:
  * `scipy.ndimage.map_coordinates` (order 1) at align-corners positions over the first `n`
    nodes of the small grid (`n = draw.grid_size(...)`) for `bias.bias_field` and for
    the velocity upsampling of `geometry.displacement_field`;
  * an independent numpy/scipy scaling-and-squaring of the same velocity, and a 4th-order
    Runge-Kutta integration of the stationary velocity ODE, for `displacement_field`;
  * at the extremes of the SynthSeg and fetal preset ranges (64^3, params from
    `synthjax.sample_params(..., fixed=...)`, maps from `geometry.coordinate_map`): the RK4
    flow above, inverse consistency of the flows of `v` and `-v`, an explicit numpy
    composition (deformation, affine in mm about the centre, crop offset) and `np.gradient`
    Jacobian determinants (no folding);
  * `scipy.spatial.transform.Rotation` (extrinsic x-y-z Euler angles, i.e. Rz @ Ry @ Rx)
    for `geometry.affine_matrix`;
  * uniform / centring arithmetic for `geometry.crop_offset`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _batches import element
from scipy import ndimage, stats
from scipy.spatial.transform import Rotation

import synthjax
from synthjax._src.config import BiasConfig, DeformationConfig
from synthjax._src.ops import draw
from synthjax._src.stages import bias, geometry

# ---------------------------------------------------------------------------------------
# Reference helpers


def _align_corners_grid(in_shape, out_shape):
  axes = [np.arange(o) * (i - 1) / max(o - 1, 1) for i, o in zip(in_shape, out_shape)]
  return np.stack(np.meshgrid(*axes, indexing="ij"))


def _upsample(a, n_nodes, out_shape):
  """Align-corners trilinear upsampling of `a[:n0, :n1, :n2, ...]` to `out_shape` (scipy)."""
  a = np.asarray(a, np.float64)[: n_nodes[0], : n_nodes[1], : n_nodes[2]]
  grid = _align_corners_grid(a.shape[:3], out_shape)
  if a.ndim == 3:
    return ndimage.map_coordinates(a, grid, order=1, mode="nearest")
  return np.stack([_upsample(a[..., c], a.shape[:3], out_shape) for c in range(a.shape[3])], -1)


def _interp_field(field, pts):
  """Samples a `(X, Y, Z, 3)` field at `(3, ...)` points, edge-extended (scipy)."""
  return np.stack(
    [ndimage.map_coordinates(field[..., c], pts, order=1, mode="nearest") for c in range(3)],
    axis=-1,
  )


def _displacement_last(*args):
  """`geometry.displacement_field` (channel-first) as a channel-last `(X, Y, Z, 3)` field."""
  return jnp.moveaxis(geometry.displacement_field(*args), 0, -1)


def _grid(shape):
  return np.indices(shape, dtype=np.float64)


def _half_velocity(key, std, grid_scale, cfg, shape):
  """The velocity of `displacement_field` at half resolution, in half-grid voxels.

  Returns `(v_half, half_shape, ratio)` where `ratio` converts output voxels to half-grid
  voxels per axis.
  """
  g_max = tuple(draw.max_grid_size(cfg.grid_scale[1], s) for s in shape)
  half = tuple(max(s // 2, g) for s, g in zip(shape, g_max))
  ratio = np.array([(h - 1) / (s - 1) for h, s in zip(half, shape)])
  n = [int(draw.grid_size(jnp.float32(grid_scale), s, g)) for s, g in zip(shape, g_max)]
  # The library draws the velocity channel-first; the references work channel-last.
  small = np.moveaxis(np.asarray(jax.random.normal(key, (3,) + g_max, jnp.float32)), 0, -1)
  small = small * np.float32(std)
  return _upsample(small, n, half) * ratio, half, ratio


def _scaling_and_squaring(v_half, steps):
  grid = _grid(v_half.shape[:3])
  u = v_half / 2.0**steps
  for _ in range(steps):
    u = u + _interp_field(u, grid + np.moveaxis(u, -1, 0))
  return u


def _rk4_flow(v_half, num_steps=8):
  """Displacement of the time-1 flow of the stationary velocity `v_half` (edge-extended)."""
  grid = _grid(v_half.shape[:3])
  f = lambda x: np.moveaxis(_interp_field(v_half, x), -1, 0)
  x, h = grid.copy(), 1.0 / num_steps
  for _ in range(num_steps):
    k1 = f(x)
    k2 = f(x + h / 2 * k1)
    k3 = f(x + h / 2 * k2)
    k4 = f(x + h * k3)
    x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
  return np.moveaxis(x - grid, 0, -1)


def _jacobian_det(coords):
  """Determinant of the finite-difference Jacobian of a `(3, X, Y, Z)` coordinate map."""
  jac = np.stack([np.stack(np.gradient(np.asarray(coords, np.float64)[i]), 0) for i in range(3)])
  return np.linalg.det(np.moveaxis(jac, (0, 1), (-2, -1)))


def _shear_matrix(sh):
  return np.array([[1, sh[0], sh[1]], [sh[2], 1, sh[3]], [sh[4], sh[5], 1]], np.float64)


def _affine_reference(rotation, scaling, shear):
  rot = Rotation.from_euler("xyz", rotation, degrees=True).as_matrix()  # Rz @ Ry @ Rx
  return rot @ _shear_matrix(shear) @ np.diag(scaling)


def _crop_offset_reference(in_shape, out_shape, position):
  out = []
  for i, o, p in zip(in_shape, out_shape, position):
    room = i - o
    out.append(min(int(np.floor(p * (room + 1))), room) if room >= 0 else -((o - i + 1) // 2))
  return np.array(out)


def _params(**kw):
  return {k: jnp.asarray(v, jnp.bool_ if k == "applied" else jnp.float32) for k, v in kw.items()}


def _stack(trees):
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def test_reference_helpers():
  # The Jacobian helper is exact on affine maps and sees a fold.
  a = np.array([[1.1, 0.2, 0.0], [-0.1, 0.9, 0.3], [0.05, 0.0, 1.2]])
  grid = _grid((6, 7, 8))
  np.testing.assert_allclose(
    _jacobian_det(np.einsum("ij,j...->i...", a, grid)), np.linalg.det(a), rtol=1e-12
  )
  folded = grid.copy()
  folded[0] = grid[0] - 2.5 * np.exp(-((grid[0] - 3) ** 2 + (grid[1] - 3) ** 2) / 2.0)
  assert _jacobian_det(folded).min() < 0
  # RK4 on a constant velocity is a translation; squaring too.
  v = np.broadcast_to(np.array([0.7, -0.3, 1.1]), (9, 8, 7, 3)).copy()
  np.testing.assert_allclose(_rk4_flow(v, 4), v, atol=1e-12)
  np.testing.assert_allclose(_scaling_and_squaring(v, 5), v, atol=1e-12)


# ---------------------------------------------------------------------------------------
# bias_field

BIAS_CFG = BiasConfig(std=(0.0, 0.7), grid_scale=(0.05, 0.25))
BIAS_SHAPE = (32, 28, 24)
# Node counts per axis: 0.05 -> (2, 2, 2), 0.13 -> (5, 4, 4), 0.25 -> (8, 7, 6) = g_max.
BIAS_SCALES = (0.05, 0.13, 0.25)


def _bias_reference(key, std, grid_scale):
  g_max = tuple(draw.max_grid_size(BIAS_CFG.grid_scale[1], s) for s in BIAS_SHAPE)
  n = [int(draw.grid_size(jnp.float32(grid_scale), s, g)) for s, g in zip(BIAS_SHAPE, g_max)]
  # The node count is ceil(scale * size), clipped to [2, g_max].
  assert n == [int(np.clip(np.ceil(grid_scale * s), 2, g)) for s, g in zip(BIAS_SHAPE, g_max)]
  small = np.asarray(jax.random.normal(key, g_max, jnp.float32)) * np.float32(std)
  return _upsample(small, n, BIAS_SHAPE)


def _bias_fn(key, p):
  return bias.bias_field(key, p, BIAS_CFG, BIAS_SHAPE)


@functools.cache
def _bias_batch():
  """Fields for BIAS_SCALES at std 0.5, then one with std 0, from one jit(vmap) call."""
  keys = jax.random.split(jax.random.key(1), len(BIAS_SCALES) + 1)
  params = [_params(applied=True, std=0.5, grid_scale=s) for s in BIAS_SCALES]
  params.append(_params(applied=True, std=0.0, grid_scale=0.13))
  return keys, np.asarray(jax.jit(jax.vmap(_bias_fn))(keys, _stack(params)))


def test_bias_field_zero_std_is_exactly_one():
  _, fields = _bias_batch()
  np.testing.assert_array_equal(fields[-1], np.ones(BIAS_SHAPE, np.float32))


def test_bias_field_log_matches_scipy_upsampling():
  keys, fields = _bias_batch()
  for i, s in enumerate(BIAS_SCALES):
    ref = _bias_reference(keys[i], 0.5, s)
    assert ref.std() > 0.05
    np.testing.assert_allclose(np.log(fields[i]), ref, rtol=0, atol=1e-5, err_msg=f"scale {s}")


# ---------------------------------------------------------------------------------------
# displacement_field: deterministic checks on a small grid

DEF_SHAPE = (40, 36, 32)
DEF_CFG = DeformationConfig(std=(0.0, 4.0), grid_scale=(0.04, 0.12), steps=7)
DEF_CFG0 = DeformationConfig(std=(0.0, 4.0), grid_scale=(0.04, 0.12), steps=0)


@pytest.mark.parametrize("mode", ["eager", "jit-vmap"])
def test_displacement_without_squaring_is_upsampled_velocity(mode):
  keys = jax.random.split(jax.random.key(2), 2)
  params = [
    _params(applied=True, std=3.0, grid_scale=0.12),
    _params(applied=True, std=1.5, grid_scale=0.07),
  ]
  fn = lambda k, p: _displacement_last(k, p, DEF_CFG0, DEF_SHAPE)
  if mode == "eager":
    with jax.disable_jit():
      out = [np.asarray(fn(keys[0], params[0]))]
  else:
    out = list(np.asarray(jax.jit(jax.vmap(fn))(keys, _stack(params))))
  for u, k, p in zip(out, keys, params):
    assert u.shape == DEF_SHAPE + (3,)
    v_half, half, ratio = _half_velocity(k, p["std"], p["grid_scale"], DEF_CFG0, DEF_SHAPE)
    ref = _upsample(v_half / ratio, half, DEF_SHAPE)  # back to output voxels, then upsample
    assert np.abs(ref).max() > 1.0
    np.testing.assert_allclose(u, ref, rtol=0, atol=2e-5)


def test_displacement_matches_numpy_scaling_and_squaring():
  keys = jax.random.split(jax.random.key(4), 3)
  params = [
    _params(applied=True, std=4.0, grid_scale=0.12),
    _params(applied=True, std=2.5, grid_scale=0.05),
    _params(applied=True, std=0.0, grid_scale=0.12),
  ]
  fn = lambda k, p: _displacement_last(k, p, DEF_CFG, DEF_SHAPE)
  batched = np.asarray(jax.jit(jax.vmap(fn))(keys, _stack(params)))
  # Zero velocity: exactly the identity.
  np.testing.assert_array_equal(batched[2], np.zeros(DEF_SHAPE + (3,), np.float32))
  for u, k, p in zip(batched[:2], keys, params):
    v_half, half, ratio = _half_velocity(k, p["std"], p["grid_scale"], DEF_CFG, DEF_SHAPE)
    ref = _upsample(_scaling_and_squaring(v_half, DEF_CFG.steps), half, DEF_SHAPE) / ratio
    assert np.abs(ref).max() > 2.0
    np.testing.assert_allclose(u, ref, rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------
# displacement_field and coordinate_map at the preset ranges (64^3)

LABELS = (0, 1, 2)
SHAPE = (64, 64, 64)
PRESETS = {
  "synthseg": synthjax.presets.synthseg(LABELS, SHAPE),
  "fetal": synthjax.presets.fetal(LABELS, SHAPE),
}
SEEDS = (0, 1, 2)
MARGIN = 8  # interior region, away from the edge-extended (clamped) boundary
# Corners of the affine ranges: signs of the 3 rotations, 3 scalings and 6 shears.
AFFINE_CORNERS = (
  (1, -1, 1, 1, -1, 1, 1, -1, 1, -1, 1, -1),
  (-1, -1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1),
  (1, 1, -1, 1, 1, -1, -1, 1, -1, 1, 1, -1),
)
IN_SHAPE = (72, 64, 60)  # larger along axis 0 (crop), smaller along axis 2 (padding)
SPACING = (1.0, 1.2, 0.8)


def _preset_config(name):
  return PRESETS[name].replace(spacing=SPACING)


def _fixed(cfg, signs, affine_applied, std_sign, translation=(0.0, 0.0, 0.0)):
  """A `fixed` dict (same structure for every call, so `sample_params` compiles once)."""
  a, d = cfg.affine, cfg.deformation
  pick = lambda rng, s: rng[1] if s > 0 else rng[0]
  return {
    "affine": {
      "applied": affine_applied,
      "rotation": [pick(a.rotation, s) for s in signs[:3]],
      "scaling": [pick(a.scaling, s) for s in signs[3:6]],
      "shear": [pick(a.shear, s) for s in signs[6:12]],
      "translation": list(translation),
    },
    "deformation": {"applied": True, "std": std_sign * d.std[1], "grid_scale": d.grid_scale[1]},
    "flip": {"applied": False},  # the flip's mirror is part of the coordinate map
  }


@functools.cache
def _preset_maps(name):
  """`coordinate_map` at the preset's extremes, for each seed, from one jit(vmap) call.

  Per seed (synthesis key `100 + seed`), with the deformation at the preset's largest std and
  grid scale: the full map with the affine at the corner `AFFINE_CORNERS[seed]` of the preset
  ranges, and the deformation-only maps for the velocity `v` and for `-v` (std negated).

  Returns `(keys, params, maps, fwd, bwd)`: `maps` `(len(SEEDS), 3, X, Y, Z)` full maps,
  `fwd` / `bwd` `(len(SEEDS), X, Y, Z, 3)` the displacements of `v` / `-v` in output voxels.
  """
  cfg = _preset_config(name)
  assert cfg.deformation.std[1] == 4.0 and cfg.deformation.steps == 7
  fixed = []
  for i in SEEDS:
    translation = (2.0, -1.5, 0.5) if i == 0 else (0.0, 0.0, 0.0)  # not in the presets
    corner = AFFINE_CORNERS[i]
    fixed += [
      _fixed(cfg, corner, True, 1.0, translation),
      _fixed(cfg, corner, False, 1.0),
      _fixed(cfg, corner, False, -1.0),
    ]
  params = [
    synthjax.sample_params(jax.random.key(200 + j), cfg, fixed=f) for j, f in enumerate(fixed)
  ]
  keys = jnp.stack([jax.random.key(100 + i) for i in SEEDS for _ in range(3)])
  maps = np.asarray(
    jax.jit(jax.vmap(lambda k, p: geometry.coordinate_map(k, p, cfg, IN_SHAPE)))(
      keys, _stack(params)
    )
  )
  # Without the affine the map is x + u(x) + crop offset.
  disp = []
  for m, p in zip(maps, params):
    offset = _crop_offset_reference(IN_SHAPE, SHAPE, np.float64(p["crop"]["position"]))
    disp.append(np.moveaxis(m - _grid(SHAPE) - offset.reshape(3, 1, 1, 1), 0, -1))
  return keys[::3], params[::3], maps[::3], np.stack(disp[1::3]), np.stack(disp[2::3])


def _interior(a):
  sl = (slice(MARGIN, -MARGIN),) * 3
  return a[sl]


def test_preset_maps_use_the_preset_extremes():
  # Guards the fixtures below: the params really are at the corners of the preset ranges.
  for name in PRESETS:
    cfg = _preset_config(name)
    _, params, _, _, _ = _preset_maps(name)
    for i, p in zip(SEEDS, params):
      pa, pd = jax.tree.map(np.asarray, (p["affine"], p["deformation"]))
      assert pa["applied"] and pd["applied"]
      assert pd["std"] == 4.0 and pd["grid_scale"] == np.float32(cfg.deformation.grid_scale[1])
      for field, rng, signs in (
        ("rotation", cfg.affine.rotation, AFFINE_CORNERS[i][:3]),
        ("scaling", cfg.affine.scaling, AFFINE_CORNERS[i][3:6]),
        ("shear", cfg.affine.shear, AFFINE_CORNERS[i][6:]),
      ):
        want = np.where(np.asarray(signs) > 0, rng[1], rng[0]).astype(np.float32)
        np.testing.assert_array_equal(pa[field], want)


@pytest.mark.parametrize("name", PRESETS)
def test_displacement_approximates_velocity_flow(name):
  # Scaling and squaring approximates the exponential of the stationary velocity: compare
  # with a Runge-Kutta integration of dx/dt = v(x) on the same half-resolution grid.
  cfg = PRESETS[name].deformation
  keys, _, _, fwd, _ = _preset_maps(name)
  for k, u in zip(keys[:2], fwd[:2]):
    v_half, half, ratio = _half_velocity(k, cfg.std[1], cfg.grid_scale[1], cfg, SHAPE)
    flow = _upsample(_rk4_flow(v_half), half, SHAPE) / ratio
    err = np.linalg.norm(_interior(u - flow), axis=-1)
    mag = np.linalg.norm(_interior(u), axis=-1)
    assert mag.max() > 4.0
    assert err.max() < 0.05 * mag.max()
    assert np.sqrt((err**2).mean() / (mag**2).mean()) < 0.02


@pytest.mark.parametrize("name", PRESETS)
def test_displacement_flows_of_v_and_minus_v_are_inverse(name):
  _, _, _, fwd, bwd = _preset_maps(name)
  grid = _grid(SHAPE)
  rms = lambda x: np.sqrt((x**2).mean())
  for u, w in ((fwd, bwd), (bwd, fwd)):
    for a, b in zip(u, w):
      # phi_a(phi_b(x)) - x = b(x) + a(x + b(x)), which must be ~0 in the interior.
      residual = np.linalg.norm(
        _interior(b + _interp_field(a, grid + np.moveaxis(b, -1, 0))), axis=-1
      )
      # Using -a(x) as the inverse (first-order guess) must do much worse.
      naive = np.linalg.norm(
        _interior(-a + _interp_field(a, grid - np.moveaxis(a, -1, 0))), axis=-1
      )
      mag = np.linalg.norm(_interior(a), axis=-1)
      assert mag.max() > 4.0
      assert residual.max() < 0.1 * mag.max()
      assert rms(residual) < 0.03 * rms(mag)
      assert rms(residual) < 0.2 * rms(naive)


@pytest.mark.parametrize("name", PRESETS)
def test_coordinate_map_at_preset_extremes(name):
  """Params from `sample_params` with the affine at corners of the preset ranges and the
  deformation at its largest std and grid scale, an anisotropic spacing, and an input that
  is cropped along axis 0 and padded along axis 2.

  Checks the map against the composition it documents (deformation in output voxels, then
  the affine in mm about the FOV centre, then the crop offset; the deformation is the one
  validated by the flow tests) and that it does not fold: Jacobian determinant > 0.
  """
  _, params, maps, fwd, _ = _preset_maps(name)
  grid = _grid(SHAPE)
  sp = np.asarray(SPACING).reshape(3, 1, 1, 1)
  centre = ((np.asarray(SHAPE) - 1) / 2.0).reshape(3, 1, 1, 1)
  for c, p, u in zip(maps, params, fwd):
    pa = jax.tree.map(lambda x: np.asarray(x, np.float64), p["affine"])
    offset = _crop_offset_reference(IN_SHAPE, SHAPE, np.float64(p["crop"]["position"]))
    # object_size (fetal preset) divides the sampling-grid scaling isotropically.
    scaling = pa["scaling"] / pa.get("object_size", 1.0)
    lin = _affine_reference(pa["rotation"], scaling, pa["shear"])
    mm = (grid - centre + np.moveaxis(u, -1, 0)) * sp  # deformed point, mm about the centre
    mm = np.einsum("ij,j...->i...", lin, mm) + pa["translation"].reshape(3, 1, 1, 1)
    np.testing.assert_allclose(c, mm / sp + centre + offset.reshape(3, 1, 1, 1), rtol=0, atol=2e-3)

    det = _jacobian_det(c)
    assert det.min() > 0, f"folding: min Jacobian determinant {det.min():.3g}"
    assert np.ptp(det) > 0.2  # the deformation is really there
    # On average the map scales volumes by about the affine's determinant (in voxels).
    lin_vox = lin * (np.asarray(SPACING)[None, :] / np.asarray(SPACING)[:, None])
    assert abs(np.median(det) / np.linalg.det(lin_vox) - 1) < 0.2


# ---------------------------------------------------------------------------------------
# affine_matrix


def _random_affine_params(rng, n):
  return {
    "rotation": rng.uniform(-180, 180, (n, 3)),
    "scaling": rng.uniform(0.5, 2.0, (n, 3)),
    "shear": rng.uniform(-0.3, 0.3, (n, 6)),
  }


@pytest.mark.parametrize("mode", ["eager", "jit", "vmap"])
def test_affine_matrix_matches_numpy_construction(mode):
  raw = _random_affine_params(np.random.default_rng(6), 8)
  p = {k: jnp.asarray(v, jnp.float32) for k, v in raw.items()}
  if mode == "eager":
    with jax.disable_jit():
      out = np.stack([np.asarray(geometry.affine_matrix(element(p, i))) for i in range(2)])
  elif mode == "jit":
    fn = jax.jit(geometry.affine_matrix)
    out = np.stack([np.asarray(fn(element(p, i))) for i in range(8)])
  else:
    out = np.asarray(jax.jit(jax.vmap(geometry.affine_matrix))(p))
  for i, m in enumerate(out):
    ref = _affine_reference(
      *(np.float32(raw[k][i]).astype(np.float64) for k in ("rotation", "scaling", "shear"))
    )
    np.testing.assert_allclose(m, ref, rtol=0, atol=2e-6)


def test_affine_matrix_pure_rotation_is_orthonormal():
  rng = np.random.default_rng(7)
  p = {
    "rotation": jnp.asarray(rng.uniform(-180, 180, (16, 3)), jnp.float32),
    "scaling": jnp.ones((16, 3), jnp.float32),
    "shear": jnp.zeros((16, 6), jnp.float32),
  }
  mats = np.asarray(jax.vmap(geometry.affine_matrix)(p)).astype(np.float64)
  eye = np.broadcast_to(np.eye(3), mats.shape)
  np.testing.assert_allclose(mats @ np.swapaxes(mats, 1, 2), eye, atol=1e-6)
  np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_affine_matrix_single_angle_is_right_handed_rotation_about_axis(axis):
  # +90 degrees about axis a maps e_{a+1} to e_{a+2} (cyclically) and fixes e_a.
  rot = np.zeros(3)
  rot[axis] = 90.0
  m = np.asarray(
    geometry.affine_matrix(
      {"rotation": jnp.asarray(rot, jnp.float32), "scaling": jnp.ones(3), "shear": jnp.zeros(6)}
    )
  )
  e = np.eye(3)
  np.testing.assert_allclose(m @ e[axis], e[axis], atol=1e-6)
  np.testing.assert_allclose(m @ e[(axis + 1) % 3], e[(axis + 2) % 3], atol=1e-6)


# ---------------------------------------------------------------------------------------
# crop_offset

CROP_CASES = [
  ((40, 40, 40), (32, 32, 32)),  # crop
  ((32, 30, 28), (32, 32, 33)),  # keep, pad by 2 (even), pad by 5 (odd)
  ((50, 20, 33), (41, 27, 33)),  # mixed
]


@pytest.mark.parametrize("in_shape,out_shape", CROP_CASES)
def test_crop_offset_numpy_and_jax_paths_agree(in_shape, out_shape):
  rng = np.random.default_rng(8)
  room = np.array(in_shape) - np.array(out_shape)
  # Random positions, the ends of [0, 1], and positions on the bin edges k / (room + 1).
  pos = [rng.uniform(size=3) for _ in range(20)] + [np.zeros(3), np.ones(3)]
  pos += [
    np.float32(np.minimum(k, np.maximum(room, 0)) / (np.maximum(room, 0) + 1)) for k in range(3)
  ]
  pos = np.asarray(pos, np.float32)
  jitted = jax.jit(lambda q: geometry.crop_offset(in_shape, out_shape, q))
  batched = np.asarray(
    jax.vmap(lambda q: geometry.crop_offset(in_shape, out_shape, q))(jnp.asarray(pos))
  )
  for q, b in zip(pos, batched):
    ref = _crop_offset_reference(in_shape, out_shape, q.astype(np.float64))
    np.testing.assert_array_equal(geometry.crop_offset(in_shape, out_shape, q), ref)
    np.testing.assert_array_equal(
      np.asarray(geometry.crop_offset(in_shape, out_shape, jnp.asarray(q))), ref
    )
    np.testing.assert_array_equal(np.asarray(jitted(jnp.asarray(q))), ref)
    np.testing.assert_array_equal(b, ref)


def test_crop_offset_is_uniform_within_room():
  in_shape, out_shape = (40, 36, 33), (32, 32, 32)
  room = np.array(in_shape) - np.array(out_shape)
  pos = np.random.default_rng(9).uniform(size=(6000, 3))
  offs = np.stack([geometry.crop_offset(in_shape, out_shape, q) for q in pos])
  assert (offs >= 0).all() and (offs <= room).all()
  for a in range(3):
    counts = np.bincount(offs[:, a], minlength=room[a] + 1)
    assert len(counts) == room[a] + 1 and (counts > 0).all()
    assert stats.chisquare(counts).pvalue > 1e-3
  np.testing.assert_array_equal(geometry.crop_offset(in_shape, out_shape, np.ones(3)), room)
  np.testing.assert_array_equal(geometry.crop_offset(in_shape, out_shape, np.zeros(3)), 0)


@pytest.mark.parametrize("n_in,n_out", [(30, 32), (30, 33), (1, 8), (17, 40)])
def test_crop_offset_pads_centred(n_in, n_out):
  for q in (0.0, 0.5, 1.0):
    off = geometry.crop_offset((n_in,) * 3, (n_out,) * 3, np.full(3, q))
    before = -off
    after = n_out - n_in - before
    assert (before >= 0).all() and (after >= 0).all()
    assert (np.abs(before - after) <= 1).all()
    # The input's centre lands on the output's centre (to within half a voxel).
    assert (np.abs((n_in - 1) / 2.0 + before - (n_out - 1) / 2.0) <= 0.5).all()
