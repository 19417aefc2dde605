"""A stage added as its module, one registry line and one config field is rendered.

Each toy stage below is one module, written to a file as a contributor would write it in
`synthjax/_src/stages/`; it is registered with one registry line (its place and its stream
ids) and configured with one config field (`registry.config_variant`), and nothing else in
the package is edited. The render must pick it up in its phase: the toy's effect matches a
numpy reference, and switching it off gives the original output bit for bit.
"""

import importlib.util
import textwrap

import jax
import numpy as np
import pytest

import synthjax
from synthjax._src import registry
from synthjax._src.config import getattr_fields

SHAPE = (16, 16, 16)
LABEL_VALUES = (0, 1, 2, 3)

# A source: every voxel of label index `l` gets `level * (l + 1)`, where applied.
TOY_SOURCE = """
import jax.numpy as jnp

from synthjax._src.checks import config_class, field, flag, prob, real
from synthjax._src.ops import draw
from synthjax._src.stages.record import Stage


@config_class
class Config:
  level: float = field(default=10.0, check=real(low=0.0))
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


def sample(key, cfg, fixed=None):
  return {"applied": draw.pick(fixed, "applied", draw.bernoulli(key, cfg.prob))}


def render_source(key, image, p, cfg, ctx):
  toy = cfg.level * (ctx.index_map + 1).astype(jnp.float32)
  return jnp.where(p["applied"], toy, image)


STAGE = Stage("toy_source", lambda k, c, f: sample(k, c.toy_source, f), phase="source",
              apply=render_source)
"""

# A k-space stage: a linear phase ramp along `axis`, a circular shift of the image by
# `shift` voxels, where applied.
TOY_KSPACE = """
import numpy as np
import jax.numpy as jnp

from synthjax._src.checks import config_class, field, flag, integer, prob
from synthjax._src.ops import draw
from synthjax._src.stages.record import Stage


@config_class
class Config:
  shift: int = field(default=3, check=integer())
  axis: int = field(default=0, check=integer(low=0, high=2))
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


def sample(key, cfg, fixed=None):
  return {"applied": draw.pick(fixed, "applied", draw.bernoulli(key, cfg.prob))}


def shift_spectrum(key, spectrum, p, cfg, ctx):
  n = spectrum.k.shape[cfg.axis]
  ramp = np.exp(-2j * np.pi * np.fft.fftfreq(n) * cfg.shift).astype(np.complex64)
  shape = [1, 1, 1]
  shape[cfg.axis] = n
  ramp = jnp.where(p["applied"], jnp.asarray(ramp.reshape(shape)), 1.0)
  return spectrum._replace(k=spectrum.k * ramp.astype(spectrum.k.dtype))


STAGE = Stage("toy_shift", lambda k, c, f: sample(k, c.toy_shift, f), phase="kspace",
              apply=shift_spectrum)
"""


def _module(tmp_path, name, source):
  path = tmp_path / f"{name}.py"
  path.write_text(textwrap.dedent(source))
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _with(module, after: str, streams):
  """The config class of the package's stages plus `module`'s."""
  i = registry.NAMES.index(after) + 1
  # The registry line: the record where it renders, and its stream ids.
  stages = registry.register(
    (*registry.STAGES[:i], module.STAGE, *registry.STAGES[i:]),
    {**registry.STREAMS, module.STAGE.name: streams},
  )
  # The config field.
  return registry.config_variant(stages, **{module.STAGE.name: module.Config()})


def _labels():
  lab = np.zeros(SHAPE, np.int32)
  lab[2:14, 3:13, 4:12] = 1
  lab[5:11, 5:11, 5:11] = 2
  lab[7:9, 4:12, 6:10] = 3
  return lab


# Only the label Gaussians, without noise, on the unmoved labels: the image is the
# min-max normalised label means.
BARE = synthjax.SynthConfig(
  shape=SHAPE,
  label_values=LABEL_VALUES,
  gmm={"std": (0.0, 0.0), "prob_background_zero": 0.0},
  **{s.name: {"enabled": False} for s in registry.STAGES if s.configured and s.name != "gmm"},
)
# Stages of every phase on, the k-space group included.
FULL = synthjax.presets.synthseg(
  LABEL_VALUES,
  SHAPE,
  noise={"prob": 1.0, "std": (0.02, 0.05)},
  gibbs={"prob": 1.0, "alpha": (0.3, 0.5)},
  flip_pairs=((1, 3),),
)


def _render(cfg, key=0):
  params = synthjax.sample_params(jax.random.key(key), cfg)
  image, seg = synthjax.synthesize(jax.random.key(key + 100), params, _labels(), cfg)
  return params, np.asarray(image), np.asarray(seg)


def _variant(cls, base, **stage):
  """`base` as an instance of `cls`, with the toy's config fields in `stage` (a positive
  `prob` enables it, as for any stage)."""
  return cls(**getattr_fields(base)).replace(**stage)


def _minmax(x):
  x = np.asarray(x, np.float32)
  return (x - x.min()) / (x.max() - x.min())


def _check_off_is_the_original(cls, name):
  """The variant with the toy disabled renders the package's config bit for bit, from the
  same params for every other stage (each stage draws from its own stream)."""
  plain_params, plain, plain_seg = _render(FULL)
  params, image, seg = _render(_variant(cls, FULL))
  assert not getattr(_variant(cls, FULL), name).enabled
  np.testing.assert_array_equal(image, plain)
  np.testing.assert_array_equal(seg, plain_seg)
  for stage, entries in plain_params.items():
    for entry, value in entries.items():
      np.testing.assert_array_equal(params[stage][entry], value, err_msg=f"{stage}.{entry}")
  return plain


def test_a_toy_source_stage_is_rendered_from_its_module_registry_line_and_field(tmp_path):
  toy = _module(tmp_path, "toy_source", TOY_SOURCE)
  cls = _with(toy, after="image_intensity", streams=registry.Streams(params=22))
  assert [s.name for s in registry.stages_of(_variant(cls, BARE)) if s.phase == "source"] == [
    "gmm",
    "subclusters",
    "image_intensity",
    "toy_source",
  ]

  lab = _labels()
  params, image, _ = _render(BARE)
  means = np.asarray(params["gmm"]["means"], np.float32)
  np.testing.assert_allclose(image, _minmax(means[lab]), rtol=1e-6, atol=1e-6)
  on = _variant(cls, BARE, toy_source={"prob": 1.0, "level": 7.0})
  _, image, _ = _render(on)
  # level * (index + 1), normalised: the label index itself over its range.
  np.testing.assert_allclose(image, _minmax(lab + 1.0), rtol=1e-6, atol=1e-6)

  plain = _check_off_is_the_original(cls, "toy_source")
  _, image, _ = _render(_variant(cls, FULL, toy_source={"prob": 1.0}))
  assert np.abs(image - plain).mean() > 1e-2


def test_a_toy_kspace_stage_transforms_the_shared_spectrum(tmp_path):
  toy = _module(tmp_path, "toy_shift", TOY_KSPACE)
  cls = _with(toy, after="spike", streams=registry.Streams(params=23))
  assert [s.name for s in registry.stages_of(_variant(cls, BARE)) if s.phase == "kspace"] == [
    "gibbs",
    "ghosting",
    "spike",
    "toy_shift",
  ]

  lab = _labels()
  params, _, _ = _render(BARE)
  means = np.asarray(params["gmm"]["means"], np.float32)
  on = _variant(cls, BARE, toy_shift={"prob": 1.0, "shift": 5, "axis": 1})
  _, image, seg = _render(on)
  # The magnitude of the shifted spectrum: the image rolled by 5 voxels along axis 1 (the
  # segmentation is not moved: k-space stages act on the image only).
  np.testing.assert_allclose(image, np.roll(_minmax(means[lab]), 5, axis=1), atol=1e-4)
  np.testing.assert_array_equal(seg, lab)

  _check_off_is_the_original(cls, "toy_shift")
  # With Gibbs ringing on, both transform one spectrum (and the masks commute with the
  # shift): the ringing of the shifted image is the shifted ringing. Without the noise
  # that follows the k-space group, that is the whole image.
  ringing = _variant(cls, FULL, noise={"enabled": False})
  _, plain, _ = _render(ringing)
  _, image, _ = _render(ringing.replace(toy_shift={"prob": 1.0, "shift": 4, "axis": 2}))
  assert np.abs(image - plain).mean() > 1e-2
  np.testing.assert_allclose(image, np.roll(plain, 4, axis=2), atol=1e-4)


def test_the_registry_refuses_a_stage_without_streams_or_out_of_its_phase(tmp_path):
  toy = _module(tmp_path, "toy_source_refused", TOY_SOURCE)
  after_gmm = registry.NAMES.index("gmm") + 1
  with pytest.raises(ValueError, match="'toy_source' has no stream ids"):
    registry.register(registry.STAGES + (toy.STAGE,))
  with pytest.raises(ValueError, match="'toy_source' has the params stream 4 of stage 'gmm'"):
    registry.register(
      registry.STAGES[:after_gmm] + (toy.STAGE,) + registry.STAGES[after_gmm:],
      {**registry.STREAMS, "toy_source": registry.Streams(params=4)},
    )
  with pytest.raises(ValueError, match="'toy_source' \\(source\\) is listed after a later"):
    registry.register(
      registry.STAGES + (toy.STAGE,),
      {**registry.STREAMS, "toy_source": registry.Streams(params=22)},
    )
  stages = registry.register(
    registry.STAGES[:after_gmm] + (toy.STAGE,) + registry.STAGES[after_gmm:],
    {**registry.STREAMS, "toy_source": registry.Streams(params=22)},
  )
  with pytest.raises(ValueError, match=r"stage\(s\) \['toy_source'\] have no config field"):
    registry.config_variant(stages)
  with pytest.raises(ValueError, match=r"field\(s\) \['other'\] have no registered stage"):
    registry.config_variant(stages, toy_source=toy.Config(), other=toy.Config())


def test_fixed_values_of_a_variant_stage_are_checked_like_the_registry_stages():
  """`fixed` and params JSON are checked against the config's own registry: a variant's
  stage refuses a value outside its domain and `applied` while disabled, as `noise` does."""
  import dataclasses

  from synthjax._src.stages import noise

  again = dataclasses.replace(noise.STAGE, name="noise_again")
  stages = registry.register(
    registry.STAGES + (again,), {**registry.STREAMS, "noise_again": registry.Streams(22, 10)}
  )
  Config = registry.config_variant(stages, noise_again=noise.NoiseConfig(enabled=True))
  cfg = Config(shape=(8, 8, 8), label_values=(0, 1))
  key = jax.random.key(0)
  for name in ("noise", "noise_again"):
    with pytest.raises(ValueError, match=rf"fixed {name}\.std .*outside"):
      synthjax.sample_params(key, cfg, fixed={name: {"std": -1.0}})
  off = dataclasses.replace(cfg, noise_again=noise.NoiseConfig(enabled=False))
  with pytest.raises(ValueError, match="noise_again stage is disabled"):
    synthjax.sample_params(key, off, fixed={"noise_again": {"applied": True}})
  p = synthjax.sample_params(key, cfg, fixed={"noise_again": {"std": 0.25}})
  assert float(p["noise_again"]["std"]) == 0.25
