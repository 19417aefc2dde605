"""The size convention: `scaling` scales the sampling grid (anatomy at 1/s), `object_size`
scales the anatomy (at f); checked against the closed-form volume ratios."""

import jax
import numpy as np
import pytest
from _maps import nested_balls

import synthjax

SHAPE = (48, 48, 48)


def _ball(radius):
  return nested_balls(SHAPE, (radius,))


def _config(**affine):
  # Sizes are read from the segmentation: the image stages after the label Gaussians are
  # off, so that each program compiles in less time.
  cfg = synthjax.presets.synthseg(
    (0, 1),
    SHAPE,
    (1.0, 1.0, 1.0),
    bias={"enabled": False},
    resolution={"enabled": False},
    gamma={"enabled": False},
  )
  return cfg.replace(affine=affine) if affine else cfg


def _fixed(scaling=1.0, **extra):
  return {
    "affine": {
      "applied": True,
      "rotation": [0.0] * 3,
      "shear": [0.0] * 6,
      "translation": [0.0] * 3,
      "scaling": [scaling] * 3,
      **extra,
    },
    "deformation": {"applied": False},
    "flip": {"applied": False},
    "crop": {"position": [0.5, 0.5, 0.5]},
  }


@pytest.mark.parametrize(
  "scaling,size", [(1.25, None), (0.8, None), (1.0, 0.5), (1.0, 1.1), (1.25, 0.8)]
)
def test_rendered_volume_follows_the_closed_form(scaling, size):
  labels = _ball(14.0)
  cfg = _config(object_size=(0.5, 1.1)) if size is not None else _config()
  extra = {"object_size": size} if size is not None else {}
  params = synthjax.sample_params(jax.random.key(0), cfg, fixed=_fixed(scaling, **extra))
  _, seg = synthjax.synthesize(jax.random.key(1), params, labels, cfg)
  factor = (size if size is not None else 1.0) / scaling  # linear size of the anatomy
  ratio = (np.asarray(seg) == 1).sum() / (labels == 1).sum()
  assert ratio == pytest.approx(factor**3, rel=0.06)


def test_object_size_is_drawn_in_range_recorded_and_replayed():
  cfg = _config(object_size=(0.5, 1.1))
  keys = jax.random.split(jax.random.key(3), 256)
  batch = synthjax.sample_params(keys, cfg)
  sizes = np.asarray(batch["affine"]["object_size"])
  assert sizes.shape == (256,) and sizes.min() >= 0.5 and sizes.max() <= 1.1
  assert abs(sizes.mean() - 0.8) < 0.04  # uniform on [0.5, 1.1]
  one = jax.tree.map(lambda x: x[0], batch)
  again = synthjax.params_from_json(synthjax.params_to_json(one), cfg)
  assert float(again["affine"]["object_size"]) == float(sizes[0])
  labels = _ball(10.0)
  a, _ = synthjax.synthesize(jax.random.key(4), one, labels, cfg)
  b, _ = synthjax.synthesize(jax.random.key(4), again, labels, cfg)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  render = jax.jit(jax.vmap(lambda k, p: synthjax.synthesize(k, p, labels, cfg)[1]))
  segs = np.asarray(
    render(jax.random.split(jax.random.key(5), 4), jax.tree.map(lambda x: x[:4], batch))
  )
  _, seg0 = synthjax.synthesize(jax.random.split(jax.random.key(5), 4)[0], one, labels, cfg)
  np.testing.assert_array_equal(segs[0], np.asarray(seg0))


def test_configs_without_object_size_keep_their_params_and_refuse_fixing_it():
  cfg = _config()
  params = synthjax.sample_params(jax.random.key(0), cfg)
  assert "object_size" not in params["affine"]
  with pytest.raises(ValueError, match="object_size"):
    synthjax.sample_params(jax.random.key(0), cfg, fixed={"affine": {"object_size": 0.5}})
  with pytest.raises(ValueError, match="object_size must be positive"):
    synthjax.AffineConfig(object_size=(0.0, 1.0))
  with pytest.raises(ValueError, match="object_size"):
    synthjax.AffineConfig(object_size=(1.2, 0.5))
