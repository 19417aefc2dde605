"""The traced augmentation strength of `sample_params(..., strength=s)`: 0 renders the plain
Gaussian mixture of the unmoved labels, 1 is the config (to float32 rounding), magnitudes
shrink by exactly `s` toward each stage's identity, and changing `s` never recompiles."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _batches import element
from _maps import three_labels
from _tracing import jit_name, traced

import synthjax
from synthjax._src import registry, sampling

N = 16
# Every stage family on: spatial, intensity, artifacts with a magnitude, and gated stages
# (flip, sub-label classes).
CONFIG = synthjax.presets.synthseg((0, 1, 2, 3), (N, N, N), (1.0, 1.0, 1.0)).replace(
  affine={"prob": 1.0},
  deformation={"prob": 1.0},
  bias={"prob": 1.0},
  gamma={"prob": 1.0},
  resolution={"prob": 1.0},
  noise={"prob": 1.0, "std": (0.02, 0.05)},
  rician={"enabled": True, "prob": 1.0},
  gibbs={"enabled": True, "prob": 1.0},
  texture={"enabled": True, "prob": 1.0},
  subclusters={"enabled": True, "prob": 1.0, "num_subclusters": (2, 3)},
)
# What `s` leaves alone: what is rendered, not how it is altered.
SOURCES = {"gmm", "crop", "image_intensity"}
KEYS = jax.random.split(jax.random.key(0), 256)


def _labels():
  return three_labels(N)


@pytest.fixture(scope="module")
def batches():
  """Params of 128 keys without a strength and at strengths 0, 0.25, 0.5 and 1, drawn one
  key at a time (a vmapped sampler takes three times as long to compile)."""
  out = {}
  for s in (None, 0.0, 0.25, 0.5, 1.0):
    draws = [synthjax.sample_params(k, CONFIG, strength=s) for k in KEYS[:128]]
    out[s] = jax.tree.map(lambda *x: np.stack(x), *draws)
  return out


def test_every_stage_declares_how_it_weakens():
  template = sampling.params_template(CONFIG)
  for stage in registry.STAGES:
    if stage.name in SOURCES:
      assert stage.strength is None, stage.name
      continue
    assert stage.strength is not None, f"{stage.name}: no strength table"
    assert "applied" in template[stage.name], stage.name
    for name, identity in stage.strength.items():
      ident = np.asarray(identity(CONFIG) if callable(identity) else identity, np.float64)
      assert np.all(np.isfinite(ident)), (stage.name, name)


def test_strength_one_is_the_config(batches):
  """Flags and integers exactly; floats to XLA's rounding of the other program."""
  for a, b in zip(jax.tree.leaves(batches[None]), jax.tree.leaves(batches[1.0])):
    a, b = np.asarray(a), np.asarray(b)
    if np.issubdtype(a.dtype, np.floating):
      np.testing.assert_allclose(b, a, rtol=4e-7, atol=1e-7)
    else:
      np.testing.assert_array_equal(b, a)


def test_magnitudes_shrink_by_exactly_the_strength_toward_the_identity(batches):
  full = batches[1.0]
  for s in (0.25, 0.5):
    p = batches[s]
    for stage in registry.STAGES:
      for name, identity in (stage.strength or {}).items():
        if name not in full[stage.name]:
          continue
        ident = np.asarray(identity(CONFIG) if callable(identity) else identity, np.float32)
        want = ident + np.float32(s) * (np.asarray(full[stage.name][name]) - ident)
        np.testing.assert_allclose(
          p[stage.name][name], want, rtol=1e-6, atol=1e-6, err_msg=f"{stage.name}.{name} at {s}"
        )
      # The stage's other entries are the full strength's draws.
      for name, value in p[stage.name].items():
        if name != "applied" and name not in (stage.strength or {}):
          np.testing.assert_array_equal(
            value, full[stage.name][name], err_msg=f"{stage.name}.{name}"
          )


def test_gated_stages_apply_with_probability_times_strength(batches):
  full = np.asarray(batches[1.0]["flip"]["applied"])
  assert 0.3 < full.mean() < 0.7  # the preset's flip probability, 0.5
  previous = np.zeros_like(full)
  for s in (0.0, 0.25, 0.5, 1.0):
    applied = np.asarray(batches[s]["flip"]["applied"])
    # Applied at s only where applied at full strength, and at every lower s too.
    assert not np.any(applied & ~full) and not np.any(previous & ~applied)
    # Binomial: 128 draws of probability 0.5 * s, within 4 standard deviations.
    p = 0.5 * s
    assert abs(applied.mean() - p) <= 4 * np.sqrt(max(p * (1 - p), 1e-9) / 128) + 1e-9, s
    previous = applied
  # Stages with a magnitude are on wherever the config applies them, off only at s = 0.
  for s in (0.25, 0.5):
    np.testing.assert_array_equal(batches[s]["bias"]["applied"], batches[1.0]["bias"]["applied"])
  for stage in registry.STAGES:
    if stage.name not in SOURCES and "applied" in batches[0.0][stage.name]:
      assert not np.any(batches[0.0][stage.name]["applied"]), stage.name


def test_the_spread_of_the_params_grows_with_the_strength(batches):
  spreads = [float(np.std(batches[s]["affine"]["rotation"])) for s in (0.0, 0.25, 0.5, 1.0)]
  assert spreads[0] == 0.0 and spreads == sorted(spreads) and spreads[-1] > 5.0, spreads
  noise = [float(np.mean(batches[s]["noise"]["std"])) for s in (0.0, 0.25, 0.5, 1.0)]
  assert noise == sorted(noise) and noise[0] == 0.0, noise


def test_strength_zero_renders_the_plain_gmm_of_the_unmoved_labels():
  key, synth_key = jax.random.key(3), jax.random.key(4)
  labels = _labels()
  p0 = synthjax.sample_params(key, CONFIG, strength=0.0)
  image, seg = synthjax.synthesize(synth_key, p0, labels, CONFIG)
  plain = CONFIG.replace(
    **{
      s.name: {"enabled": False} for s in registry.STAGES if s.configured and s.name not in SOURCES
    }
  )
  p_plain = synthjax.sample_params(key, plain)
  np.testing.assert_array_equal(p_plain["gmm"]["means"], p0["gmm"]["means"])
  want_image, want_seg = synthjax.synthesize(synth_key, p_plain, labels, plain)
  np.testing.assert_array_equal(seg, want_seg)
  np.testing.assert_array_equal(seg, labels)  # the unmoved labels (identity output labels)
  np.testing.assert_allclose(image, want_image, atol=1e-6)


def test_per_key_strengths_under_vmap_match_single_calls(batches):
  s = np.linspace(0.0, 1.0, len(KEYS), dtype=np.float32)
  batch = synthjax.sample_params(KEYS, CONFIG, strength=s)
  for i in (0, 77, 200):
    one = synthjax.sample_params(KEYS[i], CONFIG, strength=float(s[i]))
    chex.assert_trees_all_equal(element(batch, i), one)


def test_changing_the_strength_never_recompiles(batches):
  synthjax.sample_params(KEYS, CONFIG, strength=np.full(len(KEYS), 0.5, np.float32))
  strengths = jnp.full(len(KEYS), 0.9)
  with traced() as seen:
    for s in (0.1, 0.7, 0.3):
      synthjax.sample_params(KEYS, CONFIG, strength=np.full(len(KEYS), s, np.float32))
    synthjax.sample_params(KEYS, CONFIG, strength=strengths)
  assert seen[jit_name(sampling._sample_params_jit)] == 0, seen


def test_a_disabled_stage_keeps_its_zeros_at_any_strength():
  cfg = CONFIG.replace(affine={"enabled": False})
  p = synthjax.sample_params(jax.random.key(2), cfg, strength=0.5)
  for name, value in p["affine"].items():
    np.testing.assert_array_equal(value, np.zeros_like(value), err_msg=name)


def test_fixed_values_are_kept_whatever_the_strength():
  fixed = {"affine": {"rotation": [10.0, 0.0, 0.0], "applied": True}, "noise": {"std": 0.04}}
  p = synthjax.sample_params(jax.random.key(1), CONFIG, fixed=fixed, strength=0.0)
  assert bool(p["affine"]["applied"]) and not bool(p["bias"]["applied"])
  np.testing.assert_array_equal(p["affine"]["rotation"], [10.0, 0.0, 0.0])
  np.testing.assert_array_equal(p["affine"]["scaling"], [1.0, 1.0, 1.0])  # drawn: identity
  np.testing.assert_allclose(p["noise"]["std"], 0.04)


@pytest.mark.parametrize(
  "strength,error,match",
  [
    (1.5, ValueError, r"strength must be in \[0, 1\], got 1.5"),
    (-0.1, ValueError, r"in \[0, 1\]"),
    ([0.5, 0.5], ValueError, "must be a scalar, got shape"),
    ("strong", TypeError, "strength must be a number"),
    (True, TypeError, "got a bool"),
  ],
)
def test_bad_strengths_are_named(strength, error, match):
  with pytest.raises(error, match=match):
    synthjax.sample_params(jax.random.key(0), CONFIG, strength=strength)


def test_a_strength_per_key_must_match_the_keys():
  with pytest.raises(ValueError, match=r"one per key \(4,\)"):
    synthjax.sample_params(KEYS[:4], CONFIG, strength=np.ones(3, np.float32))


def test_synthesize_batch_takes_a_schedule_of_the_step():
  import optax

  from synthjax import data as sdata

  schedule = optax.linear_schedule(0.2, 1.0, 8)
  # A light config: the rendering is not under test here.
  cfg = synthjax.presets.synthseg((0, 1, 2, 3), (N, N, N)).replace(
    affine={"prob": 1.0},
    deformation={"enabled": False},
    bias={"enabled": False},
    resolution={"enabled": False},
  )
  keys = jax.random.split(jax.random.key(5), 2)
  batch = {"labels": np.stack([_labels()] * 2), "key": jax.random.key_data(keys)}
  run = jax.jit(lambda b, step: sdata.synthesize_batch(b, cfg, strength=schedule, step=step))
  for step in (0, 6):
    images, segs, params = run(batch, step)
    pair = jax.vmap(jax.random.split)(keys)
    want = synthjax.sample_params(pair[:, 0], cfg, strength=float(schedule(step)))
    chex.assert_trees_all_equal(params, want)
  # At step 0 (strength 0.2) the rotations are a fifth of those at full strength.
  full = synthjax.sample_params(pair[:, 0], cfg)
  np.testing.assert_allclose(
    run(batch, 0)[2]["affine"]["rotation"],
    0.2 * np.asarray(full["affine"]["rotation"]),
    rtol=1e-5,
    atol=1e-5,
  )
  with pytest.raises(ValueError, match="needs the step"):
    sdata.synthesize_batch(batch, cfg, strength=schedule)
