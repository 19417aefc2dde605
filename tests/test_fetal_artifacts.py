"""FetalSynthGen cortex blur and simulated boundaries.

Stages `synthjax/_src/stages/blur_cortex.py` and `boundary.py`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _batches import element
from _maps import ball
from scipy import ndimage

from synthjax._src.ops import morphology
from synthjax._src.stages import blur_cortex, boundary

N = 32
SHAPE = (N, N, N)
BLUR_CFG = blur_cortex.BlurCortexConfig(prob=0.7, enabled=True, nblur=(2, 8))
BND_CFG = boundary.BoundaryConfig(prob=1.0, enabled=True)
# Shared jitted stages (configs static), so that tests reuse one compilation each.
_blur = jax.jit(blur_cortex.apply_blur_cortex, static_argnums=3)
_bnd = jax.jit(boundary.apply_boundary, static_argnums=3)
_sample_blur_batch = jax.jit(jax.vmap(lambda k: blur_cortex.sample_blur_cortex(k, BLUR_CFG)))


def _ball(r):
  g = np.arange(-r, r + 1)
  x, y, z = np.meshgrid(g, g, g, indexing="ij")
  return x * x + y * y + z * z <= r * r


@pytest.fixture(scope="module")
def brain():
  """An irregular 'brain': two overlapping spheres and a bump; a cortex shell around it."""
  fg = ball(SHAPE, (15, 16, 15), 9) | ball(SHAPE, (20, 13, 17), 6) | ball(SHAPE, (9, 22, 12), 3)
  cortex = fg & ~ndimage.binary_erosion(fg, iterations=2)
  img = np.random.default_rng(0).uniform(0, 1, SHAPE).astype(np.float32) * fg
  return fg, cortex, img


# ---------------------------------------------------------------------------------------
# Config


def test_configs_defaults_and_validation():
  c = blur_cortex.BlurCortexConfig()
  assert (c.enabled, c.prob, c.nblur) == (False, 0.0, (50, 199))
  assert (c.blob_sigma_shape, c.blob_sigma_scale, c.blur_std_shape, c.blur_std_scale) == (
    3,
    1,
    2,
    1,
  )
  b = boundary.BoundaryConfig()
  assert (b.enabled, b.prob, b.halo_radius) == (False, 0.0, (5, 14))
  assert (b.prob_no_mask, b.prob_halo, b.prob_fuzzy) == (0.5, 0.5, 0.5)
  hash(c), hash(b)
  bad = [
    (blur_cortex.BlurCortexConfig, {"nblur": (5, 2)}, "nblur"),
    (blur_cortex.BlurCortexConfig, {"nblur": (0, 0)}, "nblur"),
    (blur_cortex.BlurCortexConfig, {"nblur": (1.5, 3)}, "nblur"),
    (blur_cortex.BlurCortexConfig, {"blob_sigma_shape": 0.0}, "blob_sigma_shape"),
    (blur_cortex.BlurCortexConfig, {"blur_std_scale": -1.0}, "blur_std_scale"),
    (blur_cortex.BlurCortexConfig, {"max_blur_std": float("inf")}, "max_blur_std"),
    (blur_cortex.BlurCortexConfig, {"prob": 1.5}, "prob"),
    (blur_cortex.BlurCortexConfig, {"cortex_label": 2.5}, "cortex_label"),
    (boundary.BoundaryConfig, {"prob_halo": -0.1}, "prob_halo"),
    (boundary.BoundaryConfig, {"prob_no_mask": 2}, "prob_no_mask"),
    (boundary.BoundaryConfig, {"halo_radius": (-1, 3)}, "halo_radius"),
    (boundary.BoundaryConfig, {"halo_radius": (6, 5)}, "halo_radius"),
    (boundary.BoundaryConfig, {"fuzzy_width": (-1.0, 2.0)}, "fuzzy_width"),
    (boundary.BoundaryConfig, {"fuzzy_jitter": (3.0, 2.0)}, "fuzzy_jitter"),
    (boundary.BoundaryConfig, {"jitter_grid_scale": 1.5}, "jitter_grid_scale"),
    (boundary.BoundaryConfig, {"fuzzy_grid_scale": 0.0}, "fuzzy_grid_scale"),
  ]
  for cls, kw, field in bad:
    with pytest.raises(ValueError, match=field):
      cls(**kw)


# ---------------------------------------------------------------------------------------
# Cortex blur


def test_sample_blur_cortex_shapes_stats_and_fixing():
  cfg = BLUR_CFG
  p = _sample_blur_batch(jax.random.split(jax.random.key(0), 400))
  assert p["applied"].dtype == jnp.bool_ and p["nblur"].dtype == jnp.int32
  assert p["blur_std"].shape == (400, 3) and p["blob_sigma"].shape == (400, 8, 3)
  nb = np.asarray(p["nblur"])
  assert nb.min() == 2 and nb.max() == 8
  assert 0.6 < np.asarray(p["applied"]).mean() < 0.8
  # Gamma(2, 1) and Gamma(3, 1) means and variances.
  bs, sg = np.asarray(p["blur_std"]), np.asarray(p["blob_sigma"])
  assert abs(bs.mean() - 2.0) < 0.12 and abs(bs.var() - 2.0) < 0.4 and bs.max() <= 10.0
  assert abs(sg.mean() - 3.0) < 0.1 and abs(sg.var() - 3.0) < 0.4
  # Fixing, including one sigma triple broadcast to every slot.
  # (Under jit, so that the unused gamma draw is dropped instead of compiled.)
  fixed = {"applied": True, "nblur": 4, "blur_std": [1.0, 0.0, 2.0], "blob_sigma": [2.0, 3.0, 4.0]}
  f = jax.jit(lambda k: blur_cortex.sample_blur_cortex(k, cfg, fixed=fixed))(jax.random.key(1))
  assert bool(f["applied"]) and int(f["nblur"]) == 4
  np.testing.assert_array_equal(f["blur_std"], [1.0, 0.0, 2.0])
  np.testing.assert_array_equal(f["blob_sigma"], np.tile([2.0, 3.0, 4.0], (8, 1)))
  with pytest.raises(ValueError, match="blob_sigma"):
    jax.jit(
      lambda k: blur_cortex.sample_blur_cortex(k, cfg, fixed={"blob_sigma": np.ones((2, 3))})
    )(jax.random.key(1))


def test_centres_inside_region_distinct_and_prior(brain):
  _, cortex, _ = brain
  c, v = blur_cortex.sample_centres(jax.random.key(3), jnp.asarray(cortex), 64)
  c, v = np.asarray(c), np.asarray(v)
  assert v.all() and cortex[tuple(c.T)].all()
  assert len({tuple(x) for x in c}) == 64  # without replacement
  # Fewer region voxels than slots: every region voxel once, the rest invalid.
  small = np.zeros(SHAPE, bool)
  small[3, 4, 5] = small[10, 11, 12] = small[30, 1, 2] = True
  c, v = blur_cortex.sample_centres(jax.random.key(4), jnp.asarray(small), 5)
  assert np.asarray(v).tolist() == [True] * 3 + [False] * 2
  assert {tuple(x) for x in np.asarray(c)[:3]} == {(3, 4, 5), (10, 11, 12), (30, 1, 2)}
  # Empty region: no valid centre.
  _, v = blur_cortex.sample_centres(jax.random.key(4), jnp.zeros(SHAPE, bool), 5)
  assert not np.asarray(v).any()
  # The peer's prior favours the ends of axis 0 (uniform: half the voxels there).
  full = jnp.ones(SHAPE, bool)
  c, _ = blur_cortex.sample_centres(jax.random.key(5), full, 199, prior=True)
  x = np.asarray(c)[:, 0]
  assert ((x < 8) | (x >= 24)).mean() > 0.7
  c, _ = blur_cortex.sample_centres(jax.random.key(5), full, 199, prior=False)
  x = np.asarray(c)[:, 0]
  assert 0.35 < ((x < 8) | (x >= 24)).mean() < 0.65
  # Prior values: min(1, G1 + G2) of the peer's two Gaussians, in the log domain.
  lp = np.asarray(blur_cortex.cortex_prior_logits(SHAPE))
  i, j, k = np.meshgrid(*[np.arange(N)] * 3, indexing="ij")
  rest = (j - N) ** 2 + (k - N // 2) ** 2
  ref = np.exp(-0.5 * (i**2 + rest) / 6**2) + np.exp(-0.5 * ((i - N) ** 2 + rest) / 6**2)
  np.testing.assert_allclose(np.exp(lp), np.minimum(ref, 1), rtol=1e-4, atol=1e-30)


def test_blob_mask_matches_numpy():
  rng = np.random.default_rng(1)
  centres = rng.integers(0, N, (6, 3))
  sig = rng.gamma(3.0, 1.0, (6, 3)).astype(np.float32)
  active = np.array([1, 1, 0, 1, 1, 0], bool)
  got = np.asarray(
    blur_cortex.blob_mask(jnp.asarray(centres), jnp.asarray(sig), jnp.asarray(active), SHAPE)
  )
  g = np.stack(np.meshgrid(*[np.arange(N)] * 3, indexing="ij")).astype(np.float64)
  ref = np.zeros(SHAPE)
  for c, s, a in zip(centres, sig, active):
    if a:
      ref += np.exp(-0.5 * (((g - c.reshape(3, 1, 1, 1)) / s.reshape(3, 1, 1, 1)) ** 2).sum(0))
  np.testing.assert_allclose(got, np.clip(ref, 0, 1), atol=2e-6)
  assert got.max() == 1.0 and got.min() >= 0.0


def test_blur_matches_scipy():
  x = np.random.default_rng(2).uniform(0, 1, SHAPE).astype(np.float32)
  cfg = blur_cortex.BlurCortexConfig()
  for stds in ([1.3, 0.0, 2.7], [0.4, 4.0, 9.5], [12.0, 0.7, 1.0]):
    got = np.asarray(blur_cortex.gaussian_blur(jnp.asarray(x), jnp.asarray(stds), cfg))
    ref = ndimage.gaussian_filter(
      x.astype(np.float64), np.minimum(stds, cfg.max_blur_std), mode="reflect", truncate=4.0
    )
    np.testing.assert_allclose(got, ref, atol=2e-5)


def _blur_params(**kw):
  p = {
    "applied": jnp.asarray(True),
    "nblur": jnp.asarray(5, jnp.int32),
    "blur_std": jnp.asarray([1.5, 2.0, 0.8], jnp.float32),
    "blob_sigma": jnp.full((8, 3), 3.0, jnp.float32),
  }
  p.update({k: jnp.asarray(v, p[k].dtype) for k, v in kw.items()})
  return p


def test_apply_blur_cortex_reference_and_identities(brain):
  _, cortex, img = brain
  cfg = BLUR_CFG
  key = jax.random.key(7)
  x, region = jnp.asarray(img), jnp.asarray(cortex)
  p = _blur_params()
  out = np.asarray(blur_cortex.apply_blur_cortex(key, x, p, cfg, region))  # eager
  g = np.asarray(blur_cortex.blur_cortex_weights(key, p, cfg, region))
  run = lambda k, x, q, r: _blur(k, x, q, cfg, r)
  np.testing.assert_allclose(np.asarray(run(key, x, p, region)), out, atol=1e-6)
  blur = ndimage.gaussian_filter(img.astype(np.float64), [1.5, 2.0, 0.8], mode="reflect")
  np.testing.assert_allclose(out, img * (1 - g) + blur * g, atol=2e-5)
  # The blobs sit on the cortex: the mask peaks (1) at the centres, inside the region.
  assert g[cortex].max() == 1.0 and 0.0 < g.mean() < 0.5
  assert np.abs(out - img).max() > 0.05 and np.isfinite(out).all() and out.dtype == np.float32
  # Exactly the count: 5 active of 8 slots -> 5 distinct unit peaks.
  c, v = blur_cortex.sample_centres(key, region, 8)
  assert np.asarray(v).all() and (g[tuple(np.asarray(c)[:5].T)] == 1.0).all()
  # Identities: no blob, zero blur, empty region. (A stage that is not applied is skipped
  # by the generator's render loop: tests/test_stages_wired.py.)
  for q, r in (
    (_blur_params(nblur=0), region),
    (_blur_params(blur_std=[0.0, 0.0, 0.0]), region),
    (p, jnp.zeros(SHAPE, bool)),
  ):
    np.testing.assert_array_equal(np.asarray(run(key, x, q, r)), img)
  with pytest.raises(ValueError, match="region_mask"):
    blur_cortex.apply_blur_cortex(key, x, p, cfg, region[:-1])


def test_blur_cortex_jit_vmap(brain):
  _, cortex, img = brain
  cfg = BLUR_CFG
  x, region = jnp.asarray(img), jnp.asarray(cortex)
  skeys = jax.random.split(jax.random.key(11), 3)
  # Sampled params (the batch of the sampling test, its compilation reused), first three.
  ps = jax.tree.map(lambda a: a[:3], _sample_blur_batch(jax.random.split(jax.random.key(0), 400)))
  run = lambda k, p: blur_cortex.apply_blur_cortex(k, x, p, cfg, region)
  batch = np.asarray(jax.jit(jax.vmap(run))(skeys, ps))
  for i in range(3):
    p = element(ps, i)
    single = np.asarray(_blur(skeys[i], x, p, cfg, region))
    np.testing.assert_allclose(batch[i], single, atol=1e-5)
  assert np.abs(batch[0] - batch[2]).max() > 1e-3  # other keys, other blobs


# ---------------------------------------------------------------------------------------
# Boundaries


def test_sample_boundary_and_fixing():
  cfg = boundary.BoundaryConfig(prob=1.0, enabled=True)
  p = jax.vmap(lambda k: boundary.sample_boundary(k, cfg))(jax.random.split(jax.random.key(0), 400))
  for name in ("applied", "no_mask", "halo", "fuzzy"):
    assert p[name].dtype == jnp.bool_
  assert np.asarray(p["applied"]).all()
  for name in ("no_mask", "halo", "fuzzy"):
    assert 0.4 < np.asarray(p[name]).mean() < 0.6
  r = np.asarray(p["halo_radius"])
  assert r.dtype == np.int32 and r.min() == 5 and r.max() == 14
  w, j = np.asarray(p["fuzzy_width"]), np.asarray(p["fuzzy_jitter"])
  assert w.min() >= 2.0 and w.max() <= 10.0 and j.min() >= 0.0 and j.max() <= 3.0
  f = boundary.sample_boundary(
    jax.random.key(1),
    cfg,
    fixed={"no_mask": False, "halo": True, "halo_radius": 7, "fuzzy_width": 4.5},
  )
  assert (not bool(f["no_mask"])) and bool(f["halo"]) and int(f["halo_radius"]) == 7
  assert float(f["fuzzy_width"]) == 4.5


def test_squared_distance_and_halo_match_scipy(brain):
  fg, _, _ = brain
  small = ball(SHAPE, (5, 27, 16), 2) | ball(SHAPE, (24, 8, 3), 1)
  small[16, 16, 31] = True
  sq = jax.jit(lambda m: morphology.squared_distance(m, 14))
  dil = jax.jit(lambda m, r: morphology.dilate_ball(m, r, 14))  # traced radius: one compilation
  for mask in (fg, small):
    d = np.asarray(sq(jnp.asarray(mask)))
    edt2 = np.rint(ndimage.distance_transform_edt(~mask) ** 2)
    near = edt2 <= 14**2
    np.testing.assert_array_equal(d[near], edt2[near])
    assert (d[~near] > 14**2).all()
    np.testing.assert_array_equal(np.asarray(dil(jnp.asarray(mask), 0)), mask)
    for r in (1, 4, 6, 9):  # (r = 14: scipy takes seconds; the EDT check above covers it)
      ref = ndimage.binary_dilation(mask, structure=_ball(r))
      np.testing.assert_array_equal(np.asarray(dil(jnp.asarray(mask), r)), ref)


def _bparams(**kw):
  p = {
    "applied": True,
    "no_mask": False,
    "halo": False,
    "halo_radius": 5,
    "fuzzy": False,
    "fuzzy_width": 6.0,
    "fuzzy_jitter": 2.0,
  }
  p.update(kw)
  # Explicit dtypes (as sampled; weakly typed values would compile other programs).
  dtype = lambda k: (
    jnp.int32 if k == "halo_radius" else (jnp.float32 if k.startswith("fuzzy_") else jnp.bool_)
  )
  return {k: jnp.asarray(v, dtype(k)) for k, v in p.items()}


def test_apply_boundary_modes(brain):
  fg, _, _ = brain
  cfg = BND_CFG
  img = np.random.default_rng(3).uniform(0.1, 1, SHAPE).astype(np.float32)
  x, f = jnp.asarray(img), jnp.asarray(fg)
  key = jax.random.key(2)
  run = lambda p, k=key: np.asarray(_bnd(k, x, p, cfg, f))
  mask_of = lambda k, p: run(p, k) != 0  # the image is >= 0.1 everywhere
  # One eager call (the jitted ones below must agree with it).
  np.testing.assert_array_equal(
    np.asarray(boundary.apply_boundary(key, x, _bparams(halo=True, fuzzy=True), cfg, f)),
    run(_bparams(halo=True, fuzzy=True)),
  )
  # No mask: the input itself.
  np.testing.assert_array_equal(run(_bparams(no_mask=True, halo=True, fuzzy=True)), img)
  # Plain mask: zero outside the foreground, unchanged inside.
  np.testing.assert_array_equal(run(_bparams()), img * fg)
  # Halo: the ball dilation. (Below, ball dilations by radius r are `edt^2 <= r^2`, which
  # test_squared_distance_and_halo_match_scipy checks against binary_dilation.)
  halo = ndimage.binary_dilation(fg, structure=_ball(5))
  edt2 = np.rint(ndimage.distance_transform_edt(~fg) ** 2)
  ball_dil = lambda r: edt2 <= r * r
  np.testing.assert_array_equal(run(_bparams(halo=True)), img * halo)
  # Fuzzy: between the (halo) mask and its dilation by the largest extension, irregular.
  for use_halo, base in ((False, 0), (True, 5)):
    out = run(_bparams(halo=use_halo, fuzzy=True))
    m = out != 0
    np.testing.assert_array_equal(out, img * m)
    inner, outer = ball_dil(base), ball_dil(base + 8)
    assert (m >= inner).all() and (m <= outer).all()
    assert m.sum() > inner.sum() + 100 and m.sum() < outer.sum()
    # Not a ball dilation of any radius: the extension varies around the surface.
    for r in range(base, base + 9):
      assert (m != ball_dil(r)).any(), r
  # Another synthesis key, another fuzzy boundary.
  m2 = mask_of(jax.random.key(9), _bparams(fuzzy=True))
  m1 = mask_of(key, _bparams(fuzzy=True))
  assert (m1 != m2).any()
  # Zero extents: fuzzy reduces to the plain / halo masks.
  np.testing.assert_array_equal(
    run(_bparams(fuzzy=True, fuzzy_width=0.0, fuzzy_jitter=0.0)), img * fg
  )
  np.testing.assert_array_equal(
    run(_bparams(halo=True, fuzzy=True, fuzzy_width=0.0, fuzzy_jitter=0.0)), img * halo
  )
  with pytest.raises(ValueError, match="foreground"):
    boundary.apply_boundary(key, x, _bparams(), cfg, f[:, :-1])


def test_boundary_jit_vmap(brain):
  fg, _, img = brain
  cfg = BND_CFG
  x, f = jnp.asarray(img + 0.5 * ~fg), jnp.asarray(fg)
  ps = [
    _bparams(no_mask=True),
    _bparams(halo=True, halo_radius=7),
    _bparams(fuzzy=True),
    _bparams(halo=True, fuzzy=True, fuzzy_width=3.0),
  ]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *ps)
  skeys = jax.random.split(jax.random.key(4), 4)
  run = lambda k, p: boundary.apply_boundary(k, x, p, cfg, f)
  vrun = jax.jit(jax.vmap(run))
  batch = np.asarray(vrun(skeys, stacked))
  for i, p in enumerate(ps):
    single = np.asarray(_bnd(skeys[i], x, p, cfg, f))
    np.testing.assert_array_equal(batch[i], single)
    assert np.isfinite(single).all() and single.dtype == np.float32
  np.testing.assert_array_equal(batch[0], np.asarray(x))
  # Sampled params go straight in (a batch of keys, vmapped).
  pk = jax.random.split(jax.random.key(5), 4)
  sp = jax.vmap(lambda k: boundary.sample_boundary(k, cfg))(pk)
  out = vrun(skeys, sp)
  assert out.shape == (4,) + SHAPE and np.isfinite(np.asarray(out)).all()
