"""Multi-scale noise, FetalSynthGen's structural noise and anatomix's texture.

The noise field is compared with a numpy cascade (align-corners linear interpolation along
each axis), its statistics (mean, normalisation, correlation at a lag growing with the
number of scales) are checked on 32^3 volumes, and the blob mask with a direct numpy sum
of 3-D Gaussians. The stages are checked for identity (not applied, zero strength, empty
region, background), closed forms, fixing, and jit / vmap agreement.
"""

import functools

import _maps as maps
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _batches import element
from _maps import boxes
from _tracing import traced

from synthjax._src.ops import fields, rng
from synthjax._src.stages import struct_noise, texture

SHAPE = (32, 32, 32)
ODD = (24, 28, 33)  # distinct sizes, so an axis mix-up cannot pass


# Jitted once per static configuration: eager calls would retrace the stages' `lax.cond`
# on every call.
noise = jax.jit(
  fields.multiscale_noise, static_argnums=(1, 3), static_argnames=("finest", "normalize")
)
struct = jax.jit(struct_noise.apply_struct_noise, static_argnums=3)
textured = jax.jit(texture.apply_texture, static_argnums=3, static_argnames="background_index")
blobs = jax.jit(struct_noise.gaussian_blobs, static_argnums=0)
voxels = jax.jit(struct_noise.random_voxels, static_argnums=2)
sample_sn = jax.jit(struct_noise.sample_struct_noise, static_argnums=1)
sample_tx = jax.jit(texture.sample_texture, static_argnums=(1, 2))


def lag_corr(f, lag=4):
  """Mean correlation between voxels `lag` apart, over the three axes."""
  f = np.asarray(f, np.float64)
  out = []
  for a in range(3):
    x = np.take(f, np.arange(f.shape[a] - lag), axis=a).ravel()
    y = np.take(f, np.arange(lag, f.shape[a]), axis=a).ravel()
    out.append(np.corrcoef(x, y)[0, 1])
  return float(np.mean(out))


def np_resize(x, shape):
  """Align-corners linear resize along every axis (numpy reference)."""
  x = np.asarray(x, np.float64)
  for a, n_out in enumerate(shape):
    n_in = x.shape[a]
    t = np.arange(n_out) * ((n_in - 1) / max(n_out - 1, 1))
    x = np.apply_along_axis(functools.partial(np.interp, t, np.arange(n_in)), a, x)
  return x


def np_multiscale(key, shape, num_scales, max_scales, finest=1, weights=None):
  """The cascade written out in numpy (level noise drawn as the module does)."""
  grids = [
    tuple(max(2, int(np.ceil(n / 2 ** (finest + i)))) for n in shape) for i in range(max_scales)
  ]
  offsets = np.cumsum([0] + [np.prod(g) for g in grids])
  flat = np.asarray(rng.voxel_normal(key, (int(offsets[-1]),)), np.float64)
  acc = None
  for i in reversed(range(max_scales)):
    grid = grids[i]
    level = flat[offsets[i] : offsets[i + 1]].reshape(grid)
    if weights is not None:
      level = level * weights[i]
    if i >= num_scales:
      level = level * 0
    acc = level if acc is None else np_resize(acc, grid) + level
  return np_resize(acc, shape)


def np_blobs(shape, centres, sigmas, active):
  grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float64)
  out = np.zeros(shape)
  for c, s, a in zip(centres, sigmas, active):
    if a:
      out += np.exp(-np.sum((grid - np.asarray(c, np.float64)) ** 2, -1) / (2 * s**2))
  return np.clip(out, 0, 1)


def struct_params(applied=True, std=0.3, num_blobs=3, num_stages=3, sigmas=None, slots=14):
  if sigmas is None:
    sigmas = np.full(slots, 6.0, np.float32)
  return {
    "applied": jnp.asarray(applied),
    "std": jnp.asarray(std, jnp.float32),
    "num_blobs": jnp.asarray(num_blobs, jnp.int32),
    "num_stages": jnp.asarray(num_stages, jnp.int32),
    "sigmas": jnp.asarray(sigmas, jnp.float32),
  }


def smooth_image(shape=SHAPE, seed=0):
  return maps.smooth_image(shape, seed, core=False)


def box_region(shape=SHAPE, lo=(6, 18, 10), hi=(12, 26, 15)):
  m = np.zeros(shape, bool)
  m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
  return m


# ---------------------------------------------------------------------------------------
# Multi-scale noise


def test_noise_matches_numpy_cascade_on_odd_shape():
  key = jax.random.key(3)
  w = np.array([0.5, 1.0, 2.0, 0.25], np.float32)
  got = noise(key, ODD, 3, 4, finest=1, weights=w, normalize=None)
  want = np_multiscale(key, ODD, 3, 4, finest=1, weights=w)
  assert got.shape == ODD and got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)
  # finest=0 puts the finest level on the full grid (no final interpolation).
  got0 = noise(key, ODD, 2, 2, finest=0, normalize=None)
  np.testing.assert_allclose(np.asarray(got0), np_multiscale(key, ODD, 2, 2, finest=0), atol=1e-5)


def test_noise_normalisation():
  key = jax.random.key(0)
  w = np.ones(5, np.float32)
  f = np.asarray(noise(key, ODD, 3, 5, weights=w, normalize="max"))
  assert np.isfinite(f).all()
  assert np.abs(f).max() == pytest.approx(1.0, abs=1e-6)
  g = np.asarray(noise(key, ODD, 3, 5, weights=w, normalize="std"))
  assert np.sqrt(np.mean(g.astype(np.float64) ** 2)) == pytest.approx(1.0, abs=1e-5)
  raw = np.asarray(noise(key, ODD, 3, 5, weights=w, normalize=None))
  np.testing.assert_allclose(f, raw / np.abs(raw).max(), atol=1e-6)
  # Normalising only rescales: the three are proportional.
  np.testing.assert_allclose(g, raw / np.sqrt(np.mean(raw.astype(np.float64) ** 2)), atol=1e-5)
  # No active scale, or all weights zero: an all-zero field, not NaN.
  for z in (
    noise(key, ODD, 0, 5, weights=w, normalize="max"),
    noise(key, ODD, 3, 5, weights=0 * w, normalize="std"),
  ):
    assert np.all(np.asarray(z) == 0)
  with pytest.raises(ValueError, match="normalize"):
    fields.multiscale_noise(key, SHAPE, 1, 1, normalize="l2")
  with pytest.raises(ValueError, match="max_scales"):
    fields.multiscale_noise(key, SHAPE, 1, 0)


def test_noise_mean_zero_and_correlation_grows_with_scales():
  keys = jax.random.split(jax.random.key(7), 6)
  draw = jax.jit(
    jax.vmap(
      lambda k, n: fields.multiscale_noise(k, SHAPE, n, 4, normalize="std"), in_axes=(0, None)
    )
  )
  corr, means = [], []
  for n in (1, 2, 3, 4):
    drawn = np.asarray(draw(keys, n))
    means.append(drawn.mean())
    corr.append(np.mean([lag_corr(f) for f in drawn]))
  # Unit-std fields: the pooled mean is near 0 (coarse scales make single means vary).
  assert abs(means[0]) < 0.05 and all(abs(m) < 0.3 for m in means)
  # Coarser scales add long-range structure: the lag-4 correlation increases with each one.
  assert corr[0] < 0.15
  assert all(b > a + 0.04 for a, b in zip(corr, corr[1:])), corr


def test_masked_scales_equal_fewer_scales():
  key = jax.random.key(11)
  w = np.array([0.3, 0.9, 0.6, 0.2, 1.0], np.float32)
  # The count is traced: one program for max_scales=5 serves every count. It agrees with
  # the programs drawn with fewer levels up to float32 rounding (bitwise in eager mode;
  # compiled programs may fuse the last interpolation differently).
  for n in (1, 2, 4):
    a = noise(key, ODD, n, 5, weights=w)
    b = noise(key, ODD, n, n, weights=w[:n])
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, err_msg=str(n))
  c = noise(key, ODD, 3, 5, weights=w)
  assert np.abs(np.asarray(c) - np.asarray(noise(key, ODD, 2, 5, weights=w))).max() > 0.05


# ---------------------------------------------------------------------------------------
# Structural noise


def test_gaussian_blobs_match_numpy():
  centres = np.array([[3, 20, 7], [30, 2, 16], [12, 12, 12], [0, 0, 0]], np.int32)
  sigmas = np.array([4.0, 7.5, 2.0, 30.0], np.float32)
  active = np.array([True, True, True, False])
  got = blobs(ODD, jnp.asarray(centres), jnp.asarray(sigmas), jnp.asarray(active))
  want = np_blobs(ODD, centres, sigmas, active)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)
  # Overlapping wide blobs saturate at 1 (FetalSynthGen clamps the sum).
  wide = blobs(SHAPE, jnp.full((14, 3), 16, jnp.int32), jnp.full(14, 20.0), jnp.arange(14) < 3)
  assert float(wide.max()) == 1.0 and float(wide.min()) > 0


def test_random_voxels_lie_in_region_and_cover_it():
  region = box_region(lo=(2, 3, 4), hi=(4, 5, 6))  # 8 voxels
  coords, nonempty = voxels(jax.random.key(0), jnp.asarray(region), 400)
  coords = np.asarray(coords)
  assert bool(nonempty) and coords.shape == (400, 3) and coords.dtype == np.int32
  assert region[tuple(coords.T)].all()
  hits = {tuple(c) for c in coords}
  assert hits == {tuple(c) for c in np.argwhere(region)}  # every voxel drawn
  counts = np.unique(coords, axis=0, return_counts=True)[1]
  assert counts.min() > 25 and counts.max() < 80  # ~50 each: uniform
  _, empty = voxels(jax.random.key(0), jnp.zeros(SHAPE, bool), 14)
  assert not bool(empty)


def test_struct_noise_blob_centred_in_region():
  region = box_region()
  for seed in range(4):
    key = jax.random.key(seed)
    _, k_centres = jax.random.split(key)
    centres, _ = voxels(k_centres, jnp.asarray(region), 14)
    mask = blobs(SHAPE, centres, jnp.full(14, 3.0), jnp.arange(14) < 1)
    assert region[np.unravel_index(int(jnp.argmax(mask)), SHAPE)]
    # The stage's change is confined to the blob: nothing far from the region moves.
    img = smooth_image()
    p = struct_params(num_blobs=1, sigmas=np.full(14, 1.5, np.float32))
    out = np.asarray(
      struct(key, jnp.asarray(img), p, struct_noise.StructNoiseConfig(), jnp.asarray(region))
    )
    changed = np.abs(out - img) > 1e-6
    assert changed.any()
    c = np.asarray(centres[0])
    dist = np.sqrt(((np.argwhere(changed) - c) ** 2).sum(-1))
    assert dist.max() < 10 * 1.5


def test_struct_noise_closed_form():
  cfg = struct_noise.StructNoiseConfig()
  key = jax.random.key(5)
  img = smooth_image()
  region = box_region()
  p = struct_params(
    std=0.35, num_blobs=4, num_stages=2, sigmas=np.linspace(3, 9, 14).astype(np.float32)
  )
  out = np.asarray(struct(key, jnp.asarray(img), p, cfg, jnp.asarray(region)))
  k_noise, k_centres = jax.random.split(key)
  raw = np_multiscale(k_noise, SHAPE, 2, cfg.num_stages[1])
  noise = raw / np.abs(raw).max()
  noisy = np.clip(img + 0.35 * noise, 0, 2 * img.max())
  centres = np.asarray(voxels(k_centres, jnp.asarray(region), 14)[0])
  mask = np_blobs(SHAPE, centres, np.linspace(3, 9, 14), np.arange(14) < 4)
  np.testing.assert_allclose(out, mask * noisy + (1 - mask) * img, atol=1e-5)
  assert out.min() >= 0 and out.max() <= 2 * img.max() + 1e-6


def test_struct_noise_identities():
  cfg = struct_noise.StructNoiseConfig()
  img = jnp.asarray(smooth_image())
  region = jnp.asarray(box_region())
  key = jax.random.key(1)
  empty = struct(key, img, struct_params(), cfg, jnp.zeros(SHAPE, bool))
  assert np.array_equal(np.asarray(empty), np.asarray(img))
  no_blob = struct(key, img, struct_params(num_blobs=0), cfg, region)
  assert np.array_equal(np.asarray(no_blob), np.asarray(img))
  zero = struct(key, img, struct_params(std=0.0), cfg, region)
  np.testing.assert_allclose(np.asarray(zero), np.asarray(img), atol=1e-6)
  # A fixed zero blob width changes only the centre voxels (no NaN).
  point = np.asarray(struct(key, img, struct_params(sigmas=np.zeros(14, np.float32)), cfg, region))
  assert np.isfinite(point).all()
  changed = np.argwhere(point != np.asarray(img))
  assert 0 < len(changed) <= 3 and np.asarray(region)[tuple(changed.T)].all()


def test_sample_struct_noise_ranges_and_fixing():
  cfg = struct_noise.StructNoiseConfig(prob=0.5, enabled=True)
  ps = jax.jit(jax.vmap(lambda k: struct_noise.sample_struct_noise(k, cfg)))(
    jax.random.split(jax.random.key(0), 200)
  )
  assert ps["sigmas"].shape == (200, 14) and ps["sigmas"].dtype == jnp.float32
  assert ps["num_blobs"].dtype == jnp.int32 and ps["applied"].dtype == jnp.bool_
  s = np.asarray(ps["sigmas"])
  assert s.min() >= 1 and s.max() <= 40 and abs(s.mean() - 25) < 0.5 and abs(s.std() - 5) < 0.5
  nb, ns = np.asarray(ps["num_blobs"]), np.asarray(ps["num_stages"])
  assert set(nb) == set(range(5, 15)) and set(ns) == {1, 2, 3, 4}
  std = np.asarray(ps["std"])
  assert std.min() >= 0.2 and std.max() <= 0.4
  assert 0.35 < np.asarray(ps["applied"]).mean() < 0.65
  fixed = {"applied": True, "std": 0.1, "num_blobs": 2, "sigmas": 4.0}
  p = sample_sn(jax.random.key(1), cfg, fixed)
  assert bool(p["applied"]) and float(p["std"]) == pytest.approx(0.1)
  assert int(p["num_blobs"]) == 2 and np.all(np.asarray(p["sigmas"]) == 4.0)
  q = sample_sn(jax.random.key(1), cfg)
  assert int(p["num_stages"]) == int(q["num_stages"])  # unfixed draws are unchanged
  with pytest.raises(ValueError, match="sigmas"):
    sample_sn(jax.random.key(1), cfg, {"sigmas": np.ones(3)})
  assert not bool(sample_sn(jax.random.key(1), struct_noise.StructNoiseConfig())["applied"])


def test_struct_noise_jit_vmap_match_single_calls():
  sampling = struct_noise.StructNoiseConfig(prob=0.7, enabled=True)
  cfg = struct_noise.StructNoiseConfig()  # same static shapes: shares the compiled program
  img = jnp.asarray(smooth_image())
  region = jnp.asarray(box_region())
  keys = jax.random.split(jax.random.key(2), 3)
  ps = jax.jit(jax.vmap(lambda k: struct_noise.sample_struct_noise(k, sampling)))(keys)
  ps["sigmas"] = ps["sigmas"] / 4  # blobs smaller than the volume
  fn = lambda k, p: struct(k, img, p, cfg, region)
  batch = np.asarray(jax.jit(jax.vmap(fn))(keys, ps))
  for i in range(3):
    p = element(ps, i)
    single = np.asarray(fn(keys[i], p))
    np.testing.assert_allclose(batch[i], single, atol=1e-5)
    if i == 0:  # one eager call
      eager = struct_noise.apply_struct_noise(keys[i], img, p, cfg, region)
      np.testing.assert_allclose(np.asarray(eager), single, atol=1e-6)
  assert np.abs(batch[0] - np.asarray(img)).max() > 0.01


def test_region_mask():
  labels = jnp.asarray(np.arange(27).reshape(3, 3, 3) % 5)
  m = np.asarray(struct_noise.region_mask(labels, (2, 41)))
  assert np.array_equal(m, np.asarray(labels) == 2)


# ---------------------------------------------------------------------------------------
# Texture


def label_map(shape=SHAPE):
  return boxes(shape, (1, (4, 4, 4), (28, 28, 28)), (2, (10, 10, 10), (22, 22, 22)))


def texture_params(
  applied=True, amplitude=(0.0, 0.1, 0.3), num_scales=3, weights=(1, 0.5, 0.8, 0.3)
):
  return {
    "applied": jnp.asarray(applied),
    "amplitude": jnp.asarray(amplitude, jnp.float32),
    "num_scales": jnp.asarray(num_scales, jnp.int32),
    "weights": jnp.asarray(weights, jnp.float32),
  }


def test_texture_closed_form_and_background():
  cfg = texture.TextureConfig()
  key = jax.random.key(4)
  idx = label_map()
  img = np.array([20.0, 120.0, 200.0])[idx] + np.random.default_rng(0).normal(0, 5, SHAPE)
  img = img.astype(np.float32)
  p = texture_params(amplitude=(0.2, 0.1, 0.3))
  out = np.asarray(textured(key, jnp.asarray(img), p, cfg, jnp.asarray(idx)))
  raw = np_multiscale(key, SHAPE, 3, 4, finest=2, weights=np.asarray(p["weights"]))
  noise = raw / np.sqrt(np.mean(raw**2))
  want = img * np.maximum(1 + np.array([0.2, 0.1, 0.3])[idx] * noise, 0)
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
  # The background index is left as is (exactly), the other labels are modulated.
  kept = np.asarray(textured(key, jnp.asarray(img), p, cfg, jnp.asarray(idx), background_index=0))
  assert np.array_equal(kept[idx == 0], img[idx == 0])
  np.testing.assert_allclose(kept[idx > 0], want[idx > 0], rtol=1e-5, atol=1e-4)


def test_texture_amplitude_is_modulation_std():
  # One label over the whole volume: the relative change has rms == amplitude (unit-std field).
  cfg = texture.TextureConfig()
  img = jnp.full(SHAPE, 100.0)
  out = textured(
    jax.random.key(9), img, texture_params(amplitude=(0.15,)), cfg, jnp.zeros(SHAPE, jnp.int32)
  )
  rel = np.asarray(out, np.float64) / 100.0 - 1
  assert np.sqrt(np.mean(rel**2)) == pytest.approx(0.15, rel=1e-4)
  assert lag_corr(rel, lag=2) > 0.5  # a smooth texture, not voxel noise


def test_texture_identities():
  cfg = texture.TextureConfig()
  key = jax.random.key(0)
  idx = jnp.asarray(label_map())
  img = jnp.asarray(np.random.default_rng(1).normal(100, 20, SHAPE).astype(np.float32))
  zero = textured(key, img, texture_params(amplitude=(0.0, 0.0, 0.0)), cfg, idx)
  assert np.array_equal(np.asarray(zero), np.asarray(img))
  flat = textured(key, img, texture_params(weights=(0, 0, 0, 0)), cfg, idx)
  assert np.array_equal(np.asarray(flat), np.asarray(img))
  # Label 0 has amplitude 0 in texture_params(): its voxels are untouched.
  out = np.asarray(textured(key, img, texture_params(), cfg, idx))
  mask = np.asarray(idx) == 0
  assert np.array_equal(out[mask], np.asarray(img)[mask])
  assert np.abs(out[~mask] - np.asarray(img)[~mask]).max() > 1.0


def test_sample_texture_ranges_and_fixing():
  cfg = texture.TextureConfig(prob=1.0, enabled=True, num_scales=(1, 4), amplitude=(0.05, 0.2))
  ps = jax.jit(jax.vmap(lambda k: texture.sample_texture(k, cfg, 5)))(
    jax.random.split(jax.random.key(0), 100)
  )
  assert ps["amplitude"].shape == (100, 5) and ps["weights"].shape == (100, 4)
  a = np.asarray(ps["amplitude"])
  assert a.min() >= 0.05 and a.max() <= 0.2
  assert set(np.asarray(ps["num_scales"])) == {1, 2, 3, 4}
  assert np.asarray(ps["applied"]).all()
  p = sample_tx(jax.random.key(3), cfg, 5, {"amplitude": 0.1, "num_scales": 2})
  assert np.all(np.asarray(p["amplitude"]) == np.float32(0.1)) and int(p["num_scales"]) == 2
  q = sample_tx(jax.random.key(3), cfg, 5)
  assert np.array_equal(np.asarray(p["weights"]), np.asarray(q["weights"]))
  p = sample_tx(jax.random.key(3), cfg, 5, {"amplitude": np.arange(5) / 10})
  np.testing.assert_allclose(np.asarray(p["amplitude"]), np.arange(5) / 10, atol=1e-7)
  d = texture.sample_texture(jax.random.key(3), texture.TextureConfig(), 2)  # eager
  assert not bool(d["applied"]) and d["weights"].shape == (4,)


def test_texture_jit_vmap_match_single_calls():
  sampling = texture.TextureConfig(prob=0.5, enabled=True, num_scales=(1, 4))
  cfg = texture.TextureConfig()  # same static shapes: shares the compiled program
  idx = jnp.asarray(label_map())
  img = jnp.asarray(np.random.default_rng(2).normal(100, 20, SHAPE).astype(np.float32))
  keys = jax.random.split(jax.random.key(5), 3)
  ps = jax.jit(jax.vmap(lambda k: texture.sample_texture(k, sampling, 3)))(keys)
  fn = lambda k, p: textured(k, img, p, cfg, idx, background_index=0)
  batch = np.asarray(jax.jit(jax.vmap(fn))(keys, ps))
  for i in range(3):
    p = element(ps, i)
    single = np.asarray(fn(keys[i], p))
    np.testing.assert_allclose(batch[i], single, rtol=1e-5, atol=1e-4)
    if i == 0:  # one eager call
      eager = texture.apply_texture(keys[i], img, p, cfg, idx, background_index=0)
      np.testing.assert_allclose(np.asarray(eager), single, rtol=1e-6, atol=1e-4)


# ---------------------------------------------------------------------------------------
# Config validation


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"std": (0.4, 0.2)}, r"StructNoiseConfig\.std.*\(0\.4, 0\.2\)"),
    ({"std": (-0.1, 0.2)}, r"StructNoiseConfig\.std must be non-negative"),
    ({"num_blobs": (0, 0)}, r"StructNoiseConfig\.num_blobs.*\(0, 0\)"),
    ({"num_blobs": (2.5, 4)}, r"StructNoiseConfig\.num_blobs.*integers"),
    ({"num_stages": (0, 3)}, r"StructNoiseConfig\.num_stages.*\(0, 3\)"),
    ({"sigma_mean": -1}, r"StructNoiseConfig\.sigma_mean.*-1"),
    ({"sigma_std": "a"}, r"StructNoiseConfig\.sigma_std.*'a'"),
    ({"sigma_clip": (0.0, 40.0)}, r"StructNoiseConfig\.sigma_clip must be positive"),
    ({"region_labels": (3, 1.5)}, r"StructNoiseConfig\.region_labels"),
    ({"prob": 1.5}, r"StructNoiseConfig\.prob.*1\.5"),
  ],
)
def test_struct_noise_config_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    struct_noise.StructNoiseConfig(**kwargs)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"amplitude": (-0.1, 0.2)}, r"TextureConfig\.amplitude must be non-negative"),
    ({"amplitude": (0.3, 0.2)}, r"TextureConfig\.amplitude.*\(0\.3, 0\.2\)"),
    ({"num_scales": (0, 2)}, r"TextureConfig\.num_scales.*\(0, 2\)"),
    ({"finest_scale": -1}, r"TextureConfig\.finest_scale.*-1"),
    ({"finest_scale": 1.5}, r"TextureConfig\.finest_scale.*1\.5"),
    ({"scale_weight": (-1.0, 1.0)}, r"TextureConfig\.scale_weight must be non-negative"),
    ({"prob": -0.1}, r"TextureConfig\.prob.*-0\.1"),
  ],
)
def test_texture_config_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    texture.TextureConfig(**kwargs)


def test_configs_hashable_and_normalised():
  s = struct_noise.StructNoiseConfig(num_blobs=[2, 6], region_labels=[2, 41], std=[0.1, 0.2])
  assert s.num_blobs == (2, 6) and s.region_labels == (2, 41) and s.std == (0.1, 0.2)
  assert struct_noise.StructNoiseConfig(region_labels=3).region_labels == (3,)
  t = texture.TextureConfig(num_scales=[2, 3])
  assert t.num_scales == (2, 3)
  assert hash(s) == hash(
    struct_noise.StructNoiseConfig(num_blobs=(2, 6), region_labels=(2, 41), std=(0.1, 0.2))
  )
  assert hash(t) == hash(texture.TextureConfig(num_scales=(2, 3)))
  assert t == texture.TextureConfig(num_scales=(2.0, 3.0))  # JSON's floats normalised
  assert t != texture.TextureConfig(num_scales=(2, 4))
  assert s != struct_noise.StructNoiseConfig(
    num_blobs=(2, 6), region_labels=(2, 42), std=(0.1, 0.2)
  )
  # As a static jit argument: an equal config built anew hits the compiled program, a
  # differing one compiles its own.
  fn = jax.jit(lambda x, cfg: x * cfg.num_scales[1], static_argnums=1)
  with traced() as seen:
    assert fn(1.0, t) == 3.0
    assert fn(1.0, texture.TextureConfig(num_scales=[2.0, 3.0])) == 3.0
  assert seen["<lambda>"] == 1, seen
  with traced() as seen:
    assert fn(1.0, texture.TextureConfig(num_scales=(2, 4))) == 4.0
  assert seen["<lambda>"] == 1, seen
