"""Per-voxel spreads given at one voxel size and rendered at another (`noise_spacing`).

A config whose GMM and noise stds are given for 0.5 mm voxels, rendered on 2 mm voxels,
must show the spread of 4 x 4 x 4 averaged 0.5 mm voxels: the reference is the same config
rendered at 0.5 mm and block-averaged.
"""

import jax
import numpy as np
import pytest
from _batches import element
from _configs import ALL_OFF

import synthjax
from synthjax import data as sdata

FINE, COARSE = 0.5, 2.0
N = 16  # voxels per side at 2 mm


def halves(n):
  labels = np.zeros((n, n, n), np.int32)
  labels[n // 2 :] = 1
  return labels


def config(spacing, n, **kw):
  cfg = synthjax.presets.synthseg((0, 1), (n, n, n), (spacing,) * 3).replace(**ALL_OFF)
  return cfg.replace(**kw)


def render(cfg, labels, fixed, seed=0):
  params = synthjax.sample_params(jax.random.key(seed), cfg, fixed=fixed)
  image, _ = synthjax.synthesize(jax.random.key(seed + 1), params, labels, cfg)
  return np.asarray(image, np.float64)


def block_mean(x, f):
  n = x.shape[0] // f
  return x.reshape(n, f, n, f, n, f).mean(axis=(1, 3, 5))


def spread_over_contrast(image, labels):
  """Label 1's std over the difference of the two labels' means: unchanged by the min-max
  normalisation at the end of the generator."""
  a, b = image[labels == 0], image[labels == 1]
  return b.std() / (b.mean() - a.mean())


def test_voxel_std_scale_is_the_root_of_the_voxel_volume_ratio():
  cfg = config(COARSE, 8)
  assert cfg.voxel_std_scale == 1.0
  assert cfg.replace(noise_spacing=(FINE,) * 3).voxel_std_scale == pytest.approx(1 / 8)
  aniso = cfg.replace(spacing=(1.0, 1.0, 3.0), noise_spacing=(0.5, 0.5, 1.5))
  assert aniso.voxel_std_scale == pytest.approx(np.sqrt(0.375 / 3.0))
  again = synthjax.SynthConfig.from_json(aniso.replace(spacing=(1.0, 1.0, 3.0)).to_json())
  assert again.noise_spacing == (0.5, 0.5, 1.5)
  with pytest.raises(ValueError, match="noise_spacing"):
    cfg.replace(noise_spacing=(0.5, 0.0, 0.5))


@pytest.mark.parametrize("stage", ["gmm", "noise"])
def test_coarse_render_has_the_spread_of_averaged_fine_voxels(stage):
  if stage == "gmm":  # label 1's Gaussian has std 40 on a contrast of 100
    kw = {}
    fixed = {"gmm": {"means": [50.0, 150.0], "stds": [0.0, 40.0], "background_zero": False}}
  else:  # the labels are exactly 0 and 1 after normalisation, then noise of std 0.2
    kw = {"noise": {"enabled": True, "prob": 1.0, "std": (0.2, 0.2)}}
    fixed = {"gmm": {"means": [50.0, 150.0], "stds": [0.0, 0.0], "background_zero": False}}
  fine_labels, coarse_labels = halves(N * 4), halves(N)
  fine = render(config(FINE, N * 4, **kw), fine_labels, fixed)
  want = spread_over_contrast(block_mean(fine, 4), coarse_labels)
  coarse_cfg = config(COARSE, N, noise_spacing=(FINE,) * 3, **kw)
  got = [
    spread_over_contrast(render(coarse_cfg, coarse_labels, fixed, seed=s), coarse_labels)
    for s in range(4)
  ]
  # 2048 voxels per estimate: the std's relative standard error is about 1.6 %.
  assert np.mean(got) == pytest.approx(want, rel=0.05)
  # Unscaled, the coarse render is 8 times as spread (the ratio of sqrt(64)).
  plain = spread_over_contrast(render(config(COARSE, N, **kw), coarse_labels, fixed), coarse_labels)
  assert plain == pytest.approx(8 * want, rel=0.08)
  # Under vmap, a batch of configs' samples renders as the single calls do.
  keys = jax.random.split(jax.random.key(7), 2)
  batch = synthjax.sample_params(keys, coarse_cfg, fixed=fixed)
  images, _ = jax.vmap(lambda k, p: synthjax.synthesize(k, p, coarse_labels, coarse_cfg))(
    keys, batch
  )
  for i in range(2):
    one = element(batch, i)
    single, _ = synthjax.synthesize(keys[i], one, coarse_labels, coarse_cfg)
    np.testing.assert_allclose(np.asarray(images[i]), np.asarray(single), atol=1e-5)


def test_a_batch_of_one_renders_as_the_single_call():
  """`synthesize_batch` renders a batch of one, inside the caller's jit, as the single call
  renders it: bit for bit."""
  labels = halves(N)
  cfg = synthjax.presets.fetal((0, 1), (N, N, N), (COARSE,) * 3)
  batch = {"labels": labels[None], "key": sdata.sample_key_data(0, 3)[None]}
  images, segs, params = jax.jit(lambda b: sdata.synthesize_batch(b, cfg))(batch)
  synth_key = jax.random.split(jax.random.wrap_key_data(batch["key"][0]))[1]
  one = jax.tree.map(lambda x: x[0], params)
  image, seg = synthjax.synthesize(synth_key, one, labels, cfg)
  assert images.shape == (1, N, N, N) and segs.shape == (1, N, N, N)
  np.testing.assert_array_equal(np.asarray(images[0]), np.asarray(image))
  np.testing.assert_array_equal(np.asarray(segs[0]), np.asarray(seg))
