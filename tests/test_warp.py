"""`synthjax.warp`: a sample's coordinate map applied to any volume, checked against
`synthesize` (the same map) and scipy.ndimage (the interpolation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
from _batches import element
from _maps import boxes

import synthjax
from synthjax._src import warp as warp_src

N = 20
IN_SHAPE = (22, 19, 21)  # cropped to N^3 by the sample's crop position
# Affine, deformation, crop and flip all applied, with visible ranges.
CONFIG = synthjax.presets.synthseg((0, 1, 2, 3), (N, N, N)).replace(
  affine={"prob": 1.0, "translation": (-2.0, 2.0)}, deformation={"prob": 1.0}, flip={"prob": 1.0}
)


def _labels():
  return boxes(
    IN_SHAPE,
    (1, (3, 4, 3), (18, 16, 19)),
    (2, (6, 6, 6), (14, 12, 15)),
    (3, (4, 10, 5), (9, 15, 10)),
  )


def _smooth(shape=IN_SHAPE):
  g = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
  return (np.sin(g[0] / 3.0) * np.cos(g[1] / 4.0) + 0.05 * g[2]).astype(np.float32)


def _ramps(shape=IN_SHAPE):
  """Three volumes whose values are their voxel coordinates along x, y and z."""
  return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))


@pytest.fixture(scope="module")
def sample():
  return jax.random.key(7), synthjax.sample_params(jax.random.key(3), CONFIG)


@pytest.fixture(scope="module")
def coords(sample):
  """The sample's coordinate map, read back by warping the coordinate ramps (trilinear
  interpolation reproduces a linear function exactly), and where it is inside the volume
  (a point with any corner outside reads the NaN padding)."""
  key, params = sample
  c = np.asarray(synthjax.warp(key, params, _ramps(), CONFIG, order=1, cval=np.nan))
  return np.nan_to_num(c, nan=-5.0), np.all(np.isfinite(c), axis=0)


@pytest.mark.parametrize("mode", ["eager", "jit", "vmap"])
def test_cubic_sampling_matches_scipy_with_its_prefilter(mode):
  rng = np.random.default_rng(0)
  vol = rng.normal(size=(10, 12, 9)).astype(np.float32)
  pts = np.stack([rng.uniform(-4, n + 3, 400) for n in vol.shape]).astype(np.float32)
  want = ndi.map_coordinates(
    vol.astype(np.float64), pts.astype(np.float64), order=3, mode="grid-constant", cval=0.5
  )
  fn = lambda v, p: warp_src.sample_cubic(v, p, cval=0.5)
  if mode == "eager":
    with jax.disable_jit():
      got = fn(jnp.asarray(vol), jnp.asarray(pts))
  elif mode == "jit":
    got = jax.jit(fn)(vol, pts)
  else:
    got = jax.vmap(fn, in_axes=(None, 1), out_axes=0)(vol, pts.reshape(3, 2, 200)).T.ravel()
    want = want.reshape(2, 200).T.ravel()
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)


def test_prefilter_matrix_interpolates_through_the_samples():
  for n in (1, 2, 5, 16):
    coef = warp_src.spline_prefilter_matrix(n) @ np.arange(n, dtype=np.float32) ** 2
    # Cubic B-spline through the coefficients, at the integer points, with mirror ends.
    ext = np.concatenate([coef[1:2], coef, coef[-2:-1]]) if n > 1 else np.repeat(coef, 3)
    back = (ext[:-2] + 4 * ext[1:-1] + ext[2:]) / 6
    np.testing.assert_allclose(back, np.arange(n) ** 2, atol=1e-3)


def test_nearest_warp_of_the_labels_is_the_synthesized_segmentation(sample):
  """The same key and params give `synthesize` and `warp` one coordinate map."""
  key, params = sample
  lab = _labels()
  _, seg = synthjax.synthesize(key, params, lab, CONFIG)
  warped = synthjax.warp(key, params, lab, CONFIG, order=0, cval=CONFIG.background)
  assert warped.dtype == lab.dtype
  np.testing.assert_array_equal(np.asarray(warped), np.asarray(seg))
  assert len(np.unique(np.asarray(seg))) == 4


def test_linear_and_cubic_warps_match_scipy_on_the_coordinate_map(sample, coords):
  key, params = sample
  c, inside = coords
  assert inside.mean() > 0.5
  # The map is a real move: rotated, scaled, deformed and flipped.
  grid = np.stack(np.meshgrid(*[np.arange(N)] * 3, indexing="ij"))
  assert np.abs(c - grid)[:, inside].mean() > 1.0
  vol = _smooth()
  for order in (1, 3):
    got = np.asarray(synthjax.warp(key, params, vol, CONFIG, order=order, cval=0.25))
    assert got.shape == (N, N, N) and got.dtype == np.float32
    want = ndi.map_coordinates(
      vol.astype(np.float64), c.reshape(3, -1), order=order, mode="grid-constant", cval=0.25
    ).reshape(N, N, N)
    np.testing.assert_allclose(got[inside], want[inside], atol=2e-4, err_msg=f"order {order}")


def test_channels_and_a_vmapped_batch_match_single_calls(sample):
  key, params = sample
  vol = _smooth()
  channels = np.stack([vol, 2.0 * vol + 1.0])
  both = np.asarray(synthjax.warp(key, params, channels, CONFIG, order=3))
  assert both.shape == (2, N, N, N)
  for i in range(2):
    np.testing.assert_allclose(
      both[i], np.asarray(synthjax.warp(key, params, channels[i], CONFIG, order=3)), atol=1e-5
    )
  keys = jax.random.split(jax.random.key(9), 2)
  batch = synthjax.sample_params(keys, CONFIG)
  out = jax.vmap(lambda k, p: synthjax.warp(k, p, vol, CONFIG, order=1))(keys, batch)
  for i in range(2):
    one = synthjax.warp(keys[i], element(batch, i), vol, CONFIG, order=1)
    np.testing.assert_allclose(np.asarray(out[i]), np.asarray(one), atol=1e-5)


def test_gradient_with_respect_to_the_affine_through_a_real_image(sample):
  """Interpolation (unlike the labels' nearest neighbour) carries gradients to the
  spatial params: they match central differences (float32, smooth cubic spline)."""
  key, params = sample
  vol = jnp.asarray(_smooth())
  w = jnp.asarray(np.random.default_rng(2).normal(size=(N, N, N)), jnp.float32)

  def loss(rotation):
    p = {**params, "affine": {**params["affine"], "rotation": rotation}}
    return jnp.sum(synthjax.warp(key, p, vol, CONFIG, order=3) * w)

  rot = params["affine"]["rotation"]
  grad = np.asarray(jax.jit(jax.grad(loss))(rot))
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0.1
  f = jax.jit(loss)
  h = 0.05  # degrees
  for a in range(3):
    e = jnp.zeros(3).at[a].set(h)
    fd = (float(f(rot + e)) - float(f(rot - e))) / (2 * h)
    np.testing.assert_allclose(grad[a], fd, rtol=2e-2, atol=2e-2 * np.abs(grad).max())


def test_bad_arguments_are_named(sample):
  key, params = sample
  with pytest.raises(ValueError, match="order must be one of"):
    synthjax.warp(key, params, _smooth(), CONFIG, order=2)
  with pytest.raises(ValueError, match=r"\(C, X, Y, Z\)"):
    synthjax.warp(key, params, np.zeros((4, 4)), CONFIG)
  with pytest.raises(TypeError, match="SynthConfig"):
    synthjax.warp(key, params, _smooth(), {"shape": (N, N, N)})


def test_unwarp_inverts_warp_to_within_a_hundredth_of_a_voxel():
  """Composing the two maps: the coordinate ramps come back (trilinear interpolation of a
  linear function is exact, so what remains is the inversion's own error), for samples
  of the preset's ranges with the largest deformations."""
  cfg = CONFIG.replace(deformation={"std": (3.0, 4.0)})
  ramps = _ramps()
  for seed in range(3):
    key, params = jax.random.key(20 + seed), synthjax.sample_params(jax.random.key(seed), cfg)
    there = synthjax.warp(key, params, ramps, cfg, order=1, cval=np.nan)
    back = np.asarray(
      synthjax.unwarp(key, params, there, cfg, in_shape=IN_SHAPE, order=1, cval=np.nan)
    )
    seen = np.all(np.isfinite(back), axis=0)
    assert back.shape == (3,) + IN_SHAPE and seen.mean() > 0.3
    err = np.sqrt(np.sum((back - ramps) ** 2, axis=0))[seen]
    assert np.sqrt(np.mean(err**2)) < 0.01 and err.max() < 0.15, (seed, err.max())


def test_unwarp_of_warp_returns_a_smooth_image_and_the_flip_exactly(sample):
  key, params = sample
  vol = _smooth()
  back = np.asarray(
    synthjax.unwarp(
      key,
      params,
      synthjax.warp(key, params, vol, CONFIG, order=3),
      CONFIG,
      in_shape=IN_SHAPE,
      order=3,
    )
  )
  # Where the output grid saw the input, two voxels from its edge (the spline's support).
  ones = np.ones(IN_SHAPE, np.float32)
  seen = np.isfinite(
    np.asarray(
      synthjax.unwarp(
        key,
        params,
        synthjax.warp(key, params, ones, CONFIG, order=1, cval=np.nan),
        CONFIG,
        in_shape=IN_SHAPE,
        order=1,
        cval=np.nan,
      )
    )
  )
  seen = ~ndi.binary_dilation(~seen, iterations=2)
  assert seen.mean() > 0.2
  # Interpolated twice, through a compressing map: a few hundredths at worst on a range of 3.
  err = np.abs(back[seen] - vol[seen])
  assert err.max() < 0.05 and err.mean() < 0.01, (err.max(), err.mean())
  # The flip alone is a permutation of voxels: exact both ways.
  flip = CONFIG.replace(affine={"enabled": False}, deformation={"enabled": False})
  p = synthjax.sample_params(jax.random.key(0), flip, fixed={"flip": {"applied": True}})
  cube = _smooth((N, N, N))
  there = np.asarray(synthjax.warp(key, p, cube, flip, order=1))
  np.testing.assert_array_equal(there, np.flip(cube, axis=flip.flip.axis))
  np.testing.assert_array_equal(
    np.asarray(synthjax.unwarp(key, p, there, flip, in_shape=(N, N, N), order=1)), cube
  )


def test_tta_of_a_pointwise_model_is_the_model():
  """A pointwise model commutes with any warp: averaging its unwarped predictions on
  warped copies gives its prediction on the scan (up to interpolation)."""
  vol = jnp.asarray(_smooth())
  fn = lambda x: jnp.stack([jax.nn.sigmoid(2.0 * x), 1.0 - jax.nn.sigmoid(2.0 * x)])
  out = np.asarray(synthjax.tta_predict(jax.random.key(5), fn, vol, CONFIG, n=3, order=3))
  assert out.shape == (2,) + IN_SHAPE
  want = np.asarray(fn(vol))
  core = (slice(None),) + (slice(4, -4),) * 3
  np.testing.assert_allclose(out[core], want[core], atol=0.02)
  with pytest.raises(ValueError, match="n must be a positive integer"):
    synthjax.tta_predict(jax.random.key(5), fn, vol, CONFIG, n=0)


def test_unwarp_refuses_a_volume_off_the_output_grid(sample):
  key, params = sample
  with pytest.raises(ValueError, match="expected the output grid"):
    synthjax.unwarp(key, params, np.zeros(IN_SHAPE, np.float32), CONFIG, in_shape=IN_SHAPE)


SPATIAL = [
  ("affine", "rotation"),
  ("affine", "scaling"),
  ("affine", "shear"),
  ("affine", "translation"),
  ("deformation", "std"),
]


@pytest.fixture(scope="module")
def spatial_float64(sample):
  """The loss of a cubic-spline warp as a function of the spatial float params, its
  gradient, and the params, in float64: one compiled loss and one compiled gradient."""
  key, params = sample
  with jax.enable_x64(True):
    wide = jax.tree.map(
      lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, params
    )
    vol = jnp.asarray(_smooth(), jnp.float64)
    w = jnp.asarray(np.random.default_rng(4).normal(size=(N, N, N)))
    values = {s: {n: wide[s][n] for t, n in SPATIAL if t == s} for s, _ in SPATIAL}

    def loss(values):
      p = {s: {**wide[s], **values.get(s, {})} for s in wide}
      return jnp.sum(synthjax.warp(key, p, vol, CONFIG, order=3) * w)

    loss = jax.jit(loss)
    grads = jax.jit(jax.grad(loss))(values)
  return loss, values, grads


@pytest.mark.parametrize("stage,name", SPATIAL)
def test_spatial_gradients_through_a_warped_image_match_central_differences(
  spatial_float64, stage, name
):
  """With float64 params (x64, in this test only) the coordinate map is float64 too, and
  the gradient of a cubic-spline warp matches central differences."""
  loss, values, grads = spatial_float64
  value = values[stage][name]
  grad = np.asarray(grads[stage][name]).ravel()
  assert grad.dtype == np.float64 and np.abs(grad).max() > 1e-2
  flat = np.asarray(value).ravel()
  with jax.enable_x64(True):
    for i in range(min(flat.size, 3)):
      h = 1e-6 * max(1.0, abs(flat[i]))
      e = np.zeros(flat.size)
      e[i] = h
      e = e.reshape(np.shape(value))
      at = lambda d: float(loss({**values, stage: {**values[stage], name: value + d}}))
      fd = (at(e) - at(-e)) / (2 * h)
      np.testing.assert_allclose(
        grad[i], fd, rtol=1e-5, atol=1e-6 * np.abs(grad).max(), err_msg=f"{stage}.{name}[{i}]"
      )
