"""Every optional stage through the whole generator: off is exact, on changes the image,
params replay bit for bit from JSON, and a vmapped batch matches single calls."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _maps import boxes

import synthjax
from synthjax import presets
from synthjax._src import registry

SHAPE = (32, 32, 32)


def _labels():
  return boxes(
    SHAPE,
    (1, (4, 5, 6), (28, 27, 26)),
    (2, (9, 9, 9), (23, 23, 23)),
    (3, (13, 8, 12), (19, 24, 20)),
  )


# Every registered stage that a plain SynthConfig leaves off.
OPTIONAL = tuple(
  s.name
  for s in registry.STAGES
  if s.configured
  and not getattr(synthjax.SynthConfig(shape=(8, 8, 8), label_values=(0, 1)), s.name).enabled
)
# The always-on stages whose programs are largest (the deformation field, the bias field
# and the resolution simulation) are off too: they are wired and tested elsewhere, and
# each stage here is checked against the same base with and without it.
BASE = presets.fetal(
  (0, 1, 2, 3),
  SHAPE,
  spacing=(1.0, 1.0, 1.0),
  **{s: {"enabled": False} for s in OPTIONAL + ("deformation", "bias", "resolution")},
)

# stage -> overrides that switch it on with a visible strength; any other optional stage
# (a new one included) is switched on with its own ranges and `prob` 1.
VISIBLE = {
  "motion": {"motion": {"prob": 1.0, "degrees": (5.0, 10.0), "translation": (3.0, 6.0)}},
  "slice_stack": {
    "slice_stack": {"prob": 1.0, "rotation_std": (1.0, 2.0), "translation_std": (1.0, 2.0)}
  },
  "texture": {"texture": {"prob": 1.0, "amplitude": (0.3, 0.5)}},
  "struct_noise": {
    "struct_noise": {
      "prob": 1.0,
      "region_labels": (2,),
      "sigma_mean": 4.0,
      "sigma_clip": (1.0, 8.0),
    }
  },
  "blur_cortex": {
    "blur_cortex": {
      "prob": 1.0,
      "nblur": (5, 10),
      "cortex_label": 2,
      "blob_sigma_scale": 1.0,
      "blur_std_scale": 1.0,
      "max_blur_std": 10.0,
    }
  },
  "boundary": {
    "boundary": {"prob": 1.0, "prob_no_mask": 0.0, "prob_halo": 1.0, "halo_radius": (1, 2)}
  },
  "subclusters": {"subclusters": {"enabled": True, "prob": 1.0, "num_subclusters": (3, 4)}},
  "spike": {"spike": {"prob": 1.0, "intensity": (1.0, 3.0)}},
  "ghosting": {"ghosting": {"prob": 1.0}},
  "gibbs": {"gibbs": {"prob": 1.0, "alpha": (0.3, 0.6)}},
  "rician": {"rician": {"prob": 1.0, "std": (0.05, 0.1)}},
  "image_intensity": {"image_intensity": {"prob": 1.0, "scale": 1.0}},
  "grow_labels": {"grow_labels": {"prob": 1.0, "rules": (((2,), (1,), (2.0, 3.0), 1.0),)}},
}
STAGES = {s: VISIBLE.get(s, {s: {"prob": 1.0}}) for s in OPTIONAL}


def _inputs(stage):
  """Extra inputs a stage renders from: a real image on the labels' grid."""
  if stage != "image_intensity":
    return {}
  g = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]].astype(np.float32)
  return {"image": np.sin(g[0] / 3.0) * np.cos(g[1] / 5.0) + g[2] / SHAPE[2]}


def _params(key, config, fixed=None):
  """Params drawn op by op: each new config would compile its own jitted sampler, and the
  sampler is not under test here (tests/test_replay.py and the golden test cover it)."""
  with jax.disable_jit():
    return synthjax.sample_params(key, config, fixed=fixed)


def test_every_optional_stage_is_tested_here():
  assert set(VISIBLE) <= set(STAGES) == set(OPTIONAL)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_off_exact_on_visible_replay_and_vmap(stage):
  on = BASE.replace(**STAGES[stage])
  lab = _labels()
  k_params, k_synth = jax.random.key(0), jax.random.key(1)
  # The stage draws from its own stream: the other stages' params are those of the base.
  p_on = _params(k_params, on)
  p_base = _params(k_params, BASE)
  assert bool(p_on[stage]["applied"])
  for s in p_base:
    if s != stage:
      chex.assert_trees_all_equal(p_on[s], p_base[s])
  # Not applied: the same image as the config without the stage.
  p_skip = {**p_on, stage: {**p_on[stage], "applied": jnp.zeros((), bool)}}
  extra = _inputs(stage)
  img_skip, seg_skip = synthjax.synthesize(k_synth, p_skip, lab, on, **extra)
  img_base, seg_base = synthjax.synthesize(k_synth, p_base, lab, BASE)
  np.testing.assert_allclose(img_skip, img_base, atol=1e-6)
  np.testing.assert_array_equal(seg_skip, seg_base)
  # Applied: a visible change of the image; of the segmentation only where the stage
  # edits the anatomy (the label stages).
  img_on, seg_on = synthjax.synthesize(k_synth, p_on, lab, on, **extra)
  assert np.abs(np.asarray(img_on) - np.asarray(img_base)).mean() > 1e-3
  assert np.isfinite(np.asarray(img_on)).all()
  if registry.BY_NAME[stage].phase == "labels":
    assert (np.asarray(seg_on) != np.asarray(seg_base)).sum() > 100
  else:
    np.testing.assert_array_equal(seg_on, seg_base)
  # Replay from JSON, bit for bit.
  again = synthjax.synthesize(
    k_synth, synthjax.params_from_json(synthjax.params_to_json(p_on), on), lab, on, **extra
  )
  np.testing.assert_array_equal(again[0], img_on)
  # A vmapped batch (one sample applied, one not) matches single calls.
  keys = jax.random.split(jax.random.key(2), 2)
  batch_p = jax.tree.map(lambda a, b: jnp.stack([a, b]), p_on, p_skip)
  imgs, _ = jax.vmap(lambda k, p: synthjax.synthesize(k, p, lab, on, **extra))(keys, batch_p)
  for i, p in enumerate((p_on, p_skip)):
    np.testing.assert_allclose(
      imgs[i], synthjax.synthesize(keys[i], p, lab, on, **extra)[0], atol=2e-5
    )


def test_stages_on_by_default_are_skipped_when_not_applied():
  """The render loop gates `applied` for every image stage: with bias, gamma, resolution
  and noise enabled but not applied, the image is the one rendered with them disabled
  (gamma's `off`, the clip and normalisation, in both)."""
  always = [s.name for s in registry.STAGES if s.phase == "image" and s.name not in OPTIONAL]
  assert sorted(always) == ["bias", "gamma", "noise", "resolution"]
  on = BASE.replace(
    bias={"enabled": True, "prob": 1.0},
    resolution={"enabled": True, "prob": 1.0},
    noise={"enabled": True, "prob": 1.0},
    gamma={"prob": 1.0},
  )
  off = BASE.replace(**{s: {"enabled": False} for s in always})
  lab = _labels()
  p_on = _params(jax.random.key(0), on)
  assert all(bool(p_on[s]["applied"]) for s in always)
  skipped = _params(jax.random.key(0), on, fixed={s: {"applied": False} for s in always})
  img_skip = synthjax.synthesize(jax.random.key(1), skipped, lab, on)[0]
  img_off = synthjax.synthesize(jax.random.key(1), _params(jax.random.key(0), off), lab, off)[0]
  np.testing.assert_allclose(img_skip, img_off, atol=1e-6)
  img_on = synthjax.synthesize(jax.random.key(1), p_on, lab, on)[0]
  assert np.abs(np.asarray(img_on) - np.asarray(img_off)).mean() > 1e-3
