"""The ordered registry of the generator's stages, and their stream ids.

Each stage lives in one module of `synthjax/_src/stages/`: its config dataclass, its
`sample`, its `apply` and a `Stage` record (`stages/record.py`) that names them with the
stage's phase (spatial, labels, source, image or k-space), whether it is drawn per channel and the
physical domain of its params. `STAGES` lists the records in render order and `STREAMS`
gives each stage's stream ids; nothing else lists the stages:

* `sample_params` (`sampling.py`) walks `STAGES` to draw every stage's params from its own
  stream, once per channel for the stages drawn per channel; the names a `fixed` dict may
  use, the params JSON template and the disabled-stage rule follow from what each sampler
  returns.
* `render` (`rendering.py`) walks `STAGES` by phase: the spatial stages compose one
  coordinate map (`record.Placement`) and the labels (with what the sources `carry`) are
  gathered through it once; the label stages edit the gathered map; the sources render the
  intensity image on the deformed labels; then the image stages render in registry order,
  and the k-space stages, where the first of them stands, transform one shared spectrum
  (`record.Spectrum`) between one FFT and one magnitude reconstruction.
* The spatial stages' names (`views.SPATIAL_STAGES`, `warp`) and the stages drawn per
  channel (`channels.CHANNEL_STAGES`) are read from the records.

Adding a stage:

1. one module in `synthjax/_src/stages/` with its config (`checks.config_class`), its
   `sample(key, config, fixed)`, its `apply` for its phase (`record.Stage.phase` says what
   it receives and returns) and its `STAGE = Stage(name, sample, phase=..., apply=...)`;
2. its record's line in `STAGES`, where it renders, and its stream ids appended to
   `STREAMS` (`name=Streams(params=next id, synth=next id or None)`);
3. its field in `SynthConfig` (`config.py`), named as the stage.

The generator needs no edit: a new source renders after the sources before it, a new
k-space stage transforms the shared spectrum in its order. `config_variant` builds the
same three steps without editing the package (a `SynthConfig` subclass with the extra
field, whose stages are a registry of its own), as the tests of the registry do.

Stream ids are how a stage's randomness is separated from the others'
(`jax.random.fold_in(key, id)`): switching one stage off or adding a new one leaves every
other stage's draws unchanged. They are part of the replay contract: never renumber, only
append (`tests/test_registry.py` pins them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from synthjax._src.config import SynthConfig, _stage_types
from synthjax._src.stages import (
  bias,
  blur_cortex,
  boundary,
  gamma,
  geometry,
  gmm,
  grow_labels,
  image_intensity,
  kspace,
  motion,
  noise,
  resolution,
  rician,
  slice_stack,
  struct_noise,
  subclusters,
  texture,
)
from synthjax._src.stages.record import (
  PHASES,
  Bounds,
  Placement,
  RenderContext,
  SpatialContext,
  Spectrum,
  Stage,
)

__all__ = [
  "Bounds",
  "Placement",
  "RenderContext",
  "SpatialContext",
  "Spectrum",
  "Stage",
  "Streams",
  "STAGES",
  "STREAMS",
  "BY_NAME",
  "NAMES",
  "by_name",
  "config_variant",
  "enabled",
  "in_phase",
  "register",
  "stage_config",
  "stages_of",
  "synth_stream",
]


class Streams(NamedTuple):
  """A stage's `fold_in` ids: of its key in `sample_params` (`params`) and in `synthesize`
  (`synth`, None for a stage whose rendering draws nothing)."""

  params: int
  synth: int | None = None


# Every stage's stream ids, by name. The replay contract: never renumber, only append.
STREAMS: Mapping[str, Streams] = dict(
  affine=Streams(params=0),
  deformation=Streams(params=1, synth=0),
  crop=Streams(params=2),
  flip=Streams(params=3),
  gmm=Streams(params=4, synth=1),
  bias=Streams(params=5, synth=2),
  gamma=Streams(params=6),
  resolution=Streams(params=7),
  noise=Streams(params=8, synth=3),
  spike=Streams(params=9),
  ghosting=Streams(params=10),
  gibbs=Streams(params=11),
  rician=Streams(params=12, synth=4),
  subclusters=Streams(params=13, synth=5),
  image_intensity=Streams(params=14),
  motion=Streams(params=15),
  slice_stack=Streams(params=16),
  texture=Streams(params=17, synth=6),
  struct_noise=Streams(params=18, synth=7),
  blur_cortex=Streams(params=19, synth=8),
  boundary=Streams(params=20, synth=9),
  grow_labels=Streams(params=21),
)


def register(
  stages: Sequence[Stage], streams: Mapping[str, Streams] = STREAMS
) -> tuple[Stage, ...]:
  """The records of `stages`, in their order, with their stream ids from `streams`.

  Raises:
    ValueError: a stage listed twice, without stream ids, or whose ids another stage has;
      a spatial stage after a non-spatial one, or a source after an image or k-space
      stage (those phases render before the others).
  """
  out, seen_params, seen_synth = [], {}, {}
  phase_rank = {"spatial": 0, "labels": 1, "source": 2}
  last_rank = 0
  for stage in stages:
    if stage.name in (s.name for s in out):
      raise ValueError(f"stage {stage.name!r} is registered twice")
    if stage.name not in streams:
      raise ValueError(
        f"stage {stage.name!r} has no stream ids: add "
        f"{stage.name}=Streams(params=..., synth=...) to the registry's STREAMS"
      )
    ids = Streams(*streams[stage.name])
    for table, value, kind in (
      (seen_params, ids.params, "params"),
      (seen_synth, ids.synth, "synth"),
    ):
      if value is not None and value in table:
        raise ValueError(
          f"stage {stage.name!r} has the {kind} stream {value} of stage {table[value]!r}"
        )
      table[value] = stage.name
    rank = phase_rank.get(stage.phase, 3)
    if rank < last_rank:
      raise ValueError(
        f"stage {stage.name!r} ({stage.phase}) is listed after a later phase: "
        f"the spatial stages come first, then the label stages, then the sources"
      )
    last_rank = rank
    out.append(dataclasses.replace(stage, param_stream=ids.params, synth_stream=ids.synth))
  return tuple(out)


# In render order. The k-space group renders where its first stage stands, on one spectrum.
STAGES: tuple[Stage, ...] = register(
  (
    *geometry.STAGES,  # affine, deformation, crop, flip: one coordinate map
    grow_labels.STAGE,  # edits of the deformed labels: the anatomy
    gmm.STAGE,  # intensity sources: Gaussians per label,
    subclusters.STAGE,  # or per sub-label class,
    image_intensity.STAGE,  # or a real image
    texture.STAGE,
    bias.STAGE,
    gamma.STAGE,
    blur_cortex.STAGE,
    resolution.STAGE,
    slice_stack.STAGE,
    motion.STAGE,
    *kspace.STAGES,  # gibbs, ghosting, spike: one spectrum
    rician.STAGE,
    noise.STAGE,
    struct_noise.STAGE,
    boundary.STAGE,
  )
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def stages_of(config) -> tuple[Stage, ...]:
  """The stages `config` renders: its class's own registry (`config_variant`), else
  `STAGES`."""
  return getattr(type(config), "registry", None) or STAGES


def by_name(config) -> dict[str, Stage]:
  """`stages_of(config)` by name."""
  stages = stages_of(config)
  return BY_NAME if stages is STAGES else {s.name: s for s in stages}


def in_phase(config, phase: str) -> tuple[Stage, ...]:
  """The stages of `phase` (`record.PHASES`) that `config` renders, in registry order."""
  if phase not in PHASES:
    raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
  return tuple(s for s in stages_of(config) if s.phase == phase)


def stage_config(stage: Stage, config):
  """The stage's config in `config`, or None for a stage without one (the crop)."""
  return getattr(config, stage.name) if stage.configured else None


def enabled(stage: Stage, config) -> bool:
  """Whether `config` renders `stage` (a stage without a config always renders)."""
  return not stage.configured or getattr(config, stage.name).enabled


def synth_stream(name: str) -> int:
  """The `fold_in` id of stage `name`'s key in `synthesize`."""
  stream = BY_NAME[name].synth_stream
  if stream is None:
    raise KeyError(f"stage {name!r} draws no realisations in synthesize")
  return stream


def config_variant(
  stages: Sequence[Stage], *, base: type = SynthConfig, name: str | None = None, **fields
) -> type:
  """A `base` subclass with extra stage fields, whose samples render `stages`.

  The three steps of adding a stage (module, registry line, config field) without editing
  the package: `stages` is a registry of its own (`register`'s output), `fields` the new
  stages' configs (`name=default config`, as `SynthConfig` declares its stages). Every
  function that takes a `SynthConfig` takes an instance and walks its `stages`.

  Args:
    stages: the registered stages, in render order.
    base: the config class to extend.
    name: the new class's name (default: `base`'s).
    **fields: the default config of each new stage, by stage name.

  Returns:
    The config class (a frozen dataclass, hashable, a static argument of `jax.jit`).

  Raises:
    ValueError: a configured stage without a field, or a stage field without a stage.

  Examples:
    >>> import dataclasses
    >>> from synthjax._src.stages import noise
    >>> again = dataclasses.replace(noise.STAGE, name="noise_again")  # a second noise
    >>> stages = register(STAGES + (again,), {**STREAMS, "noise_again": Streams(22, 10)})
    >>> Config = config_variant(stages, noise_again=noise.NoiseConfig())
    >>> cfg = Config(shape=(8, 8, 8), label_values=(0, 1), noise_again={"prob": 0.5})
    >>> cfg.noise_again.prob, [s.name for s in stages_of(cfg)][-2:]
    (0.5, ['boundary', 'noise_again'])
  """
  for field_name, default in fields.items():
    if not dataclasses.is_dataclass(default) or not hasattr(default, "enabled"):
      raise TypeError(
        f"field {field_name!r} must default to a stage config (a config_class "
        f"with `enabled`), got {type(default).__name__}"
      )
  have = set(_stage_types(base)) | set(fields)
  configured = {s.name for s in stages if s.configured}
  if configured - have:
    raise ValueError(
      f"stage(s) {sorted(configured - have)} have no config field: pass them as keyword arguments"
    )
  if have - configured:
    raise ValueError(f"config field(s) {sorted(have - configured)} have no registered stage")
  namespace = {
    "__annotations__": {n: type(v) for n, v in fields.items()},
    "__module__": base.__module__,
    **fields,
  }
  cls = type(name or base.__name__, (base,), namespace)
  cls = dataclasses.dataclass(frozen=True)(cls)
  cls.registry = tuple(stages)  # not a field: the class's stages, for `stages_of`
  return cls
