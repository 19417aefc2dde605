"""The ordered registry of the generator's stages.

One record per stage holds what the generator needs to know about it outside its render
code: the `SynthConfig` field that configures it, the ids of its random streams, and the
function that draws its params. `sample_params` walks the registry in order; the names a
`fixed` dict may use, the params JSON template and the disabled-stage rule all follow from
the params each stage's sampler returns, so no other table lists the stages.

Stream ids are how a stage's randomness is separated from the others'
(`jax.random.fold_in(key, id)`): switching one stage off or adding a new one leaves every
other stage's draws unchanged. They are part of the replay contract: never renumber, only
append (`tests/test_registry.py` pins them).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional

from synthjax._src import artifacts
from synthjax._src import draw
from synthjax._src import fetal_artifacts
from synthjax._src import intensity
from synthjax._src import motion
from synthjax._src import resolution
from synthjax._src import slice_stack
from synthjax._src import spatial
from synthjax._src import subclusters
from synthjax._src import texture


@dataclasses.dataclass(frozen=True)
class Stage:
  """What the generator knows about one stage.

  Attributes:
    name: the stage's key in the params pytree and in `fixed`; also the name of its
      `SynthConfig` field, unless `configured` is False.
    param_stream: `fold_in` id of the stage's key in `sample_params`.
    synth_stream: `fold_in` id of the stage's key in `synthesize` (its realisations: fields
      and voxel noise), or None if rendering it draws nothing.
    sample: `(key, config, fixed) -> dict of arrays`, the stage's params for a
      `SynthConfig`; a value present in `fixed` (the stage's sub-dict) is used as is.
    configured: whether `SynthConfig` has a field of this name (the crop has none: it
      always applies, to whatever room the label map leaves).
    domain: the physical domain of each bounded entry (`Bounds`); `params_from_json` and
      `fixed` refuse values outside it. Every float entry must be finite whatever its
      domain.
  """
  name: str
  param_stream: int
  synth_stream: Optional[int]
  sample: Callable
  configured: bool = True
  domain: Mapping[str, "Bounds"] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Bounds:
  """The values a params entry may take: `low <= v <= high` (`low < v` if `low_open`).

  `at_most_rows` bounds an integer count by the static number of rows of another entry
  (e.g. `num_spikes` by the rows of `positions`).
  """
  low: Optional[float] = None
  high: Optional[float] = None
  low_open: bool = False
  at_most_rows: Optional[str] = None

  def describe(self, high=None) -> str:
    high = self.high if high is None else high
    lo = "-inf" if self.low is None else f"{self.low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{'(' if self.low_open else '['}{lo}, {hi}]"


NONNEG = Bounds(0.0)
POSITIVE = Bounds(0.0, low_open=True)
UNIT = Bounds(0.0, 1.0)
GRID = Bounds(0.0, 1.0, low_open=True)  # a small grid's size as a fraction of the shape
AXIS = Bounds(0, 2)
ANGLE = Bounds(-180.0, 180.0)  # degrees


def _count(rows_of: str, low: int = 0) -> Bounds:
  return Bounds(low, at_most_rows=rows_of)


def _image_intensity(key, c, f):
  return {"applied": draw.pick(f, "applied", draw.bernoulli(key, c.image_intensity.prob))}


# Ordered as `sample_params` draws and records them.
STAGES: tuple[Stage, ...] = (
    Stage("affine", 0, None, lambda k, c, f: spatial.sample_affine(k, c.affine, f),
          domain={"rotation": ANGLE, "scaling": POSITIVE, "object_size": POSITIVE}),
    Stage("deformation", 1, 0,
          lambda k, c, f: spatial.sample_deformation(k, c.deformation, f),
          # A negative std negates the velocity (the inverse flow): valid in params.
          domain={"grid_scale": GRID}),
    Stage("crop", 2, None, lambda k, c, f: spatial.sample_crop(k, f), configured=False,
          domain={"position": UNIT}),
    Stage("flip", 3, None, lambda k, c, f: spatial.sample_flip(k, c.flip, f)),
    Stage("gmm", 4, 1, lambda k, c, f: intensity.sample_gmm(k, c.gmm, c.num_labels, f),
          domain={"stds": NONNEG}),
    Stage("bias", 5, 2, lambda k, c, f: intensity.sample_bias(k, c.bias, f),
          domain={"std": NONNEG, "grid_scale": GRID}),
    Stage("gamma", 6, None, lambda k, c, f: intensity.sample_gamma(k, c.gamma, f)),
    Stage("resolution", 7, None,
          lambda k, c, f: resolution.sample_resolution(k, c.resolution, c.spacing, f),
          domain={"resolution": POSITIVE, "thickness": POSITIVE, "blur_scale": POSITIVE}),
    Stage("noise", 8, 3, lambda k, c, f: intensity.sample_noise(k, c.noise, f),
          domain={"std": NONNEG}),
    Stage("spike", 9, None, lambda k, c, f: artifacts.sample_spike(k, c.spike, f),
          domain={"positions": UNIT, "num_spikes": _count("positions")}),
    Stage("ghosting", 10, None, lambda k, c, f: artifacts.sample_ghosting(k, c.ghosting, f),
          domain={"axis": AXIS, "intensity": NONNEG, "num_ghosts": NONNEG}),
    Stage("gibbs", 11, None, lambda k, c, f: artifacts.sample_gibbs(k, c.gibbs, f),
          domain={"alpha": UNIT}),
    Stage("rician", 12, 4, lambda k, c, f: artifacts.sample_rician(k, c.rician, f),
          domain={"std": NONNEG}),
    Stage("subclusters", 13, 5, lambda k, c, f: subclusters.sample_subclusters(
        k, c.subclusters, c.gmm, subclusters.num_meta(c), f),
          domain={"counts": Bounds(1, 10), "stds": NONNEG, "grid_scale": GRID}),
    Stage("image_intensity", 14, None, _image_intensity),
    Stage("motion", 15, None, lambda k, c, f: motion.sample_motion(k, c.motion, f),
          domain={"axis": AXIS, "times": UNIT, "num_transforms": _count("degrees")}),
    Stage("slice_stack", 16, None, lambda k, c, f: slice_stack.sample_slice_stack(
        k, c.slice_stack, c.shape, c.spacing, f),
          domain={"thickness": POSITIVE, "rotation_std": NONNEG, "translation_std": NONNEG,
                  "num_stacks": _count("active", 1), "interleave": Bounds(1)}),
    Stage("texture", 17, 6,
          lambda k, c, f: texture.sample_texture(k, c.texture, c.num_labels, f),
          domain={"amplitude": NONNEG, "weights": NONNEG, "num_scales": _count("weights", 1)}),
    Stage("struct_noise", 18, 7,
          lambda k, c, f: texture.sample_struct_noise(k, c.struct_noise, f),
          domain={"std": NONNEG, "sigmas": POSITIVE, "num_blobs": _count("sigmas"),
                  "num_stages": Bounds(1)}),
    Stage("blur_cortex", 19, 8,
          lambda k, c, f: fetal_artifacts.sample_blur_cortex(k, c.blur_cortex, f),
          domain={"blob_sigma": POSITIVE, "blur_std": NONNEG, "nblur": _count("blob_sigma")}),
    Stage("boundary", 20, 9,
          lambda k, c, f: fetal_artifacts.sample_boundary(k, c.boundary, f),
          domain={"halo_radius": NONNEG, "fuzzy_width": NONNEG, "fuzzy_jitter": NONNEG}),
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def synth_stream(name: str) -> int:
  """The `fold_in` id of stage `name`'s key in `synthesize`."""
  stream = BY_NAME[name].synth_stream
  if stream is None:
    raise KeyError(f"stage {name!r} draws no realisations in synthesize")
  return stream
