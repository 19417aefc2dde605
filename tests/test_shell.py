"""The program shell shared by the generator and the ensembles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import synthjax
from synthjax._src import shell


def test_key_batches_typed_and_raw():
  assert not shell.is_key_batch(jax.random.key(0))
  assert shell.is_key_batch(jax.random.split(jax.random.key(0), 3))
  assert not shell.is_key_batch(jax.random.PRNGKey(0))
  assert shell.is_key_batch(jax.random.split(jax.random.PRNGKey(0), 3))
  assert not shell.is_key_batch(np.zeros(2, np.uint32))


def test_map_keys_equals_one_call_per_key():
  one = lambda k, scale, fixed: {"x": jax.random.uniform(k) * scale + fixed}
  keys = jax.random.split(jax.random.key(1), 4)
  batch = shell.map_keys(one, keys, 2.0, 1.0)
  assert batch["x"].shape == (4,)
  for i in range(4):
    np.testing.assert_array_equal(batch["x"][i], one(keys[i], 2.0, 1.0)["x"])


def test_messages_name_the_unknown_and_the_allowed():
  with pytest.raises(
    ValueError,
    match=r"fixed names unknown stage\(s\) \['nope'\]; stages are "
    r"\['a', 'b'\]",
  ):
    shell.check_names(
      {"a": 1, "nope": 2}, {"a": 0, "b": 0}, subject="fixed", noun="stage", allowed_are="stages are"
    )
  with pytest.raises(TypeError, match="fixed must be a dict of things, got list"):
    shell.check_fixed_dict([1], "a dict of things")
  assert shell.check_fixed_dict(None, "x") == {}
  with pytest.raises(
    ValueError,
    match=r"params\['gmm'\] must be a dict with entries "
    r"\['means', 'stds'\], got \['means'\]",
  ):
    shell.check_entries({"means": 1}, {"means": 0, "stds": 0}, name="params['gmm']")


def test_to_device_casts_host_values_and_passes_tracers():
  out = shell.to_device([1, 2], jnp.float32)
  assert isinstance(out, jax.Array) and out.dtype == jnp.float32
  seen = []
  jax.jit(lambda x: seen.append(shell.to_device(x, jnp.int8) is x) or x)(jnp.ones(2))
  assert seen == [True]  # a tracer is returned as it is, not cast


def test_synthesize_names_a_stage_with_missing_entries():
  cfg = synthjax.presets.synthseg((0, 1), (8, 8, 8))
  p = synthjax.sample_params(jax.random.key(0), cfg)
  p["gmm"] = {k: v for k, v in p["gmm"].items() if k != "stds"}
  with pytest.raises(ValueError, match=r"params\['gmm'\] must be a dict with entries .*stds"):
    synthjax.synthesize(jax.random.key(0), p, np.zeros((8, 8, 8), np.int32), cfg)
