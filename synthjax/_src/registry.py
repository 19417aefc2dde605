"""The ordered registry of the generator's stages.

One record per stage holds what the generator needs to know about it: the `SynthConfig`
field that configures it, the ids of its random streams, the function that draws its
params, their physical domain, and for the image stages the function that renders them.
`sample_params` walks the registry to draw the params and `generator.render` walks it to
render the image stages, in the registry's order; the names a `fixed` dict may use, the
params JSON template and the disabled-stage rule all follow from the params each stage's
sampler returns, so no other table lists the stages.

Stream ids are how a stage's randomness is separated from the others'
(`jax.random.fold_in(key, id)`): switching one stage off or adding a new one leaves every
other stage's draws unchanged. They are part of the replay contract: never renumber, only
append (`tests/test_registry.py` pins them).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, NamedTuple, Optional

import numpy as np
import jax
import jax.numpy as jnp

from synthjax._src import artifacts
from synthjax._src import draw
from synthjax._src import fetal_artifacts
from synthjax._src import intensity
from synthjax._src import lookup
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
    phase: where `generator.render` renders the stage: `"geometry"` and `"source"` (the
      fused coordinate map and intensity source, rendered explicitly), `"kspace"` (one
      spectrum for the group), or `"image"`: `apply` in registry order.
    apply: image stages: `(key, image, params, stage_config, ctx) -> image`, with the
      stage's synthesis key (None without a `synth_stream`) and a `RenderContext`.
    off: image stages: `(image, stage_config) -> image` rendered when the config disables
      the stage (None: the image passes unchanged).
  """
  name: str
  param_stream: int
  synth_stream: Optional[int]
  sample: Callable
  configured: bool = True
  domain: Mapping[str, "Bounds"] = dataclasses.field(default_factory=dict)
  phase: str = "image"
  apply: Optional[Callable] = None
  off: Optional[Callable] = None


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


class RenderContext(NamedTuple):
  """What an image stage may read besides the image: the deformed label-index map (masks
  are looked up from it through small tables, no one-hot volumes), the segmentation value
  of each label index, the background's index, and the grid."""
  index_map: jax.Array
  seg_values: np.ndarray
  background_index: int
  shape: tuple
  spacing: tuple


def _mask(values, ctx: RenderContext):
  """The voxels whose label's segmentation value is one of `values`."""
  return lookup.take_small(np.isin(ctx.seg_values, values), ctx.index_map)


def _bias(k, x, p, c, ctx):
  return x * jax.lax.cond(p["applied"], lambda: intensity.bias_field(k, p, c, ctx.shape),
                          lambda: jnp.ones(ctx.shape, jnp.float32))


# In render order: the geometry phase, the intensity sources, then the image stages (the
# k-space group is rendered on one spectrum). Stream ids are explicit, so the order is
# free to follow the rendering; `sample_params` draws every stage from its own stream.
STAGES: tuple[Stage, ...] = (
    # Geometry: one coordinate map and one gather of the labels (`generator.render`).
    Stage("affine", 0, None, lambda k, c, f: spatial.sample_affine(k, c.affine, f),
          domain={"rotation": ANGLE, "scaling": POSITIVE, "object_size": POSITIVE},
          phase="geometry"),
    Stage("deformation", 1, 0,
          lambda k, c, f: spatial.sample_deformation(k, c.deformation, f),
          # A negative std negates the velocity (the inverse flow): valid in params.
          domain={"grid_scale": GRID}, phase="geometry"),
    Stage("crop", 2, None, lambda k, c, f: spatial.sample_crop(k, f), configured=False,
          domain={"position": UNIT}, phase="geometry"),
    Stage("flip", 3, None, lambda k, c, f: spatial.sample_flip(k, c.flip, f),
          phase="geometry"),
    # Intensity sources: Gaussians per label or per sub-label class, or a real image.
    Stage("gmm", 4, 1, lambda k, c, f: intensity.sample_gmm(k, c.gmm, c.num_labels, f),
          domain={"stds": NONNEG}, phase="source"),
    Stage("subclusters", 13, 5, lambda k, c, f: subclusters.sample_subclusters(
        k, c.subclusters, c.gmm, subclusters.num_meta(c), f),
          domain={"counts": Bounds(1, 10), "stds": NONNEG, "grid_scale": GRID},
          phase="source"),
    Stage("image_intensity", 14, None, _image_intensity, phase="source"),
    # Image stages, each `apply(key, image, params, stage_config, ctx)`.
    Stage("texture", 17, 6,
          lambda k, c, f: texture.sample_texture(k, c.texture, c.num_labels, f),
          domain={"amplitude": NONNEG, "weights": NONNEG, "num_scales": _count("weights", 1)},
          apply=lambda k, x, p, c, ctx: texture.apply_texture(
              k, x, p, c, ctx.index_map, background_index=ctx.background_index)),
    Stage("bias", 5, 2, lambda k, c, f: intensity.sample_bias(k, c.bias, f),
          domain={"std": NONNEG, "grid_scale": GRID}, apply=_bias),
    Stage("gamma", 6, None, lambda k, c, f: intensity.sample_gamma(k, c.gamma, f),
          apply=lambda k, x, p, c, ctx: intensity.apply_gamma(x, p, c),
          # Without gamma the image is still clipped and brought to [0, 1].
          off=lambda x, c: intensity.normalize(jnp.clip(x, 0.0, c.clip))),
    Stage("blur_cortex", 19, 8,
          lambda k, c, f: fetal_artifacts.sample_blur_cortex(k, c.blur_cortex, f),
          domain={"blob_sigma": POSITIVE, "blur_std": NONNEG, "nblur": _count("blob_sigma")},
          apply=lambda k, x, p, c, ctx: fetal_artifacts.apply_blur_cortex(
              k, x, p, c, _mask((c.cortex_label,), ctx))),
    Stage("resolution", 7, None,
          lambda k, c, f: resolution.sample_resolution(k, c.resolution, c.spacing, f),
          domain={"resolution": POSITIVE, "thickness": POSITIVE, "blur_scale": POSITIVE},
          apply=lambda k, x, p, c, ctx: resolution.apply_resolution(x, p, c, ctx.spacing)),
    Stage("slice_stack", 16, None, lambda k, c, f: slice_stack.sample_slice_stack(
        k, c.slice_stack, c.shape, c.spacing, f),
          domain={"thickness": POSITIVE, "rotation_std": NONNEG, "translation_std": NONNEG,
                  "num_stacks": _count("active", 1), "interleave": Bounds(1)},
          apply=lambda k, x, p, c, ctx: slice_stack.apply_slice_stack(None, x, p, c,
                                                                      ctx.spacing)),
    Stage("motion", 15, None, lambda k, c, f: motion.sample_motion(k, c.motion, f),
          domain={"axis": AXIS, "times": UNIT, "num_transforms": _count("degrees")},
          apply=lambda k, x, p, c, ctx: motion.apply_motion(x, p, c, ctx.spacing)),
    # The k-space group: Gibbs truncation, ghosting and spikes on one spectrum with one
    # magnitude reconstruction (`artifacts.apply_kspace_stages`).
    Stage("spike", 9, None, lambda k, c, f: artifacts.sample_spike(k, c.spike, f),
          domain={"positions": UNIT, "num_spikes": _count("positions")}, phase="kspace"),
    Stage("ghosting", 10, None, lambda k, c, f: artifacts.sample_ghosting(k, c.ghosting, f),
          domain={"axis": AXIS, "intensity": NONNEG, "num_ghosts": NONNEG}, phase="kspace"),
    Stage("gibbs", 11, None, lambda k, c, f: artifacts.sample_gibbs(k, c.gibbs, f),
          domain={"alpha": UNIT}, phase="kspace"),
    Stage("rician", 12, 4, lambda k, c, f: artifacts.sample_rician(k, c.rician, f),
          domain={"std": NONNEG},
          apply=lambda k, x, p, c, ctx: artifacts.add_rician(k, x, p)),
    Stage("noise", 8, 3, lambda k, c, f: intensity.sample_noise(k, c.noise, f),
          domain={"std": NONNEG},
          apply=lambda k, x, p, c, ctx: intensity.add_noise(k, x, p)),
    # FetalSynthGen runs these among its artifacts, after the noise.
    Stage("struct_noise", 18, 7,
          lambda k, c, f: texture.sample_struct_noise(k, c.struct_noise, f),
          domain={"std": NONNEG, "sigmas": POSITIVE, "num_blobs": _count("sigmas"),
                  "num_stages": Bounds(1)},
          apply=lambda k, x, p, c, ctx: texture.apply_struct_noise(
              k, x, p, c, _mask(c.region_labels, ctx))),
    # Skull-stripping boundaries mask the image by the deformed foreground.
    Stage("boundary", 20, 9,
          lambda k, c, f: fetal_artifacts.sample_boundary(k, c.boundary, f),
          domain={"halo_radius": NONNEG, "fuzzy_width": NONNEG, "fuzzy_jitter": NONNEG},
          apply=lambda k, x, p, c, ctx: fetal_artifacts.apply_boundary(
              k, x, p, c, ctx.index_map != ctx.background_index)),
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def synth_stream(name: str) -> int:
  """The `fold_in` id of stage `name`'s key in `synthesize`."""
  stream = BY_NAME[name].synth_stream
  if stream is None:
    raise KeyError(f"stage {name!r} draws no realisations in synthesize")
  return stream
