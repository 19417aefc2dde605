"""Numerical tests of `synthjax._src.stages.resolution` against scipy/numpy references.

References:
  * `scipy.ndimage.gaussian_filter1d(x, sigma, mode="reflect", truncate=4.0)` for
    `gaussian_matrix`, including kernels wider than the signal;
  * a numpy down/up-sampling reference built from `np.interp` for `down_up_matrix`: linear
    samples at `k * f` for `k <= floor((n - 1) / f)`, then interpolation at `i / f`;
  * the separable composition of both, per axis, for `apply_resolution`, with the sigma rule
    of SynthSeg's `blurring_sigma_for_downsampling` written out independently;
  * distribution checks (binomial / chi-square / Kolmogorov-Smirnov with fixed seeds) for
    `sample_resolution`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage, stats

from synthjax._src.config import ResolutionConfig
from synthjax._src.ops import filters
from synthjax._src.stages import resolution

# ---------------------------------------------------------------------------------------
# Reference implementations


def _down_up_reference(x, f):
  """Linear sampling of `x` every `f` voxels, then linear interpolation back (np.interp)."""
  n = x.size
  k_count = int(np.floor((n - 1) / f)) + 1
  low = np.interp(np.arange(k_count) * f, np.arange(n), x)
  return np.interp(np.arange(n) / f, np.arange(k_count), low)


def _resolution_reference(x, res, thick, blur_scale, cfg, spacing):
  """Blur with sigma = blur_factor * thickness / spacing (0.5 at native), then down/up."""
  out = np.asarray(x, np.float64)
  for a in range(3):
    ratio = thick[a] / spacing[a]
    sigma = (cfg.blur_factor * ratio if ratio > 1.0 else 0.5) * blur_scale
    out = ndimage.gaussian_filter1d(out, sigma, axis=a, mode="reflect", truncate=4.0)
    f = float(np.float32(res[a]) / np.float32(spacing[a]))
    out = np.apply_along_axis(_down_up_reference, a, out, max(f, 1.0))
  return out


def _params(applied, res, thick, blur_scale):
  return {
    "applied": jnp.asarray(applied),
    "resolution": jnp.asarray(res, jnp.float32),
    "thickness": jnp.asarray(thick, jnp.float32),
    "blur_scale": jnp.asarray(blur_scale, jnp.float32),
  }


# ---------------------------------------------------------------------------------------
# gaussian_matrix

N_GAUSS = 24
# 9.0 and 15.0 have kernels (radius 36 and 60) wider than the signal, and than twice it.
SIGMAS = (0.5, 1.3, 3.7, 9.0, 15.0)
RADIUS_MAX = int(np.floor(4.0 * max(SIGMAS) + 0.5)) + 1


def _check_gaussian(mats):
  rng = np.random.default_rng(0)
  for m, sigma in zip(mats, SIGMAS):
    x = rng.normal(size=N_GAUSS)
    ref = ndimage.gaussian_filter1d(x, sigma, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(np.asarray(m) @ x, ref, rtol=0, atol=2e-6, err_msg=f"sigma={sigma}")


def test_gaussian_matrix_matches_gaussian_filter1d_eager():
  with jax.disable_jit():
    _check_gaussian([filters.gaussian_matrix(N_GAUSS, s, RADIUS_MAX) for s in SIGMAS])


def test_gaussian_matrix_matches_gaussian_filter1d_traced_sigma():
  fn = jax.jit(lambda s: filters.gaussian_matrix(N_GAUSS, s, RADIUS_MAX))
  _check_gaussian([fn(jnp.float32(s)) for s in SIGMAS])  # one compilation, traced sigma
  _check_gaussian(jax.vmap(fn)(jnp.asarray(SIGMAS, jnp.float32)))


# ---------------------------------------------------------------------------------------
# down_up_matrix

FACTORS = (1.0, 2.0, 3.3, 2.5, 1.7, 7.9, 40.0)  # 40 > n: a single low-resolution sample
SIZES = (16, 17, 34)  # 34 with 3.3: (n - 1) / f is an integer up to round-off


def _check_down_up(n, mats):
  rng = np.random.default_rng(n)
  for m, f in zip(mats, FACTORS):
    m = np.asarray(m)
    x = rng.normal(size=n)
    ref = _down_up_reference(x, float(np.float32(f)))
    np.testing.assert_allclose(m @ x, ref, rtol=0, atol=2e-5, err_msg=f"n={n}, f={f}")
    if f == 1.0:
      np.testing.assert_array_equal(m, np.eye(n))
    if f > n:
      np.testing.assert_allclose(m @ x, np.full(n, x[0]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", SIZES)
def test_down_up_matrix_matches_interp_reference(n):
  if n == SIZES[0]:
    with jax.disable_jit():
      _check_down_up(n, [resolution.down_up_matrix(n, f) for f in FACTORS])
  fn = jax.jit(lambda f: resolution.down_up_matrix(n, f))
  _check_down_up(n, [fn(jnp.float32(f)) for f in FACTORS])
  _check_down_up(n, jax.vmap(fn)(jnp.asarray(FACTORS, jnp.float32)))


# ---------------------------------------------------------------------------------------
# apply_resolution

SHAPE = (20, 18, 16)
SPACING = (1.0, 1.0, 1.5)
CASES = [
  # resolution, thickness, blur_scale
  ((1.0, 3.0, 4.5), (1.0, 2.4, 4.0), 1.02),  # two thick axes, one native
  ((5.3, 1.0, 1.5), (3.1, 1.0, 1.5), 0.98),  # one thick axis
  ((2.2, 2.2, 2.2), (2.2, 1.6, 2.0), 1.0),  # isotropic resolution, thinner slices
]
CFG = ResolutionConfig()


def _apply(x, p):
  return resolution.apply_resolution(x, p, CFG, SPACING)


_apply_jit = jax.jit(_apply)  # one compilation for every case (params are traced)


def _run(mode, x, p):
  if mode == "eager":
    with jax.disable_jit():
      return np.asarray(_apply(jnp.asarray(x), p))
  return np.asarray(_apply_jit(jnp.asarray(x), p))


@pytest.mark.parametrize(
  "res,thick,scale,mode", [CASES[0] + ("eager",)] + [c + ("jit",) for c in CASES]
)
def test_apply_resolution_matches_separable_reference(res, thick, scale, mode):
  x = np.random.default_rng(1).normal(size=SHAPE).astype(np.float32)
  out = _run(mode, x, _params(True, res, thick, scale))
  ref = _resolution_reference(x, res, thick, scale, CFG, SPACING)
  assert np.abs(ref - x).max() > 0.1  # the operation does something measurable
  np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


def test_apply_resolution_vmap_over_params():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(3,) + SHAPE).astype(np.float32)
  cases = [CASES[0], CASES[1], CASES[1]]
  p = jax.tree.map(lambda *a: jnp.stack(a), *[_params(True, *c) for c in cases])
  out = np.asarray(jax.jit(jax.vmap(_apply))(jnp.asarray(x), p))
  for b in range(3):
    ref = _resolution_reference(x[b], *cases[b], CFG, SPACING)
    np.testing.assert_allclose(out[b], ref, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------
# sample_resolution

N_KEYS = 2000
STAT_CONFIGS = [
  pytest.param(ResolutionConfig(), (1.0, 1.0, 1.0), id="synthseg-1mm"),
  pytest.param(ResolutionConfig(prob_iso=0.4), (1.0, 1.0, 2.0), id="aniso-spacing"),
  pytest.param(
    ResolutionConfig(min_res=0.5, max_res_iso=1.5, max_res_aniso=1.5, prob=0.9),
    (0.5, 0.5, 0.5),
    id="fetal",
  ),
]


def _sample_many(cfg, spacing, fixed=None, seed=0):
  # Not jitted on purpose: op-by-op vmap reuses the compiled jax.random kernels across
  # configs, where a jit per config would compile the whole sampler each time.
  keys = jax.random.split(jax.random.key(seed), N_KEYS)
  draw = jax.vmap(lambda k: resolution.sample_resolution(k, cfg, spacing, fixed))
  return jax.tree.map(np.asarray, draw(keys))


def _binomial_ok(count, n, p, z=4.5):
  return abs(count - n * p) <= z * np.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("cfg,spacing", STAT_CONFIGS)
def test_sample_resolution_statistics(cfg, spacing):
  p = _sample_many(cfg, spacing)
  res, thick = p["resolution"].astype(np.float64), p["thickness"].astype(np.float64)
  lo = np.asarray(cfg.min_res if cfg.min_res is not None else spacing, np.float64)
  lo = np.broadcast_to(lo, (3,))
  lo_max = lo.max()
  assert res.shape == thick.shape == (N_KEYS, 3)

  # Bounds.
  assert (res >= lo - 1e-6).all()
  assert (res <= max(cfg.max_res_iso, cfg.max_res_aniso) + 1e-5).all()
  assert (thick >= lo - 1e-6).all() and (thick <= res + 1e-5).all()

  # Isotropic draws: every axis above its minimum, all equal to max(r, lo); anisotropic
  # draws: exactly one axis above its minimum. (Ties with lo have probability zero.)
  above = res > lo + 1e-6
  iso = above.all(axis=1)
  aniso = above.sum(axis=1) == 1
  assert (iso | aniso).all()
  assert _binomial_ok(iso.sum(), N_KEYS, cfg.prob_iso)
  iso_r = res[iso].max(axis=1)
  assert (iso_r <= max(cfg.max_res_iso, lo_max) + 1e-5).all()
  np.testing.assert_allclose(res[iso], np.maximum(iso_r[:, None], lo), rtol=1e-6)
  assert stats.kstest(iso_r, stats.uniform(lo_max, cfg.max_res_iso - lo_max).cdf).pvalue > 1e-3

  # The thick axis is uniform over the three axes, its value uniform on [lo_max, max].
  thick_axis = np.argmax(above[aniso], axis=1)
  counts = np.bincount(thick_axis, minlength=3)
  assert stats.chisquare(counts).pvalue > 1e-3
  aniso_r = res[aniso][np.arange(aniso.sum()), thick_axis]
  assert (aniso_r <= max(cfg.max_res_aniso, lo_max) + 1e-5).all()
  assert stats.kstest(aniso_r, stats.uniform(lo_max, cfg.max_res_aniso - lo_max).cdf).pvalue > 1e-3
  np.testing.assert_array_equal(
    res[aniso][~above[aniso]], np.broadcast_to(lo, (aniso.sum(), 3))[~above[aniso]]
  )

  # Random thickness: uniform on [lo, resolution] per axis.
  u = (thick - lo)[above] / (res - lo)[above]
  assert stats.kstest(u, "uniform").pvalue > 1e-3

  # Blur scale uniform on [1/r, r]; applied with probability cfg.prob.
  b = p["blur_scale"].astype(np.float64)
  r = cfg.blur_range
  assert (b >= 1 / r - 1e-6).all() and (b <= r + 1e-6).all()
  assert stats.kstest(b, stats.uniform(1 / r, r - 1 / r).cdf).pvalue > 1e-3
  assert _binomial_ok(p["applied"].sum(), N_KEYS, cfg.prob)


@pytest.mark.parametrize("fixed_res", [(1.0, 1.0, 5.0), (3.0, 3.0, 3.0)])
def test_sample_resolution_fixed_resolution_constrains_thickness(fixed_res):
  cfg, spacing = ResolutionConfig(), (1.0, 1.0, 1.0)
  p = _sample_many(cfg, spacing, fixed={"resolution": list(fixed_res)}, seed=1)
  res, thick = p["resolution"], p["thickness"]
  np.testing.assert_array_equal(res, np.broadcast_to(np.float32(fixed_res), res.shape))
  assert (thick >= 1.0).all() and (thick <= np.float32(fixed_res)).all()
  # Thickness is still drawn (uniform on [lo, fixed]) on the thick axes.
  thick_axes = np.asarray(fixed_res) > 1.0
  u = (thick[:, thick_axes] - 1.0) / (np.asarray(fixed_res)[thick_axes] - 1.0)
  assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3


def test_sample_resolution_fixed_thickness_and_no_random_thickness():
  spacing = (1.0, 1.0, 1.0)
  p = _sample_many(ResolutionConfig(random_thickness=False), spacing, seed=2)
  np.testing.assert_array_equal(p["thickness"], p["resolution"])
  p = _sample_many(ResolutionConfig(), spacing, fixed={"thickness": 2.0, "applied": True}, seed=3)
  np.testing.assert_array_equal(p["thickness"], np.full((N_KEYS, 3), 2.0, np.float32))
  assert p["applied"].all()
