"""`SynthConfig` and the stage configs: hashing, validation, replace, JSON, presets."""

import dataclasses
import json

import numpy as np
import pytest
from _tracing import jit_name, traced

import synthjax
from synthjax import (
  AffineConfig,
  BiasConfig,
  DeformationConfig,
  FlipConfig,
  GammaConfig,
  GMMConfig,
  NoiseConfig,
  ResolutionConfig,
  SynthConfig,
)
from synthjax.presets import fetal, freesurfer_flip_pairs, synthseg

STAGES = ("affine", "deformation", "flip", "gmm", "bias", "gamma", "resolution", "noise")
FS_VALUES = (0, 2, 3, 41, 42, 1035, 2035)


def make(**kw):
  base = dict(shape=(24, 24, 24), label_values=(0, 1, 2, 3))
  base.update(kw)
  return SynthConfig(**base)


def assert_all_tuples(obj):
  """No list anywhere in a config (so it hashes); recurses into stage dataclasses."""
  for f in dataclasses.fields(obj):
    v = getattr(obj, f.name)
    assert not isinstance(v, list), f.name
    if dataclasses.is_dataclass(v):
      assert_all_tuples(v)
    elif isinstance(v, tuple):
      for item in v:
        assert not isinstance(item, list), f.name


# ---------------------------------------------------------------------------------------
# Hashing and equality


def test_equal_content_equal_and_same_hash():
  a = make(spacing=(1.0, 1.0, 2.0), flip_pairs=((1, 2),), affine=AffineConfig(rotation=(-5, 5)))
  b = make(spacing=(1, 1, 2), flip_pairs=[[1, 2]], affine={"rotation": [-5.0, 5.0]})
  assert a == b and hash(a) == hash(b)
  assert {a: "x"}[b] == "x"
  c = make(spacing=(1.0, 1.0, 2.0), flip_pairs=((1, 2),), affine=AffineConfig(rotation=(-5, 6)))
  assert a != c
  assert len({a, b, c}) == 2


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_field_changes_equality(stage):
  cfg = make()
  changed = cfg.replace(**{stage: {"enabled": False}})
  assert changed != cfg and hash(changed) != hash(cfg)
  assert getattr(changed, stage).enabled is False and getattr(cfg, stage).enabled is True


def test_lists_converted_to_tuples():
  cfg = SynthConfig(
    shape=[24, 20, 16],
    label_values=[0, 1, 2],
    spacing=[1, 2, 3],
    output_labels=[0, 1, 1],
    flip_pairs=[[1, 2]],
    affine={"rotation": [-10, 10], "scaling": [0.9, 1.1]},
    bias=BiasConfig(std=[0.0, 0.5]),
    noise={"std": [0, 0.1], "prob": 1},
  )
  assert cfg.shape == (24, 20, 16) and isinstance(cfg.shape, tuple)
  assert cfg.label_values == (0, 1, 2) and isinstance(cfg.label_values, tuple)
  assert cfg.spacing == (1.0, 2.0, 3.0) and all(isinstance(s, float) for s in cfg.spacing)
  assert cfg.output_labels == (0, 1, 1) and isinstance(cfg.output_labels, tuple)
  assert cfg.flip_pairs == ((1, 2),) and isinstance(cfg.flip_pairs[0], tuple)
  assert isinstance(cfg.affine, AffineConfig) and cfg.affine.rotation == (-10.0, 10.0)
  assert isinstance(cfg.affine.rotation, tuple) and isinstance(cfg.affine.rotation[0], float)
  assert cfg.bias.std == (0.0, 0.5) and isinstance(cfg.bias.std, tuple)
  assert isinstance(cfg.noise, NoiseConfig) and cfg.noise.prob == 1.0
  assert_all_tuples(cfg)
  hash(cfg)


def test_numpy_values_are_normalised():
  cfg = make(
    shape=np.array([24, 24, 24]),
    label_values=np.array([0, 5, 7]),
    spacing=np.array([1.0, 1.0, 1.0]),
  )
  assert cfg == make(label_values=(0, 5, 7))
  assert all(type(v) is int for v in cfg.label_values + cfg.shape)
  hash(cfg)


def test_config_is_frozen():
  cfg = make()
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.shape = (8, 8, 8)
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.affine.prob = 0.5


def test_derived_properties():
  cfg = make(label_values=(0, 4, 9), output_labels=(0, 1, 0))
  assert cfg.num_labels == 3
  assert cfg.segmentation_values == (0, 1, 0)
  assert make(label_values=(0, 4, 9)).segmentation_values == (0, 4, 9)


# ---------------------------------------------------------------------------------------
# Validation: ValueError naming the field


@pytest.mark.parametrize(
  "build,field",
  [
    (lambda: AffineConfig(scaling=(-0.5, 1.0)), "scaling"),
    (lambda: AffineConfig(scaling=(0.0, 1.0)), "scaling"),
    (lambda: AffineConfig(rotation=(10, -10)), "rotation"),
    (lambda: AffineConfig(shear=(0, float("inf"))), "shear"),
    (lambda: AffineConfig(translation=(1,)), "translation"),
    (lambda: AffineConfig(prob=1.5), "prob"),
    (lambda: AffineConfig(prob=-0.1), "prob"),
    (lambda: DeformationConfig(grid_scale=(0.0, 0.1)), "grid_scale"),
    (lambda: DeformationConfig(grid_scale=(0.5, 1.5)), "grid_scale"),
    (lambda: DeformationConfig(steps=-1), "steps"),
    (lambda: DeformationConfig(std=(3.0, 1.0)), "std"),
    (lambda: FlipConfig(prob=2.0), "prob"),
    (lambda: FlipConfig(axis=3), "axis"),
    (lambda: GMMConfig(std=(-1.0, 5.0)), "std"),
    (lambda: GMMConfig(prob_background_zero=1.2), "prob_background_zero"),
    (lambda: GMMConfig(mean=(100.0, 50.0)), "mean"),
    (lambda: BiasConfig(grid_scale=(0.0, 0.1)), "grid_scale"),
    (lambda: BiasConfig(prob=1.01), "prob"),
    (lambda: GammaConfig(prob=-1.0), "prob"),
    (lambda: ResolutionConfig(prob=1.5), "prob"),
    (lambda: ResolutionConfig(prob_iso=-0.5), "prob_iso"),
    (lambda: ResolutionConfig(max_res_iso=0.0), "max_res_iso"),
    (lambda: ResolutionConfig(blur_range=0.5), "blur_range"),
    (lambda: NoiseConfig(std=(-0.1, 0.1)), "std"),
    (lambda: NoiseConfig(prob=3.0), "prob"),
    (lambda: make(label_values=(0, 1, 1, 2)), "label_values"),
    (lambda: make(label_values=()), "label_values"),
    (lambda: make(label_values=(0, -1)), "label_values"),
    (lambda: make(flip_pairs=((1, 5),)), "flip_pairs"),
    (lambda: make(flip_pairs=((1, 2), (2, 3))), "flip_pairs"),
    (lambda: make(output_labels=(0, 1)), "output_labels"),
    (lambda: make(background=7), "background"),
    (lambda: make(shape=(24, 24)), "shape"),
    (lambda: make(shape=(24, 1, 24)), "shape"),
    (lambda: make(spacing=(1.0, 0.0, 1.0)), "spacing"),
    (lambda: make(affine={"prob": 1.5}), "prob"),
    (lambda: make().replace(affine={"scaling": (-1.0, 1.0)}), "scaling"),
    (lambda: make().replace(noise={"prob": 2.0}), "prob"),
    (lambda: make().replace(label_values=(0, 0)), "label_values"),
  ],
)
def test_invalid_values_raise_with_field_name(build, field):
  with pytest.raises(ValueError, match=field):
    build()


def test_invalid_values_message_shows_the_value():
  with pytest.raises(ValueError, match="duplicates: \\[1\\]"):
    make(label_values=(0, 1, 1))
  with pytest.raises(ValueError, match="label 5"):
    make(flip_pairs=((1, 5),))
  with pytest.raises(ValueError, match="1.5"):
    AffineConfig(prob=1.5)


def test_gamma_rejects_negative_std_and_clip():
  with pytest.raises(ValueError):
    GammaConfig(std=-0.1)
  with pytest.raises(ValueError):
    GammaConfig(clip=0.0)


def test_wrong_stage_type_raises_type_error():
  with pytest.raises(TypeError, match="affine"):
    make(affine=BiasConfig())
  with pytest.raises(TypeError):
    make(affine={"no_such_field": 1})


@pytest.mark.parametrize("p", [0.0, 1.0, 0.5])
def test_probability_bounds_are_inclusive(p):
  assert AffineConfig(prob=p).prob == p
  assert GMMConfig(prob_background_zero=p).prob_background_zero == p


def _stage_fields():
  """(stage name, field name, default) of every declared field of every stage config."""
  from synthjax._src.config import _STAGE_TYPES

  out = []
  for stage, typ in _STAGE_TYPES.items():
    for f in dataclasses.fields(typ):
      out.append((stage, f.name, f.default))
  return out


def _bad_values(default):
  """Values every field of this kind must refuse: NaN and infinities in numbers, strings
  and non-integral numbers in integers, anything but a bool in flags."""
  nan, inf = float("nan"), float("inf")
  if isinstance(default, bool):
    return ["no", 1, None]
  if isinstance(default, int):
    return [2.5, "3", nan, True]
  if isinstance(default, float):
    return [nan, inf, -inf, "0.5", None]
  if (
    isinstance(default, tuple) and len(default) == 2 and all(isinstance(v, float) for v in default)
  ):
    return [(nan, 1.0), (0.0, inf), ("a", 1.0), (0.0,), 0.5]
  if (
    isinstance(default, tuple)
    and len(default) == 2
    and all(isinstance(v, int) and not isinstance(v, bool) for v in default)
  ):
    return [(1.5, 3), (1, nan), ("1", 2), 3]
  return []


_CASES = [(s, f, bad) for s, f, d in _stage_fields() for bad in _bad_values(d)]


@pytest.mark.parametrize("stage,field,bad", _CASES, ids=[f"{s}.{f}={b!r}" for s, f, b in _CASES])
def test_every_stage_field_refuses_nonsense_naming_field_and_value(stage, field, bad):
  with pytest.raises(ValueError, match=rf"\.{field}\b") as info:
    make(**{stage: {field: bad}})
  assert "got" in str(info.value)


def test_every_stage_field_is_declared_with_a_check():
  from synthjax._src.config import _STAGE_TYPES

  for stage, typ in _STAGE_TYPES.items():
    unchecked = [f.name for f in dataclasses.fields(typ) if "check" not in f.metadata]
    assert not unchecked, (stage, unchecked)
  assert len(_CASES) > 200


@pytest.mark.parametrize(
  "build,message",
  [
    (lambda: make(gamma={"std": float("nan")}), r"GammaConfig\.std must be a finite number"),
    (lambda: make(gamma={"clip": float("nan")}), r"GammaConfig\.clip"),
    (
      lambda: make(spike={"enabled": "no"}),
      r"SpikeConfig\.enabled must be true or false, got 'no'",
    ),
    (lambda: make(shape=(32.9, 32, 32)), r"SynthConfig\.shape must be 3 integers >= 2, got"),
    (lambda: make(resolution={"min_res": -1}), r"ResolutionConfig\.min_res must be positive"),
    (
      lambda: make(affine={"rotation": ("a", 1)}),
      r"AffineConfig\.rotation must be a \(low, high\) pair of finite numbers, got \('a', 1\)",
    ),
    (lambda: make(label_values=(0, 2**32 + 1)), r"label_values must be integers <= 2147483647"),
    (lambda: make(spacing=(1.0, float("nan"), 1.0)), r"SynthConfig\.spacing"),
    (lambda: SynthConfig.from_dict(None), "SynthConfig must be given as a dict"),
    (
      lambda: SynthConfig.from_dict({"shape": (8, 8, 8)}),
      r"missing the field\(s\) \['label_values'\]",
    ),
    (
      lambda: SynthConfig.from_dict({"shape": (8, 8, 8), "label_values": (0,), "colour": 1}),
      r"no field\(s\) \['colour'\]",
    ),
  ],
)
def test_nonsense_is_refused_with_a_clear_message(build, message):
  with pytest.raises(ValueError, match=message):
    build()


def test_integral_floats_from_json_are_integers():
  cfg = make(shape=(24.0, 24, 24), flip={"axis": 1.0}, deformation={"steps": 3.0})
  assert cfg.shape == (24, 24, 24) and type(cfg.shape[0]) is int
  assert type(cfg.flip.axis) is int and cfg.deformation.steps == 3
  assert make(spike={"enabled": np.bool_(True)}).spike.enabled is True


def test_unknown_stage_field_names_the_stage_and_its_fields():
  with pytest.raises(
    TypeError,
    match=r"SynthConfig\.bias has no field\(s\) \['colour'\]; "
    r"its fields are .*grid_scale",
  ):
    make().replace(bias={"colour": 1})


# ---------------------------------------------------------------------------------------
# replace


def test_replace_stage_dict_updates_only_named_fields():
  cfg = synthseg((0, 1, 2), (24, 24, 24))
  new = cfg.replace(bias={"prob": 0.25, "std": [0.0, 0.3]}, shape=(16, 16, 16))
  assert new.bias == dataclasses.replace(cfg.bias, prob=0.25, std=(0.0, 0.3))
  assert new.bias.grid_scale == cfg.bias.grid_scale and new.bias.enabled == cfg.bias.enabled
  assert new.shape == (16, 16, 16)
  for f in dataclasses.fields(cfg):
    if f.name not in ("bias", "shape"):
      assert getattr(new, f.name) == getattr(cfg, f.name), f.name
  assert cfg.bias.prob == 0.95 and cfg.shape == (24, 24, 24)  # original untouched


def test_replace_with_stage_instance_and_errors():
  cfg = make()
  new = cfg.replace(noise=NoiseConfig(std=(0.0, 0.1), prob=1.0))
  assert new.noise == NoiseConfig(std=(0.0, 0.1), prob=1.0)
  with pytest.raises(TypeError, match="no_such"):
    cfg.replace(no_such=1)
  with pytest.raises(TypeError):
    cfg.replace(bias={"no_such": 1})


def test_replace_round_trips_to_equal_config():
  cfg = make(flip_pairs=((1, 2),))
  assert cfg.replace(affine={"prob": 0.3}).replace(affine={"prob": 1.0}) == cfg


# ---------------------------------------------------------------------------------------
# JSON


@pytest.mark.parametrize(
  "build",
  [
    lambda: make(),
    lambda: synthseg(
      FS_VALUES,
      (32, 28, 24),
      (1.0, 1.2, 0.8),
      output_labels=(0, 2, 3, 41, 42, 0, 0),
      noise={"prob": 0.5, "std": (0.0, 0.05)},
    ),
    lambda: fetal(range(8), (40, 40, 40)),
    lambda: make(
      resolution=ResolutionConfig(min_res=1.5, random_thickness=False),
      deformation={"steps": 0},
      flip={"axis": 2},
    ),
  ],
)
def test_json_round_trip(build):
  cfg = build()
  text = cfg.to_json()
  d = json.loads(text)
  assert set(d) == {f.name for f in dataclasses.fields(SynthConfig)}
  assert d["affine"]["rotation"] == list(cfg.affine.rotation)
  back = SynthConfig.from_json(text)
  assert back == cfg and hash(back) == hash(cfg)
  assert_all_tuples(back)
  assert back.to_json() == text
  assert SynthConfig.from_dict(cfg.to_dict()) == cfg


def test_from_json_validates():
  d = json.loads(make().to_json())
  d["affine"]["prob"] = 3.0
  with pytest.raises(ValueError, match="prob"):
    SynthConfig.from_json(json.dumps(d))
  d = json.loads(make().to_json())
  d["flip_pairs"] = [[1, 9]]
  with pytest.raises(ValueError, match="flip_pairs"):
    SynthConfig.from_json(json.dumps(d))


# ---------------------------------------------------------------------------------------
# Presets


def test_synthseg_freesurfer_flip_pairs():
  cfg = synthseg(FS_VALUES, (32, 32, 32))
  assert set(cfg.flip_pairs) == {(2, 41), (3, 42), (1035, 2035)}
  assert len(cfg.flip_pairs) == 3
  # Only pairs with both sides present.
  assert synthseg((0, 2, 3, 41, 1035), (32, 32, 32)).flip_pairs == ((2, 41),)
  assert freesurfer_flip_pairs((0, 17, 53, 18, 3005, 4005, 11101, 12101, 1000)) == (
    (17, 53),
    (3005, 4005),
    (11101, 12101),
  )
  # Every pair of the full FreeSurfer lateralised table and cortical parcellation.
  left = [2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 17, 18, 26, 28, 30, 31]
  right = [41, 42, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 58, 60, 62, 63]
  ctx = list(range(1001, 1036))
  pairs = freesurfer_flip_pairs([0] + left + right + ctx + [v + 1000 for v in ctx])
  assert set(pairs) == set(zip(left, right)) | {(v, v + 1000) for v in ctx}


def test_synthseg_background_and_overrides():
  cfg = synthseg((0, 2, 41), (24, 24, 24))
  assert cfg.background == 0
  assert synthseg((5, 2, 41), (24, 24, 24)).background == 5
  new = synthseg(
    (0, 2, 41),
    (24, 24, 24),
    spacing=(1, 1, 2),
    flip_pairs=(),
    output_labels=(0, 1, 1),
    bias={"prob": 0.5},
    noise={"prob": 1.0, "std": (0.0, 0.05)},
    gamma=GammaConfig(std=0.1),
  )
  assert new.flip_pairs == () and cfg.flip_pairs == ((2, 41),)
  assert new.output_labels == (0, 1, 1)
  assert new.spacing == (1.0, 1.0, 2.0)
  assert new.bias == dataclasses.replace(cfg.bias, prob=0.5)
  assert new.noise == NoiseConfig(std=(0.0, 0.05), prob=1.0)
  assert new.gamma == GammaConfig(std=0.1)
  assert new.affine == cfg.affine and new.deformation == cfg.deformation
  with pytest.raises(ValueError, match="flip_pairs"):
    synthseg((0, 2, 41), (24, 24, 24), flip_pairs=((2, 3),))


def test_synthseg_defaults_follow_its_docstring():
  cfg = synthseg((0, 1), (32, 32, 32))
  assert (cfg.gmm.mean, cfg.gmm.std, cfg.gmm.prob_background_zero) == ((0, 250), (0, 30), 0.05)
  assert cfg.affine.rotation == (-15, 15) and cfg.affine.scaling == (0.8, 1.2)
  assert cfg.affine.shear == (-0.012, 0.012) and cfg.affine.translation == (0, 0)
  assert cfg.deformation.std == (0, 4) and cfg.deformation.grid_scale == (0.04, 0.04)
  assert cfg.deformation.steps == 7
  assert (cfg.bias.std, cfg.bias.grid_scale, cfg.bias.prob) == ((0, 0.7), (0.025, 0.025), 0.95)
  assert (cfg.gamma.std, cfg.gamma.clip) == (0.5, 300)
  r = cfg.resolution
  assert (r.max_res_iso, r.max_res_aniso, r.prob_iso, r.blur_factor) == (4, 8, 0.1, 0.75)
  assert (cfg.flip.prob, cfg.flip.axis) == (0.5, 0)
  assert cfg.noise.prob == 0.0  # SynthSeg adds no voxel noise


def test_fetal_preset():
  cfg = fetal(range(8), (40, 40, 40))
  assert cfg.noise.std == pytest.approx((5 / 255, 15 / 255))
  assert cfg.noise.prob == 0.9 and cfg.noise.enabled
  assert cfg.spacing == (0.5, 0.5, 0.5)
  assert cfg.flip_pairs == () and cfg.background == 0
  assert (cfg.gmm.mean, cfg.gmm.std) == ((25, 225), (5, 25))
  assert cfg.gmm.prob_background_zero == 0.5  # FetalSynthSeg's
  assert cfg.affine.rotation == (-20, 20) and cfg.affine.scaling == (0.9, 1.1)
  assert cfg.resolution.min_res == 0.5 and cfg.resolution.max_res_iso == 1.5
  for stage in ("affine", "deformation", "bias", "gamma", "resolution", "noise"):
    assert getattr(cfg, stage).prob == 0.9, stage
  assert fetal(range(8), (40, 40, 40), noise={"prob": 0.0}).noise.std == cfg.noise.std
  # At FetalSynthGen's own 0.5 mm grid, its voxel ranges as its generator config states them.
  assert cfg.deformation.std == (0, 4) and cfg.deformation.grid_scale == (0.03, 0.06)
  assert cfg.bias.grid_scale == (0.004, 0.02) and cfg.boundary.halo_radius == (5, 14)
  assert cfg.noise_spacing == (0.5, 0.5, 0.5) and cfg.voxel_std_scale == 1.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (0.8, 0.8, 3.2)])
def test_fetal_preset_keeps_its_lengths_in_millimetres(spacing):
  """The fetal preset's voxel-counted ranges describe FetalSynthGen's 0.5 mm grid; on
  another grid each is converted so that it spans the same millimetres."""
  ref, cfg = fetal(range(8), (40, 40, 40)), fetal(range(8), (40, 40, 40), spacing)
  mm = float(np.prod(spacing)) ** (1 / 3)  # the geometric mean voxel size
  r = 0.5 / mm
  assert cfg.spacing == spacing
  # Velocity std, in mm; small-grid node spacings (1 / grid_scale voxels), in mm.
  assert np.multiply(cfg.deformation.std, mm) == pytest.approx(
    np.multiply(ref.deformation.std, 0.5)
  )
  for stage in ("deformation", "bias", "subclusters"):
    got = mm / np.asarray(getattr(cfg, stage).grid_scale)
    want = 0.5 / np.asarray(getattr(ref, stage).grid_scale)
    assert got == pytest.approx(want), stage
  b, rb = cfg.boundary, ref.boundary
  assert b.halo_radius == (max(1, round(5 * r)), max(1, round(14 * r)))
  assert np.multiply(b.fuzzy_width, mm) == pytest.approx(np.multiply(rb.fuzzy_width, 0.5))
  assert np.multiply(b.fuzzy_jitter, mm) == pytest.approx(np.multiply(rb.fuzzy_jitter, 0.5))
  assert b.fuzzy_grid_scale == pytest.approx(min(1.0, rb.fuzzy_grid_scale / r))
  assert b.jitter_grid_scale == pytest.approx(min(1.0, rb.jitter_grid_scale / r))
  c, rc = cfg.blur_cortex, ref.blur_cortex
  for f in ("blob_sigma_scale", "blur_std_scale", "max_blur_std"):
    assert getattr(c, f) * mm == pytest.approx(getattr(rc, f) * 0.5), f
  n, rn = cfg.struct_noise, ref.struct_noise
  for f in ("sigma_mean", "sigma_std", "sigma_clip"):
    assert np.multiply(getattr(n, f), mm) == pytest.approx(np.multiply(getattr(rn, f), 0.5)), f
  # Per-voxel stds: given for 0.5 mm voxels, so scaled by the root of the volume ratio.
  assert cfg.voxel_std_scale == pytest.approx(np.sqrt(0.125 / np.prod(spacing)))
  # What is not counted in voxels stays: millimetres, degrees, probabilities, intensities.
  for stage in ("affine", "resolution", "slice_stack", "gmm", "noise", "gamma", "flip"):
    assert getattr(cfg, stage) == getattr(ref, stage), stage


# ---------------------------------------------------------------------------------------
# Configs as static jit arguments


def test_the_trace_counter_sees_each_compilation_and_no_cache_hit():
  import jax

  fn = jax.jit(lambda x, cfg: x * cfg.shape[0], static_argnums=1)
  cfg = synthseg((0, 1), (8, 8, 8))
  with traced() as seen:
    fn(1.0, cfg)
    fn(2.0, SynthConfig.from_json(cfg.to_json()))
    fn(3.0, synthseg((0, 1), (9, 8, 8)))
  assert seen["<lambda>"] == 2, seen


def test_equal_configs_share_one_compilation():
  import jax
  import jax.numpy as jnp

  cfg_a = synthseg(
    (0, 1, 2),
    (8, 8, 8),
    spacing=(1.0, 1.0, 1.25),
    deformation={"enabled": False},
    resolution={"enabled": False},
  )
  cfg_b = SynthConfig.from_json(cfg_a.to_json())
  assert cfg_a is not cfg_b
  with jax.disable_jit():
    p = synthjax.sample_params(jax.random.key(0), cfg_a)
  labels = jnp.zeros((8, 8, 8), jnp.int32).at[2:6, 2:6, 2:6].set(1)
  other = labels.at[0, 0, 0].set(2)
  with traced() as first:
    a = synthjax.synthesize(jax.random.key(1), p, labels, cfg_a)
  with traced() as again:
    b = synthjax.synthesize(jax.random.key(1), p, labels, cfg_b)
    c = synthjax.synthesize(jax.random.key(2), p, other, cfg_b)
  render = jit_name(synthjax._src.rendering._synthesize_jit)
  assert first[render] == 1 and again[render] == 0, (first, again)
  np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))
  np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b[1]))
  assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))


def test_synthseg_noise_is_disabled_and_a_positive_prob_enables_it():
  import jax

  cfg = synthjax.presets.synthseg((0, 1), (8, 8, 8))
  assert not cfg.noise.enabled  # SynthSeg adds no voxel noise
  on = synthjax.presets.synthseg((0, 1), (8, 8, 8), noise={"prob": 1.0, "std": (0.1, 0.1)})
  assert on.noise.enabled and on.noise.prob == 1.0
  assert not cfg.replace(noise={"std": (0.1, 0.2)}).noise.enabled
  assert not cfg.replace(noise={"prob": 1.0, "enabled": False}).noise.enabled
  with pytest.raises(ValueError, match="noise stage is disabled"):
    synthjax.sample_params(jax.random.key(0), cfg, fixed={"noise": {"applied": True}})
  synthjax.sample_params(jax.random.key(0), cfg, fixed={"noise": {"applied": False}})


def test_type_checkers_see_the_configs_as_frozen_dataclasses():
  """PEP 681: `config_class` is declared a dataclass transform (frozen, with `field` as a
  field specifier), and the package ships `py.typed` (PEP 561), so pyright and mypy check
  `SynthConfig(...)` and stage configs like any dataclass."""
  import importlib.resources
  import sys

  from synthjax._src import checks

  if sys.version_info >= (3, 11):
    spec = checks.config_class.__dataclass_transform__
    # Python 3.11 keeps `frozen_default` (PEP 681's, read by pyright) among `kwargs`.
    assert spec.get("frozen_default", spec["kwargs"].get("frozen_default")) is True
    assert checks.field in spec["field_specifiers"]
  assert importlib.resources.files("synthjax").joinpath("py.typed").is_file()
  cfg = SynthConfig(shape=(8, 8, 8), label_values=(0, 1))
  with pytest.raises(dataclasses.FrozenInstanceError):
    cfg.shape = (8, 8, 8)
