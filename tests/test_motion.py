"""k-space motion artifact (`synthjax._src.stages.motion`).

References written here:
  * a numpy / scipy implementation of TorchIO's `Motion` (each pose resampled with
    `scipy.ndimage.affine_transform`, `fftshift(fftn)` spectra, segments of centred lines
    `[floor(n t_{j-1}), floor(n t_j))`, the unmoved spectrum swapped into the segment that
    holds the DC line, magnitude reconstruction), in float64;
  * a closed form for integer-voxel translations: the moved spectrum is the original one
    times a phase ramp on the moved lines, no resampling involved;
  * band-limited images, for which moving a segment that holds none of the image's
    frequencies changes nothing: this places the segment boundaries exactly.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _batches import element
from scipy import ndimage

from synthjax._src.stages import motion
from synthjax._src.stages.motion import MotionConfig

SHAPE = (24, 20, 16)  # distinct sizes, so an axis mix-up cannot pass
SPACING = (1.0, 2.0, 0.5)  # anisotropic; powers of 2 keep integer shifts exact
CFG = MotionConfig(num_transforms=(1, 2), axes=(0, 1, 2), prob=1.0, enabled=True)


def image(seed=0, shape=SHAPE, border=4):
  """Non-negative content inside a zero border (so integer shifts up to it lose nothing)."""
  rng = np.random.default_rng(seed)
  x = np.zeros(shape, np.float32)
  inner = tuple(slice(border, s - border) for s in shape)
  g = np.meshgrid(*[np.linspace(-1, 1, s - 2 * border) for s in shape], indexing="ij")
  blob = 0.3 + 0.5 * (g[0] ** 2 + (g[1] / 0.8) ** 2 + (g[2] / 0.9) ** 2 < 0.6)
  x[inner] = blob + 0.2 * rng.random(blob.shape)
  return x


def params(
  applied=True,
  count=2,
  times=(0.3, 0.7),
  degrees=((0, 0, 0), (0, 0, 0)),
  translation=((0, 0, 0), (0, 0, 0)),
  axis=2,
):
  return {
    "applied": jnp.asarray(applied),
    "num_transforms": jnp.asarray(count, jnp.int32),
    "times": jnp.asarray(times, jnp.float32),
    "degrees": jnp.asarray(degrees, jnp.float32),
    "translation": jnp.asarray(translation, jnp.float32),
    "axis": jnp.asarray(axis, jnp.int32),
  }


def _apply(x, p, spacing=SPACING):
  return motion.apply_motion(x, p, CFG, spacing)


apply_jit = jax.jit(_apply, static_argnums=2)
apply_batch = jax.jit(jax.vmap(_apply))  # one compilation for every batch of SHAPE


# ---------------------------------------------------------------------------------------
# numpy references


def np_rotation(deg):
  a = np.deg2rad(np.asarray(deg, np.float64))
  c, s = np.cos(a), np.sin(a)
  rx = np.array([[1, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]])
  ry = np.array([[c[1], 0, s[1]], [0, 1, 0], [-s[1], 0, c[1]]])
  rz = np.array([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1]])
  return rz @ ry @ rx


def np_moved(x, deg, trans, spacing):
  """`x` sampled at R (p - c) + c + t (mm, about the voxel-grid centre), linear."""
  s = np.asarray(spacing, np.float64)
  c = (np.asarray(x.shape) - 1) / 2.0
  a = np.diag(1 / s) @ np_rotation(deg) @ np.diag(s)  # voxel -> voxel
  offset = c + np.asarray(trans, np.float64) / s - a @ c
  return ndimage.affine_transform(
    x.astype(np.float64), a, offset, order=1, mode="grid-constant", cval=float(x.min())
  )


def np_compose(spectra, times, axis):
  """TorchIO's segment composition of centred spectra `[unmoved, pose 1, ...]`."""
  spectra = list(spectra)
  n = spectra[0].shape[axis]
  bounds = [int(np.float32(n) * np.float32(t)) for t in times] + [n]
  # The segment that holds the DC line (centred index n // 2) takes the unmoved spectrum.
  centre = sum(b <= n // 2 for b in bounds[:-1])
  spectra[0], spectra[centre] = spectra[centre], spectra[0]
  out = np.empty_like(spectra[0])
  ini = 0
  for spec, fin in zip(spectra, bounds):
    sl = [slice(None)] * 3
    sl[axis] = slice(ini, fin)
    out[tuple(sl)] = spec[tuple(sl)]
    ini = fin
  return np.abs(np.fft.ifftn(np.fft.ifftshift(out)))


def np_motion(x, times, degrees, translation, axis, spacing):
  """Reference motion artifact (sorted times; one pose per time)."""
  images = [x.astype(np.float64)] + [
    np_moved(x, d, t, spacing) for d, t in zip(degrees, translation)
  ]
  return np_compose([np.fft.fftshift(np.fft.fftn(v)) for v in images], times, axis)


# ---------------------------------------------------------------------------------------
# jit / vmap


def test_vmap_equals_single_calls():
  rng = np.random.default_rng(9)
  xs = np.stack([image(s) for s in (10, 11, 12)])
  singles = [
    params(True, 2, (0.3, 0.6), ((4, -2, 7), (-5, 3, 1)), ((2, 1, -1), (0, -3, 2)), 0),
    params(True, 1, (0.66, 1.0), ((0, 9, 0), (0, 0, 0)), ((-3, 0, 2), (0, 0, 0)), 2),
    params(False, 2, (0.3, 0.6), rng.uniform(-9, 9, (2, 3)), rng.uniform(-9, 9, (2, 3)), 1),
  ]
  batch = jax.tree.map(lambda *v: jnp.stack(v), *singles)
  out = np.asarray(apply_batch(jnp.asarray(xs), batch))
  for i, p in enumerate(singles):
    single = np.asarray(apply_jit(jnp.asarray(xs[i]), p, SPACING))
    np.testing.assert_allclose(out[i], single, rtol=0, atol=1e-5)
    assert np.isfinite(out[i]).all()


# ---------------------------------------------------------------------------------------
# sample_motion


def test_sample_shapes_ranges_and_times():
  cfg = MotionConfig(
    num_transforms=(1, 3), degrees=(-5, 5), translation=(0, 2), axes=(0, 2), prob=0.5, enabled=True
  )
  keys = jax.random.split(jax.random.key(0), 400)
  p = jax.tree.map(np.asarray, jax.jit(jax.vmap(lambda k: motion.sample_motion(k, cfg)))(keys))
  assert p["times"].shape == (400, 3) and p["degrees"].shape == (400, 3, 3)
  assert p["translation"].shape == (400, 3, 3) and p["axis"].shape == (400,)
  assert p["applied"].dtype == bool and p["num_transforms"].dtype == np.int32
  assert p["times"].dtype == np.float32 and p["axis"].dtype == np.int32
  assert set(np.unique(p["num_transforms"])) == {1, 2, 3}
  assert set(np.unique(p["axis"])) == {0, 2}
  assert 0.4 < p["applied"].mean() < 0.6
  assert p["degrees"].min() >= -5 and p["degrees"].max() <= 5 and p["degrees"].std() > 2
  assert p["translation"].min() >= 0 and p["translation"].max() <= 2
  for count, times in zip(p["num_transforms"], p["times"]):
    j = np.arange(1, 4)
    step = 1 / (count + 1)
    active = j <= count
    # TorchIO's times: j / (n + 1) jittered by at most 0.3 / (n + 1); sorted, in (0, 1).
    assert np.all(np.abs(times[active] - j[active] * step) <= 0.3 * step + 1e-6)
    assert np.all(np.diff(times[active]) > 0) and times[active].min() > 0
    np.testing.assert_array_equal(times[~active], 1.0)


def test_sample_fixed_values_are_kept_and_others_vary():
  fixed = {"num_transforms": 1, "degrees": [1.0, 2.0, 3.0], "axis": 1, "applied": True}
  batch = jax.jit(jax.vmap(lambda k: motion.sample_motion(k, CFG, fixed)))(
    jax.random.split(jax.random.key(0), 4)
  )
  draws = [jax.tree.map(np.asarray, element(batch, i)) for i in range(4)]
  for p in draws:
    assert bool(p["applied"]) and int(p["num_transforms"]) == 1 and int(p["axis"]) == 1
    np.testing.assert_array_equal(p["degrees"], np.tile([1.0, 2.0, 3.0], (2, 1)))
    # Times drawn for the fixed count: one time about 1/2, the unused slot at 1.
    assert abs(float(p["times"][0]) - 0.5) <= 0.15 + 1e-6 and float(p["times"][1]) == 1.0
  assert len({np.asarray(p["translation"]).tobytes() for p in draws}) == 4
  assert len({np.asarray(p["times"]).tobytes() for p in draws}) == 4
  with pytest.raises(ValueError, match="degrees"):
    motion.sample_motion(jax.random.key(0), CFG, {"degrees": [[1.0, 2.0]]})
  assert not bool(motion.sample_motion(jax.random.key(3), MotionConfig())["applied"])
  # Eagerly (op by op) and under jit, the same params.
  fixed = {"times": [0.2, 0.9], "translation": 0.0}
  a = motion.sample_motion(jax.random.key(3), CFG, fixed)
  np.testing.assert_array_equal(a["times"], np.float32([0.2, 0.9]))
  np.testing.assert_array_equal(a["translation"], np.zeros((2, 3)))
  b = jax.jit(lambda k: motion.sample_motion(k, CFG, fixed))(jax.random.key(3))
  # jit may fuse `lo + u * (hi - lo)` differently: equal within an ulp.
  chex.assert_trees_all_close(a, b, rtol=1e-6, atol=0)


def test_sampled_params_apply():
  cfg = MotionConfig(prob=1.0, enabled=True, axes=(0, 1, 2))
  x = jnp.asarray(image(13))
  keys = jax.random.split(jax.random.key(5), 2)
  p = jax.jit(jax.vmap(lambda k: motion.sample_motion(k, cfg)))(keys)
  out = apply_batch(jnp.stack([x, x]), p)
  assert out.shape == (2,) + SHAPE and out.dtype == jnp.float32
  assert np.isfinite(np.asarray(out)).all()
  for i in range(2):
    ref = np_motion(
      np.asarray(x),
      np.asarray(p["times"][i]),
      np.asarray(p["degrees"][i]),
      np.asarray(p["translation"][i]),
      int(p["axis"][i]),
      SPACING,
    )
    np.testing.assert_allclose(np.asarray(out[i]), ref, rtol=0, atol=5e-5)


# ---------------------------------------------------------------------------------------
# Config


def test_config_defaults_mirror_torchio():
  cfg = MotionConfig()
  assert cfg.degrees == (-10.0, 10.0) and cfg.translation == (-10.0, 10.0)
  assert cfg.num_transforms == (2, 2) and cfg.axes == (2,) and cfg.perturbation == 0.3
  assert cfg.prob == 0.0 and cfg.enabled is False
  assert hash(MotionConfig(axes=[0, 1], degrees=[-1, 1])) == hash(
    MotionConfig(axes=(0, 1), degrees=(-1.0, 1.0))
  )


@pytest.mark.parametrize(
  "bad,match",
  [
    ({"degrees": (5, -5)}, "degrees"),
    ({"translation": (0, float("nan"))}, "translation"),
    ({"num_transforms": (2, 1)}, "num_transforms"),
    ({"num_transforms": (0, 0)}, "num_transforms"),
    ({"num_transforms": (1.5, 2)}, "num_transforms"),
    ({"axes": (0, 3)}, "axes"),
    ({"axes": ()}, "axes"),
    ({"axes": (1, 1)}, "axes"),
    ({"axes": ("x",)}, "axes"),
    ({"perturbation": 0.6}, "perturbation"),
    ({"perturbation": -0.1}, "perturbation"),
    ({"prob": 1.5}, "prob"),
  ],
)
def test_config_validation(bad, match):
  with pytest.raises(ValueError, match=match):
    MotionConfig(**bad)
