"""The stage registry agrees with the config, the params and the replay contract."""

import dataclasses
import inspect

import jax
import numpy as np
import pytest

import synthjax
from synthjax._src import registry, rendering, sampling

# The replay contract: a stage's stream ids never change (params JSON written by any
# version replays bit for bit). New stages append new ids.
FROZEN_PARAM_STREAMS = {
  "affine": 0,
  "deformation": 1,
  "crop": 2,
  "flip": 3,
  "gmm": 4,
  "bias": 5,
  "gamma": 6,
  "resolution": 7,
  "noise": 8,
  "spike": 9,
  "ghosting": 10,
  "gibbs": 11,
  "rician": 12,
  "subclusters": 13,
  "image_intensity": 14,
  "motion": 15,
  "slice_stack": 16,
  "texture": 17,
  "struct_noise": 18,
  "blur_cortex": 19,
  "boundary": 20,
  "grow_labels": 21,
}
FROZEN_SYNTH_STREAMS = {
  "deformation": 0,
  "gmm": 1,
  "bias": 2,
  "noise": 3,
  "rician": 4,
  "subclusters": 5,
  "texture": 6,
  "struct_noise": 7,
  "blur_cortex": 8,
  "boundary": 9,
}


def test_stream_ids_are_frozen_and_unique():
  assert {s.name: s.param_stream for s in registry.STAGES} == FROZEN_PARAM_STREAMS
  synth = {s.name: s.synth_stream for s in registry.STAGES if s.synth_stream is not None}
  assert synth == FROZEN_SYNTH_STREAMS
  assert len(set(FROZEN_PARAM_STREAMS.values())) == len(FROZEN_PARAM_STREAMS)
  assert len(set(synth.values())) == len(synth)
  assert registry.synth_stream("bias") == 2
  with pytest.raises(KeyError, match="gamma"):
    registry.synth_stream("gamma")


def _stage_fields():
  return {
    f.name for f in dataclasses.fields(synthjax.SynthConfig) if dataclasses.is_dataclass(f.default)
  }


def test_every_config_stage_is_registered_and_every_registered_stage_configured():
  configured = {s.name for s in registry.STAGES if s.configured}
  assert configured == _stage_fields()


def test_every_stage_samples_with_the_common_signature():
  """`sample(key, config, fixed)`."""
  for s in registry.STAGES:
    params = inspect.signature(s.sample).parameters.values()
    assert [p.kind for p in params] == [inspect.Parameter.POSITIONAL_OR_KEYWORD] * 3, s.name


@pytest.fixture(scope="module")
def cfg():
  return synthjax.presets.fetal((0, 1, 2, 3), (16, 16, 16), spacing=(1.0, 1.0, 1.0))


def test_params_follow_the_registry_in_order(cfg):
  params = synthjax.sample_params(jax.random.key(0), cfg)
  assert set(params) == set(registry.NAMES) and registry.NAMES == sampling.PARAM_STAGES
  # Each stage's params are exactly its own sampler's, from its own stream. The samplers
  # run in one program of their own (drawing them op by op takes several times longer).
  drawn = [s for s in registry.STAGES if not s.configured or getattr(cfg, s.name).enabled]
  own = jax.jit(
    lambda key: {s.name: s.sample(jax.random.fold_in(key, s.param_stream), cfg, {}) for s in drawn}
  )(jax.random.key(0))
  assert drawn and set(own) <= set(params)
  for s in drawn:
    assert set(own[s.name]) == set(params[s.name])
    for name in own[s.name]:  # two programs: equal up to float rounding
      np.testing.assert_allclose(
        own[s.name][name], params[s.name][name], rtol=1e-5, atol=1e-6, err_msg=f"{s.name}.{name}"
      )


def test_fixed_names_come_from_the_template(cfg):
  template = sampling.params_template(cfg)
  for s in registry.STAGES:
    with pytest.raises(ValueError, match=f"fixed\\['{s.name}'\\] names unknown parameter"):
      synthjax.sample_params(jax.random.key(0), cfg, fixed={s.name: {"nope": 1}})
  with pytest.raises(ValueError, match="unknown stage"):
    synthjax.sample_params(jax.random.key(0), cfg, fixed={"nope": {}})
  # One entry of every stage fixed at once (zeros; `applied` False is always allowed).
  fixed = {}
  for s in registry.STAGES:
    first = sorted(template[s.name])[0]
    fixed[s.name] = {first: np.zeros(template[s.name][first].shape, template[s.name][first].dtype)}
  out = synthjax.sample_params(jax.random.key(0), cfg, fixed=fixed)
  for stage, entries in fixed.items():
    for name, value in entries.items():
      np.testing.assert_array_equal(out[stage][name], value, err_msg=f"{stage}.{name}")


def test_every_stage_renders_through_its_phase_signature_in_registry_order():
  from synthjax._src.stages import record

  phases = [s.phase for s in registry.STAGES]
  assert set(phases) == set(record.PHASES)
  # The spatial stages come first, then the label stages, then the sources; the k-space
  # group is contiguous.
  first_image = phases.index("image")
  early = ["spatial", "labels", "source"]
  assert phases[:first_image] == sorted(phases[:first_image], key=early.index)
  assert not set(early) & set(phases[first_image:])
  k = [i for i, p in enumerate(phases) if p == "kspace"]
  assert k == list(range(k[0], k[-1] + 1))
  for s in registry.STAGES:
    assert s.apply is not None, s.name
    # (key, value, params, stage_config, ctx), all positional.
    params = list(inspect.signature(s.apply).parameters.values())
    assert len(params) == 5 and params[-1].name == "ctx", s.name
    assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params), s.name
    if s.phase == "image":
      assert s.configured, s.name
    else:
      assert s.off is None, s.name


def test_a_registered_image_stage_is_rendered_where_the_registry_puts_it(cfg):
  """Removing an image stage's record from the registry removes it from the image (the
  render loop has no branch of its own for it)."""
  lab = np.zeros((16, 16, 16), np.int32)
  lab[4:12, 4:12, 4:12] = 1
  base = synthjax.presets.synthseg((0, 1), (16, 16, 16), noise={"prob": 1.0, "std": (0.1, 0.1)})
  params = synthjax.sample_params(jax.random.key(0), base)
  with_noise = np.asarray(rendering.render(jax.random.key(1), params, lab, base)[0])
  original = registry.STAGES
  try:
    registry.STAGES = tuple(s for s in original if s.name != "noise")
    without = np.asarray(rendering.render(jax.random.key(1), params, lab, base)[0])
  finally:
    registry.STAGES = original
  assert np.abs(with_noise - without).mean() > 1e-3
  off = np.asarray(
    rendering.render(jax.random.key(1), params, lab, base.replace(noise={"enabled": False}))[0]
  )
  np.testing.assert_array_equal(without, off)


PUBLIC_RANDOM = [
  synthjax.sample_params,
  synthjax.synthesize,
  synthjax.sample_view_params,
  synthjax.synthesize_views,
  synthjax.synthesize_sharded,
  synthjax.warp,
  synthjax.ensembles.sample_ensemble_params,
  synthjax.ensembles.render_ensemble,
]


@pytest.mark.parametrize("fn", PUBLIC_RANDOM, ids=lambda f: f.__name__)
def test_public_random_functions_take_the_key_first_and_options_by_keyword(fn):
  """dm_pix / optax style: `fn(key, inputs..., *, options)`."""
  params = list(inspect.signature(fn).parameters.values())
  assert params[0].name in ("key", "keys")
  for p in params:
    if p.default is not inspect.Parameter.empty:
      assert p.kind is inspect.Parameter.KEYWORD_ONLY, (fn.__name__, p.name)
