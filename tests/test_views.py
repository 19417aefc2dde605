"""Paired contrastive views (anatomix step 2)."""

import jax
import numpy as np
from _batches import element
from _maps import boxes
from _tracing import jit_name, traced

import synthjax
from synthjax import presets
from synthjax._src import views

SHAPE = (24, 24, 24)


def _labels():
  return boxes(
    SHAPE,
    (1, (3, 4, 5), (21, 20, 19)),
    (2, (8, 8, 8), (16, 16, 16)),
    (3, (11, 6, 10), (13, 18, 14)),
  )


CFG = presets.synthseg(
  (0, 1, 2, 3),
  SHAPE,
  flip={"prob": 0.5},
  deformation={"std": (2.0, 3.0)},
  noise={"prob": 1.0, "std": (0.02, 0.05)},
)


def _single(key, p):
  return synthjax.synthesize(key, p, _labels(), CFG)


def test_shared_spatial_views_are_aligned_with_independent_appearance():
  key = jax.random.key(0)
  p = synthjax.sample_view_params(key, CFG)
  for stage in views.SPATIAL_STAGES:
    for name, a in p[stage].items():
      np.testing.assert_array_equal(a[0], a[1], err_msg=f"{stage}.{name}")
  assert not np.allclose(p["gmm"]["means"][0], p["gmm"]["means"][1])
  images, segs = synthjax.synthesize_views(jax.random.key(1), p, _labels(), CFG)
  assert images.shape == (2,) + SHAPE and segs.shape == (2,) + SHAPE
  np.testing.assert_array_equal(segs[0], segs[1])
  assert np.abs(np.asarray(images[0] - images[1])).mean() > 0.01
  k0, _ = jax.random.split(jax.random.key(1), 2)
  img0, seg0 = _single(k0, jax.tree.map(lambda a: a[0], p))
  np.testing.assert_allclose(images[0], img0, atol=1e-5)
  np.testing.assert_array_equal(segs[0], seg0)


def test_shared_deformation_realisation_even_with_the_same_params():
  # Same params in both views: only the appearance realisations (noise) differ.
  p = synthjax.sample_view_params(jax.random.key(2), CFG)
  p = jax.tree.map(lambda a: a.at[1].set(a[0]), p)
  images, segs = synthjax.synthesize_views(jax.random.key(3), p, _labels(), CFG)
  np.testing.assert_array_equal(segs[0], segs[1])
  assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))


def test_independent_spatial_views_match_single_samples():
  p = synthjax.sample_view_params(jax.random.key(4), CFG, shared_spatial=False)
  assert not np.allclose(p["affine"]["rotation"][0], p["affine"]["rotation"][1])
  images, segs = synthjax.synthesize_views(
    jax.random.key(5), p, _labels(), CFG, shared_spatial=False
  )
  keys = jax.random.split(jax.random.key(5), 2)
  for i in range(2):
    img, seg = _single(keys[i], element(p, i))
    np.testing.assert_allclose(images[i], img, atol=1e-5)
    np.testing.assert_array_equal(segs[i], seg)
  assert not np.array_equal(np.asarray(segs[0]), np.asarray(segs[1]))


def test_views_replay_bitwise_and_do_not_recompile():
  p = synthjax.sample_view_params(jax.random.key(6), CFG, fixed={"flip": {"applied": True}})
  assert np.asarray(p["flip"]["applied"]).all()
  a = synthjax.synthesize_views(jax.random.key(7), p, _labels(), CFG)
  q = synthjax.params_from_json(synthjax.params_to_json(p), CFG)
  b = synthjax.synthesize_views(jax.random.key(7), q, _labels(), CFG)
  np.testing.assert_array_equal(a[0], b[0])
  p_9 = synthjax.sample_view_params(jax.random.key(9), CFG)
  with traced() as seen:
    synthjax.synthesize_views(jax.random.key(8), p_9, _labels() % 3, CFG)
  assert seen[jit_name(views._views_jit)] == 0, seen
