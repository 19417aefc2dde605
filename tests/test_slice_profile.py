"""Boxcar and triangle slice profiles of the resolution stage (`ResolutionConfig.slice_profile`).

References written here:
  * the boxcar weights as the overlap length of each voxel `[d - 1/2, d + 1/2]` with the
    slab `[-w/2, w/2]`, divided by `w`, applied with `scipy.ndimage.correlate1d(mode="reflect")`;
  * the triangle weights by numerical integration of `(w - |x|) / w^2` over each voxel;
  * closed forms: a delta becomes the kernel itself, a step becomes the ramp
    `clip((i - s + 1/2) / w + 1/2, 0, 1)`;
  * the down/up sampling reference of `tests/test_resolution.py` (`np.interp`), re-derived.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from synthjax._src.config import ResolutionConfig, SynthConfig
from synthjax._src.stages import resolution

BOX = ResolutionConfig(slice_profile="boxcar")
TRI = ResolutionConfig(slice_profile="triangle")
WIDTHS = (0.6, 1.0, 1.7, 2.0, 3.0, 4.35, 7.9)
RADIUS = 9


def np_box_weights(w, radius=RADIUS):
  d = np.arange(-radius, radius + 1, dtype=np.float64)
  lo = np.maximum(d - 0.5, -w / 2)
  hi = np.minimum(d + 0.5, w / 2)
  return np.maximum(hi - lo, 0.0) / w if w > 1 else (d == 0).astype(np.float64)


def np_triangle_weights(w, radius=RADIUS, samples=4001):
  d = np.arange(-radius, radius + 1, dtype=np.float64)
  t = (np.arange(samples) + 0.5) / samples - 0.5  # midpoints across one voxel
  x = d[:, None] + t[None, :]
  return (np.maximum(w - np.abs(x), 0.0) / w**2).mean(axis=1)


def np_filter(x, weights, axis):
  return ndimage.correlate1d(np.asarray(x, np.float64), weights, axis=axis, mode="reflect")


def np_down_up(x, f):
  n = x.size
  k_count = int(np.floor((n - 1) / f)) + 1
  low = np.interp(np.arange(k_count) * f, np.arange(n), x)
  return np.interp(np.arange(n) / f, np.arange(k_count), low)


def np_resolution(x, res, thick, blur_scale, spacing, weights_fn):
  out = np.asarray(x, np.float64)
  for a in range(3):
    w = float(np.float32(thick[a]) / np.float32(spacing[a]) * np.float32(blur_scale))
    out = np_filter(out, weights_fn(w), a)
    f = float(np.float32(res[a]) / np.float32(spacing[a]))
    out = np.apply_along_axis(np_down_up, a, out, max(f, 1.0))
  return out


def params(applied, res, thick, blur_scale=1.0):
  return {
    "applied": jnp.asarray(applied),
    "resolution": jnp.asarray(res, jnp.float32),
    "thickness": jnp.asarray(thick, jnp.float32),
    "blur_scale": jnp.asarray(blur_scale, jnp.float32),
  }


# ---------------------------------------------------------------------------------------
# profile_matrix

N = 20
profile_jit = jax.jit(resolution.profile_matrix, static_argnums=(0, 2, 3))


@pytest.mark.parametrize(
  "profile,ref_fn", [("boxcar", np_box_weights), ("triangle", np_triangle_weights)]
)
def test_profile_matrix_rows_and_weights(profile, ref_fn):
  rng = np.random.default_rng(0)
  mats = [profile_jit(N, jnp.float32(w), RADIUS, profile) for w in WIDTHS]  # traced width
  with jax.disable_jit():
    mats.append(resolution.profile_matrix(N, WIDTHS[4], RADIUS, profile))
  for w, m in zip(WIDTHS + (WIDTHS[4],), mats):
    m = np.asarray(m)
    assert m.dtype == np.float32 and m.shape == (N, N)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=0, atol=1e-6, err_msg=f"w={w}")
    x = rng.normal(size=N)
    np.testing.assert_allclose(
      m @ x, np_filter(x, ref_fn(w), 0), rtol=0, atol=2e-6, err_msg=f"{profile} w={w}"
    )
  # Interior row = the kernel itself (offsets -4..4 about voxel 10, for w = 3 and 4.35).
  m = np.asarray(profile_jit(N, jnp.float32(4.35), RADIUS, profile))
  np.testing.assert_allclose(m[10, 6:15], ref_fn(4.35, radius=4), rtol=0, atol=1e-6)


def test_boxcar_weights_closed_form():
  m = np.asarray(profile_jit(N, jnp.float32(3.0), RADIUS, "boxcar"))
  np.testing.assert_allclose(m[10, 8:13], [0, 1 / 3, 1 / 3, 1 / 3, 0], atol=1e-7)
  m = np.asarray(profile_jit(N, jnp.float32(2.5), RADIUS, "boxcar"))  # fractional ends
  np.testing.assert_allclose(m[10, 8:13], [0, 0.3, 0.4, 0.3, 0], atol=1e-7)
  m = np.asarray(profile_jit(N, jnp.float32(2.0), RADIUS, "boxcar"))
  np.testing.assert_allclose(m[10, 8:13], [0, 0.25, 0.5, 0.25, 0], atol=1e-7)
  # At most one voxel: the identity, exactly.
  for w in (0.3, 1.0):
    np.testing.assert_array_equal(
      np.asarray(profile_jit(N, jnp.float32(w), RADIUS, "boxcar")), np.eye(N, dtype=np.float32)
    )
  # Triangle (2 - |x|) / 4 (the box of width 2 convolved with itself), integrated per voxel.
  m = np.asarray(profile_jit(N, jnp.float32(2.0), RADIUS, "triangle"))
  np.testing.assert_allclose(m[10, 7:14], [0, 1 / 32, 1 / 4, 7 / 16, 1 / 4, 1 / 32, 0], atol=1e-6)


def test_width_is_continuous():
  ws = np.linspace(2.9, 3.1, 41).astype(np.float32)
  mats = np.asarray(jax.vmap(lambda w: resolution.profile_matrix(N, w, RADIUS))(ws))
  steps = np.abs(np.diff(mats, axis=0)).max()
  assert steps < 0.01  # 0.005 mm steps change any weight by at most ~w'/w^2 * 0.005
  for m, w in zip(mats, ws):
    np.testing.assert_allclose(
      m[10, 10 - RADIUS : 10 + RADIUS + 1], np_box_weights(float(w)), atol=1e-6
    )


# ---------------------------------------------------------------------------------------
# The resolution stage

SHAPE = (20, 18, 16)
SPACING = (1.0, 1.0, 1.5)


def apply(cfg):
  return jax.jit(lambda x, p: resolution.apply_resolution(x, p, cfg, SPACING))


apply_box, apply_tri = apply(BOX), apply(TRI)


def test_delta_and_step_closed_forms():
  # Native resolution (no down/up sampling), a thick slice along axis 1 only: the other
  # axes have width 1, the identity; along axis 1 a delta becomes the box.
  p = params(True, SPACING, (1.0, 3.5, 1.5))
  x = np.zeros(SHAPE, np.float32)
  x[10, 9, 8] = 1.0
  out = np.asarray(apply_box(jnp.asarray(x), p))
  expect = np.zeros(SHAPE)
  expect[10, 7:12, 8] = [0.25 / 3.5, 1 / 3.5, 1 / 3.5, 1 / 3.5, 0.25 / 3.5]
  np.testing.assert_allclose(out, expect, rtol=0, atol=1e-6)
  # A step at s along axis 2 (thickness 6 mm = 4 voxels): the ramp (i - s + 1/2) / w + 1/2.
  s, w = 8, 4.0
  step = np.zeros(SHAPE, np.float32)
  step[..., s:] = 1.0
  out = np.asarray(apply_box(jnp.asarray(step), params(True, SPACING, (1.0, 1.0, 6.0))))
  i = np.arange(SHAPE[2])
  ramp = np.clip((i - s + 0.5) / w + 0.5, 0, 1)
  np.testing.assert_allclose(out, np.broadcast_to(ramp, SHAPE), rtol=0, atol=1e-6)


CASES = [  # resolution, thickness, blur_scale
  ((1.0, 3.0, 4.5), (1.0, 2.4, 4.0), 1.02),
  ((5.3, 1.0, 1.5), (3.1, 1.0, 1.5), 0.98),
  ((2.2, 2.2, 2.2), (2.2, 1.6, 2.0), 1.0),
]


@pytest.mark.parametrize("res,thick,scale", CASES)
def test_stage_matches_reference(res, thick, scale):
  x = np.random.default_rng(1).normal(size=SHAPE).astype(np.float32)
  for fn, weights in ((apply_box, np_box_weights), (apply_tri, np_triangle_weights)):
    out = np.asarray(fn(jnp.asarray(x), params(True, res, thick, scale)))
    ref = np_resolution(x, res, thick, scale, SPACING, weights)
    assert np.abs(ref - x).max() > 0.1
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5)


def test_vmap_matches_single_calls_and_the_reference():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(3,) + SHAPE).astype(np.float32)
  singles = [params(True, *CASES[0]), params(True, *CASES[1]), params(True, *CASES[1])]
  p = jax.tree.map(lambda *a: jnp.stack(a), *singles)
  out = np.asarray(
    jax.jit(jax.vmap(lambda x, p: resolution.apply_resolution(x, p, BOX, SPACING)))(
      jnp.asarray(x), p
    )
  )
  for b, case in enumerate((CASES[0], CASES[1], CASES[1])):
    np.testing.assert_allclose(
      out[b], np.asarray(apply_box(jnp.asarray(x[b]), singles[b])), rtol=0, atol=1e-5
    )
    ref = np_resolution(x[b], *case, SPACING, np_box_weights)
    np.testing.assert_allclose(out[b], ref, rtol=0, atol=2e-5)


def test_radius_covers_the_widest_profile():
  cfg = ResolutionConfig(slice_profile="triangle", max_res_aniso=9.0)
  r = resolution.max_radius(cfg, (1.0, 1.0, 1.0))
  w = 9.0 * cfg.blur_range
  assert r >= w + 0.5  # triangle weights vanish at |d| >= w + 1/2
  rb = resolution.max_radius(dataclasses.replace(cfg, slice_profile="boxcar"), (1.0, 1.0, 1.0))
  assert w / 2 + 0.5 <= rb < r
  # Gaussian radius as before (4 sigma, sigma = 0.75 * 9 * 1.03).
  rg = resolution.max_radius(dataclasses.replace(cfg, slice_profile="gaussian"), (1, 1, 1))
  assert rg == int(np.floor(4 * 0.75 * 9.0 * 1.03 + 0.5)) + 1


# ---------------------------------------------------------------------------------------
# Config


def test_default_is_gaussian_and_unchanged():
  assert ResolutionConfig().slice_profile == "gaussian"
  assert ResolutionConfig(slice_profile="gaussian") == ResolutionConfig()
  x = np.random.default_rng(3).normal(size=SHAPE).astype(np.float32)
  p = params(True, *CASES[0])
  default = jax.jit(lambda x, p: resolution.apply_resolution(x, p, ResolutionConfig(), SPACING))
  out = np.asarray(default(jnp.asarray(x), p))
  # SynthSeg's Gaussian (sigma = 0.75 * thickness / spacing, 0.5 at native), not the box.
  ref = np.asarray(x, np.float64)
  for a in range(3):
    ratio = CASES[0][1][a] / SPACING[a]
    sigma = (0.75 * ratio if ratio > 1 else 0.5) * CASES[0][2]
    ref = ndimage.gaussian_filter1d(ref, sigma, axis=a, mode="reflect", truncate=4.0)
    f = float(np.float32(CASES[0][0][a]) / np.float32(SPACING[a]))
    ref = np.apply_along_axis(np_down_up, a, ref, max(f, 1.0))
  np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
  assert np.abs(out - np.asarray(apply_box(jnp.asarray(x), p))).max() > 1e-2


@pytest.mark.parametrize("bad", ["box", "Gaussian", "", None, 3])
def test_invalid_profile_raises(bad):
  with pytest.raises(ValueError, match="slice_profile"):
    ResolutionConfig(slice_profile=bad)
  cfg = SynthConfig(shape=(8, 8, 8), label_values=(0, 1))
  with pytest.raises(ValueError, match="slice_profile"):
    cfg.replace(resolution={"slice_profile": bad})


@pytest.mark.parametrize("profile", ["gaussian", "boxcar", "triangle"])
def test_config_round_trip(profile):
  cfg = SynthConfig(shape=(8, 8, 8), label_values=(0, 1)).replace(
    resolution={"slice_profile": profile}
  )
  assert cfg.resolution.slice_profile == profile
  d = cfg.to_dict()
  assert d["resolution"]["slice_profile"] == profile
  assert SynthConfig.from_dict(d) == cfg
  assert SynthConfig.from_json(cfg.to_json()) == cfg
  assert hash(SynthConfig.from_json(cfg.to_json())) == hash(cfg)
  # A config written before the field existed reads back with the Gaussian.
  old = json.loads(cfg.to_json())
  del old["resolution"]["slice_profile"]
  assert SynthConfig.from_dict(old).resolution.slice_profile == "gaussian"
