"""The replay contract of `sample_params` / `synthesize` (its points 1-5 in the README)."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _batches import element
from _tracing import jit_name, traced

import synthjax
from synthjax._src import rendering, sampling

SHAPE = (32, 32, 32)
VALUES = (0, 2, 3, 4, 41, 42, 43)


def _labels(seed=0, shape=(36, 34, 32)):
  rng = np.random.default_rng(seed)
  x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
  r = np.sqrt(x**2 + y**2 + z**2) + 0.05 * rng.standard_normal(shape)
  lab = np.zeros(shape, np.int32)
  left = x < 0
  for thr, (lv, rv) in ((0.9, (3, 42)), (0.6, (2, 41)), (0.25, (4, 43))):
    lab[(r < thr) & left] = lv
    lab[(r < thr) & ~left] = rv
  return lab


def _config(**kw):
  # Noise on so that every random stream is exercised.
  return synthjax.presets.synthseg(
    VALUES, SHAPE, (1.2, 1.2, 1.2), noise={"prob": 1.0, "std": (0.01, 0.05)}, **kw
  )


def _digest(*arrays):
  h = hashlib.sha256()
  for a in arrays:
    a = np.asarray(a)
    h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
  return h.hexdigest()


def _tree_equal(a, b):
  return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(x, y)), a, b)))


@pytest.fixture(scope="module")
def sample():
  cfg = _config()
  labels = _labels()
  params = synthjax.sample_params(jax.random.key(7), cfg)
  image, seg = synthjax.synthesize(jax.random.key(8), params, labels, cfg)
  return cfg, labels, params, np.asarray(image), np.asarray(seg)


def test_same_inputs_same_bits(sample):
  cfg, labels, params, image, seg = sample
  image2, seg2 = synthjax.synthesize(jax.random.key(8), params, labels, cfg)
  assert np.array_equal(image, image2) and np.array_equal(seg, seg2)
  assert image.dtype == np.float32 and image.shape == SHAPE
  assert image.min() >= 0.0 and image.max() <= 1.0
  # A legacy uint32 key with the same data gives the same sample.
  raw = jax.random.key_data(jax.random.key(8))
  image3, _ = synthjax.synthesize(raw, params, labels, cfg)
  assert np.array_equal(image, image3)


def test_replay_from_json_is_bitwise(sample):
  cfg, labels, params, image, seg = sample
  text = synthjax.params_to_json(params)
  back = synthjax.params_from_json(text, cfg)
  assert _tree_equal(params, back)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
    assert a.dtype == b.dtype and a.shape == b.shape
  image2, seg2 = synthjax.synthesize(jax.random.key(8), back, labels, cfg)
  assert np.array_equal(image, image2) and np.array_equal(seg, seg2)


def test_float32_json_roundtrip_is_bit_exact():
  cfg = _config()
  params = synthjax.sample_params(jax.random.key(0), cfg)
  # Values that a decimal round trip with too few digits would change.
  tricky = np.array(
    [np.float32(1) / 3, np.nextafter(np.float32(1), np.float32(2)), 1e-30], np.float32
  )
  params["affine"]["rotation"] = jnp.asarray(tricky)
  back = synthjax.params_from_json(synthjax.params_to_json(params), cfg)
  assert np.asarray(back["affine"]["rotation"]).tobytes() == tricky.tobytes()


def test_replay_in_a_fresh_process(sample, tmp_path):
  cfg, labels, params, image, seg = sample
  np.save(tmp_path / "labels.npy", labels)
  (tmp_path / "params.json").write_text(synthjax.params_to_json(params))
  (tmp_path / "config.json").write_text(cfg.to_json())
  (tmp_path / "key.json").write_text(json.dumps(synthjax.key_to_json(jax.random.key(8))))
  script = textwrap.dedent(f"""
      import hashlib, json, numpy as np, synthjax
      d = {str(tmp_path)!r}
      cfg = synthjax.SynthConfig.from_json(open(d + "/config.json").read())
      params = synthjax.params_from_json(open(d + "/params.json").read(), cfg)
      key = synthjax.key_from_json(json.load(open(d + "/key.json")))
      image, seg = synthjax.synthesize(key, params, np.load(d + "/labels.npy"), cfg)
      h = hashlib.sha256()
      for a in (np.asarray(image), np.asarray(seg)):
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
      print(h.hexdigest())
  """)
  out = subprocess.run(
    [sys.executable, "-c", script],
    capture_output=True,
    text=True,
    check=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert out.stdout.strip() == _digest(image, seg)


def test_vmapped_batch_matches_single_calls():
  cfg = _config()
  keys = jax.random.split(jax.random.key(3), 3)
  params = synthjax.sample_params(jax.random.split(jax.random.key(4), 3), cfg)
  labels = np.stack([_labels(i) for i in range(3)])
  batched = jax.jit(jax.vmap(lambda k, p, l: synthjax.synthesize(k, p, l, cfg)))
  images, segs = batched(keys, params, labels)
  bitwise = True
  for i in range(3):
    p_i = element(params, i)
    image, seg = synthjax.synthesize(keys[i], p_i, labels[i], cfg)
    assert np.array_equal(segs[i], seg)
    np.testing.assert_allclose(images[i], image, atol=1e-6, rtol=0)
    bitwise &= bool(np.array_equal(images[i], image))
  # Recorded in the README: on CPU the batch is bitwise equal to single calls.
  print("vmapped batch bitwise equal to single calls:", bitwise)


def test_batch_of_keys_gives_batch_of_params():
  cfg = _config()
  keys = jax.random.split(jax.random.key(11), 4)
  batch = synthjax.sample_params(keys, cfg)
  assert batch["gmm"]["means"].shape == (4, len(VALUES))
  for i in range(4):
    assert _tree_equal(element(batch, i), synthjax.sample_params(keys[i], cfg))


def test_other_synthesis_key_same_power_new_realisation(sample):
  cfg, labels, params, image, seg = sample
  image2, seg2 = synthjax.synthesize(jax.random.key(9), params, labels, cfg)
  assert not np.array_equal(image, image2)
  # Params untouched: the same affine/flip/crop, so the label layout changes only
  # through the (key-drawn) velocity field, and only slightly.
  agreement = np.mean(seg == np.asarray(seg2))
  assert 0.8 < agreement < 1.0


def test_other_params_key_gives_other_params():
  cfg = _config()
  p1 = synthjax.sample_params(jax.random.key(1), cfg)
  p2 = synthjax.sample_params(jax.random.key(2), cfg)
  for name in ("rotation", "scaling", "shear"):
    assert not np.array_equal(p1["affine"][name], p2["affine"][name])
  assert not np.array_equal(p1["gmm"]["means"], p2["gmm"]["means"])
  assert _tree_equal(p1, synthjax.sample_params(jax.random.key(1), cfg))


def test_fixed_values_kept_others_vary():
  cfg = _config()
  fixed = {
    "affine": {"applied": True, "rotation": [0.0, 0.0, 12.5], "scaling": 1.1},
    "gmm": {"means": [float(v) for v in range(len(VALUES))], "background_zero": None},
    "resolution": {"resolution": [1.2, 1.2, 5.0]},
    "flip": {"applied": False},
  }
  draws = [synthjax.sample_params(jax.random.key(k), cfg, fixed=fixed) for k in range(6)]
  for p in draws:
    assert bool(p["affine"]["applied"])
    np.testing.assert_array_equal(p["affine"]["rotation"], np.float32([0, 0, 12.5]))
    np.testing.assert_array_equal(p["affine"]["scaling"], np.float32([1.1, 1.1, 1.1]))
    np.testing.assert_array_equal(p["gmm"]["means"], np.arange(len(VALUES), dtype=np.float32))
    np.testing.assert_array_equal(p["resolution"]["resolution"], np.float32([1.2, 1.2, 5.0]))
    assert not bool(p["flip"]["applied"])
    # A draw depending on a fixed value respects it.
    assert np.all(np.asarray(p["resolution"]["thickness"]) <= np.float32([1.2, 1.2, 5.0]) + 1e-6)
  for stage, name in (
    ("affine", "shear"),
    ("gmm", "stds"),
    ("resolution", "thickness"),
    ("deformation", "std"),
    ("crop", "position"),
  ):
    values = {np.asarray(p[stage][name]).tobytes() for p in draws}
    assert len(values) == len(draws), f"{stage}.{name} did not vary with the key"


def test_fixed_works_under_jit_and_from_json():
  cfg = _config()
  ref = synthjax.sample_params(jax.random.key(5), cfg)
  fixed = json.loads(synthjax.params_to_json(ref))
  other = synthjax.sample_params(jax.random.key(6), cfg, fixed=fixed)
  assert _tree_equal(ref, other)
  jitted = jax.jit(lambda k, f: synthjax.sample_params(k, cfg, fixed=f))
  assert _tree_equal(ref, jitted(jax.random.key(6), fixed))


def test_fixed_unknown_names_raise():
  cfg = _config()
  with pytest.raises(ValueError, match="afine"):
    synthjax.sample_params(jax.random.key(0), cfg, fixed={"afine": {"rotation": 1.0}})
  with pytest.raises(ValueError, match="rotations"):
    synthjax.sample_params(jax.random.key(0), cfg, fixed={"affine": {"rotations": 1.0}})
  with pytest.raises(ValueError, match="shape"):
    synthjax.sample_params(jax.random.key(0), cfg, fixed={"gmm": {"means": [1.0, 2.0]}})


def test_params_from_json_rejects_mismatch():
  cfg = _config()
  text = synthjax.params_to_json(synthjax.sample_params(jax.random.key(0), cfg))
  bigger = synthjax.presets.synthseg(VALUES + (10,), SHAPE)
  with pytest.raises(ValueError, match="gmm"):
    synthjax.params_from_json(text, bigger)
  data = json.loads(text)
  del data["bias"]["std"]
  with pytest.raises(ValueError, match="bias.std"):
    synthjax.params_from_json(json.dumps(data), cfg)
  data = json.loads(text)
  data["gamma"]["strength"] = 1.0
  with pytest.raises(ValueError, match="gamma.strength"):
    synthjax.params_from_json(json.dumps(data), cfg)


def test_no_recompilation_for_new_keys_params_or_labels():
  cfg = _config(flip_pairs=((2, 41),))  # a config no other test compiles
  labels = _labels(0)
  synth = synthjax.synthesize
  p0 = synthjax.sample_params(jax.random.key(0), cfg)
  synth(jax.random.key(0), p0, labels, cfg)[0].block_until_ready()
  with traced() as seen:
    for i in range(1, 4):
      p = synthjax.sample_params(jax.random.key(i), cfg)
      p_json = synthjax.params_from_json(synthjax.params_to_json(p), cfg)
      p_fixed = synthjax.sample_params(jax.random.key(i), cfg)
      synth(jax.random.key(100 + i), p, _labels(i), cfg)[0].block_until_ready()
      synth(jax.random.key(200 + i), p_json, _labels(i).astype(np.int32), cfg)
      synth(jax.random.key(300 + i), p_fixed, jnp.asarray(_labels(i)), cfg)
  assert seen[jit_name(rendering._synthesize_jit)] == 0, seen
  assert seen[jit_name(sampling._sample_params_jit)] == 0, seen


def test_key_json_roundtrip():
  key = jax.random.key(1234)
  back = synthjax.key_from_json(json.loads(json.dumps(synthjax.key_to_json(key))))
  assert np.array_equal(jax.random.key_data(key), jax.random.key_data(back))
  assert np.array_equal(jax.random.normal(key, (5,)), jax.random.normal(back, (5,)))


def test_disabled_stage_records_not_applied_and_params_refeed_as_fixed():
  cfg = _config().replace(bias={"enabled": False})  # prob 0.95 kept, stage disabled
  for k in range(4):
    p = synthjax.sample_params(jax.random.key(k), cfg)
    assert not bool(p["bias"]["applied"])
    again = synthjax.sample_params(
      jax.random.key(99), cfg, fixed=json.loads(synthjax.params_to_json(p))
    )
    assert _tree_equal(p, again)


def test_params_json_without_a_later_disabled_stage_still_replays(sample):
  cfg, labels, params, image, seg = sample
  data = json.loads(synthjax.params_to_json(params))
  assert not cfg.spike.enabled
  del data["spike"]  # as written by a version without the stage
  back = synthjax.params_from_json(json.dumps(data), cfg)
  image2, seg2 = synthjax.synthesize(jax.random.key(8), back, labels, cfg)
  assert np.array_equal(image, image2) and np.array_equal(seg, seg2)
  enabled = cfg.replace(spike={"prob": 0.5})
  with pytest.raises(ValueError, match="spike"):
    synthjax.params_from_json(json.dumps(data), enabled)
