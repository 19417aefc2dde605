"""Gradients of the rendered image with respect to the params.

The intensity params' gradients are checked against central finite differences in float64
(`jax_enable_x64` is switched on inside these tests only, and the params are passed as
float64 arrays, so the image is rendered in float64). Params that only move the labels
(nearest-neighbour resampling), grid sizes, indices and masks get a gradient of exactly
zero by construction, never NaN.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _batches import element
from _maps import three_labels

import synthjax

N = 16
# Spatial stages on (their params have zero gradients), every stage on the intensity path
# applied. The resolution is fixed away from the kinks at the native spacing (a factor of
# 1 or a thickness equal to the spacing switches to the identity), where a central
# difference straddles two branches.
CONFIG = synthjax.presets.synthseg((0, 1, 2, 3), (N, N, N), (1.0, 1.0, 1.0)).replace(
  affine={"prob": 1.0, "object_size": (0.8, 1.2)},
  deformation={"prob": 1.0},
  flip={"enabled": False},
  bias={"prob": 1.0},
  gamma={"prob": 1.0},
  resolution={"prob": 1.0},
  noise={"prob": 1.0, "std": (0.02, 0.05)},
  rician={"enabled": True, "prob": 1.0},
  texture={"enabled": True, "prob": 1.0},
  spike={"enabled": True, "prob": 1.0},
  ghosting={"enabled": True, "prob": 1.0},
  gibbs={"enabled": True, "prob": 1.0},
  subclusters={"enabled": True, "prob": 1.0, "num_subclusters": (2, 3)},
  struct_noise={
    "enabled": True,
    "prob": 1.0,
    "region_labels": (2,),
    "sigma_mean": 2.0,
    "sigma_clip": (1.0, 4.0),
  },
)
# The background keeps its Gaussian, so that the label GMM's means reach the image where
# the sub-label classes do not apply.
FIXED = {
  "resolution": {"resolution": [2.3, 1.7, 3.1], "thickness": [2.0, 1.5, 2.8]},
  "gmm": {"background_zero": False},
}

# Every float param on the intensity path: its gradient is checked against finite
# differences and must not vanish.
INTENSITY = [
  ("gmm", "means"),
  ("gmm", "stds"),
  ("subclusters", "means"),
  ("subclusters", "stds"),
  ("bias", "std"),
  ("gamma", "log_gamma"),
  ("resolution", "resolution"),
  ("resolution", "thickness"),
  ("resolution", "blur_scale"),
  ("noise", "std"),
  ("rician", "std"),
  ("texture", "amplitude"),
  ("texture", "weights"),
  ("spike", "intensity"),
  ("ghosting", "intensity"),
  ("struct_noise", "std"),
  ("struct_noise", "sigmas"),
]
# Zero by construction: the labels are resampled by nearest neighbour (affine,
# deformation, crop), grid sizes are rounded (`grid_scale`), spikes sit at rounded
# positions, and Gibbs ringing keeps a 0/1 band of frequencies.
ZERO = [
  ("affine", "rotation"),
  ("affine", "scaling"),
  ("affine", "shear"),
  ("affine", "translation"),
  ("affine", "object_size"),
  ("deformation", "std"),
  ("deformation", "grid_scale"),
  ("crop", "position"),
  ("bias", "grid_scale"),
  ("subclusters", "grid_scale"),
  ("spike", "positions"),
  ("gibbs", "alpha"),
]


def _labels():
  return three_labels(N)


def _split(params):
  """(float entries, the others): only the float ones are differentiated."""
  floats = {
    s: {n: v for n, v in e.items() if jnp.issubdtype(v.dtype, jnp.floating)}
    for s, e in params.items()
  }
  rest = {
    s: {n: v for n, v in e.items() if not jnp.issubdtype(v.dtype, jnp.floating)}
    for s, e in params.items()
  }
  return floats, rest


def _loss_fn(rest, key, weights):
  """A scalar of the image: its inner product with fixed random weights."""
  labels = _labels()

  def loss(floats):
    params = {s: {**floats[s], **rest[s]} for s in floats}
    image, _ = synthjax.synthesize(key, params, labels, CONFIG)
    return jnp.sum(image * weights)

  return loss


def _central_difference(loss, floats, stage, name, index, h):
  def at(delta):
    entry = floats[stage][name]
    moved = {
      **floats,
      stage: {**floats[stage], name: entry.at[np.unravel_index(index, entry.shape)].add(delta)},
    }
    return float(loss(moved))

  return (at(h) - at(-h)) / (2 * h)


@pytest.fixture(scope="module")
def float64_case():
  """The loss, its float params and their gradient in float64, and the compiled gradient
  (a function of the float params; the key, weights and other params are fixed)."""
  with jax.enable_x64(True):
    params = synthjax.sample_params(jax.random.key(0), CONFIG, fixed=FIXED)
    params = jax.tree.map(
      lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, params
    )
    floats, rest = _split(params)
    weights = np.random.default_rng(0).normal(size=(N, N, N))
    loss = jax.jit(_loss_fn(rest, jax.random.key(1), jnp.asarray(weights)))
    grad = jax.jit(jax.grad(loss))
    grads = grad(floats)
  return loss, floats, grads, {"grad": grad, "rest": rest, "weights": weights, "params": params}


def test_the_image_is_rendered_in_float64_from_float64_params(float64_case):
  wide = float64_case[3]["params"]
  with jax.enable_x64(True):
    params = jax.tree.map(
      lambda x: x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x, wide
    )
    image64, seg64 = synthjax.synthesize(jax.random.key(1), wide, _labels(), CONFIG)
    image32, seg32 = synthjax.synthesize(jax.random.key(1), params, _labels(), CONFIG)
  assert image64.dtype == jnp.float64 and image32.dtype == jnp.float32
  np.testing.assert_array_equal(seg64, seg32)
  # The same sample, at two precisions.
  np.testing.assert_allclose(image64, image32, atol=2e-4)


@pytest.mark.parametrize("stage,name", INTENSITY, ids=[f"{s}.{n}" for s, n in INTENSITY])
def test_intensity_gradients_match_central_differences(float64_case, stage, name):
  loss, floats, grads, _ = float64_case
  grad = np.asarray(grads[stage][name]).ravel()
  value = np.asarray(floats[stage][name]).ravel()
  assert np.all(np.isfinite(grad))
  assert np.abs(grad).max() > 1e-3, f"{stage}.{name}: no gradient reaches the image"
  with jax.enable_x64(True):
    for index in range(min(value.size, 4)):
      h = 1e-6 * max(1.0, abs(value[index]))
      fd = _central_difference(loss, floats, stage, name, index, h)
      np.testing.assert_allclose(
        grad[index], fd, rtol=1e-5, atol=1e-7, err_msg=f"{stage}.{name}[{index}]"
      )


def test_label_geometry_grid_sizes_and_masks_have_exactly_zero_gradients(float64_case):
  _, _, grads, _ = float64_case
  for stage, name in ZERO:
    grad = np.asarray(grads[stage][name])
    assert not np.isnan(grad).any(), f"{stage}.{name}"
    np.testing.assert_array_equal(grad, 0.0, err_msg=f"{stage}.{name}")


def test_float32_gradients_under_vmap_are_the_single_float64_ones(float64_case):
  """The default float32 params: per-sample gradients of a batch under `jit(vmap)` are
  finite and equal, to float32 precision, the single float64 gradients."""
  _, floats, _, case = float64_case
  # Two samples: the fixture's params, and the same with every float param 3 % larger.
  with jax.enable_x64(True):
    batch64 = jax.tree.map(lambda x: jnp.stack([x, 1.03 * x]), floats)
    single = [case["grad"](element(batch64, i)) for i in range(2)]
  batch = jax.tree.map(lambda x: np.asarray(x, np.float32), batch64)
  loss32 = _loss_fn(case["rest"], jax.random.key(1), jnp.asarray(case["weights"], jnp.float32))
  batched = jax.jit(jax.vmap(jax.grad(loss32)))(batch)
  for i in range(2):
    for stage, name in INTENSITY:
      g = np.asarray(batched[stage][name][i])
      want = np.asarray(single[i][stage][name])
      assert g.dtype == np.float32 and np.all(np.isfinite(g)), f"{stage}.{name}"
      assert np.abs(g).max() > 0, f"{stage}.{name}"
      np.testing.assert_allclose(
        g, want, rtol=2e-3, atol=2e-3 * np.abs(want).max(), err_msg=f"{stage}.{name}[{i}]"
      )
