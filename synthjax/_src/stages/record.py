"""What every stage module exports: its `Stage` record, and what the records share.

A stage module (`synthjax/_src/stages/<stage>.py`) holds the stage's config dataclass, its
`sample` (the params), its `apply` (the rendering) and a `Stage` record that names them;
`registry.STAGES` lists the records in render order. This module defines the record, the
physical domains of params entries (`Bounds`), and what each phase's `apply` receives: the
`Placement` and `SpatialContext` of the spatial stages, the `RenderContext` of the source,
image and k-space stages, and the `Spectrum` of the k-space stages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from synthjax._src.ops import lookup

PHASES = ("spatial", "labels", "source", "image", "kspace")


@dataclasses.dataclass(frozen=True)
class Stage:
  """What the generator knows about one stage.

  Attributes:
    name: the stage's key in the params pytree and in `fixed`; also the name of its
      `SynthConfig` field, unless `configured` is False.
    sample: `(key, config, fixed) -> dict of arrays`, the stage's params for a
      `SynthConfig`; a value present in `fixed` (the stage's sub-dict) is used as is.
    apply: the stage's rendering (see `phase`), with the stage's synthesis key (None
      without a `synth_stream`). Only called for a stage its config enables (the first
      source excepted). The render loop gates image stages on `params["applied"]`, so
      their `apply` renders unconditionally; spatial, source and k-space stages read
      `applied` themselves (they compose into one map, one image or one spectrum).
    phase: which part of the rendering the stage takes part in (`PHASES`), and so what
      its `apply` receives and returns, as `key, value, params, stage_config, ctx`:

      * `"spatial"`: a `Placement` (the coordinate map from the output grid to the label
        map, before it is evaluated) and a `SpatialContext`; returns the `Placement` with
        the stage's part composed in. The labels are gathered once, through the composed
        map.
      * `"labels"`: the deformed label-index map (positions in `label_values`) and a
        `RenderContext`; returns the edited map, which the sources render and the
        segmentation reads (the anatomy itself changes). Reads `applied` itself.
      * `"source"`: the intensity image of the sources before it (None for the first) and
        a `RenderContext`; returns the intensity image. A later source replaces an earlier
        one where it applies; the first is the base image, rendered whatever its config
        says.
      * `"image"`: the image and a `RenderContext`; returns the image.
      * `"kspace"`: a `Spectrum` shared by the enabled k-space stages (one transform, one
        magnitude reconstruction) and a `RenderContext`; returns the `Spectrum`.

      The spatial stages come first in the registry, then the label stages, then the
      sources; the image stages
      render in registry order, and the k-space group where its first stage stands.
    per_channel: drawn once per channel of a multi-contrast config (`channels.py`); the
      other stages' params are shared by the channels.
    configured: whether `SynthConfig` has a field of this name (the crop has none: it
      always applies, to whatever room the label map leaves). `apply` receives None as its
      `stage_config` then.
    domain: the physical domain of each bounded entry (`Bounds`); `params_from_json` and
      `fixed` refuse values outside it. Every float entry must be finite whatever its
      domain.
    off: image stages: `(image, stage_config) -> image` rendered when the config disables
      the stage or the stage is not applied (None: the image passes unchanged).
    carry: source stages: `(params, stage_config, inputs) -> int32 volume or None` (the
      stage's params, its config and `RenderContext.inputs`), a volume on the label map's
      grid resampled with the labels, in the same nearest-neighbour gather
      (`RenderContext.carried[name]` holds the result).
    strength: how `sample_params(..., strength=s)` weakens the stage (`strength.py`): a
      mapping from entries to their identity values (numbers, or functions of the
      `SynthConfig`), which the draws move toward, the stage not applied at `s = 0`; an
      empty mapping for a stage without a magnitude, applied with probability times `s`;
      or None for what is rendered rather than how it is altered (the intensity sources,
      the crop), which `s` leaves alone.
    param_stream: `fold_in` id of the stage's key in `sample_params`, and
    synth_stream: of its key in `synthesize` (its realisations: fields and voxel noise), or
      None if rendering it draws nothing. Both are read from the registry's `STREAMS`
      table when the registry lists the record (`registry.register`).
  """

  name: str
  sample: Callable
  apply: Callable
  phase: str = "image"
  per_channel: bool = False
  configured: bool = True
  domain: Mapping[str, Bounds] = dataclasses.field(default_factory=dict)
  off: Callable | None = None
  carry: Callable | None = None
  strength: Mapping[str, Any] | None = None
  param_stream: int | None = None
  synth_stream: int | None = None

  def __post_init__(self):
    if self.phase not in PHASES:
      raise ValueError(f"stage {self.name!r}: phase must be one of {PHASES}, got {self.phase!r}")
    if self.off is not None and self.phase != "image":
      raise ValueError(f"stage {self.name!r}: only image stages have an `off` rendering")
    if self.carry is not None and self.phase != "source":
      raise ValueError(f"stage {self.name!r}: only source stages carry volumes")


@dataclasses.dataclass(frozen=True)
class Bounds:
  """The values a params entry may take: `low <= v <= high` (`low < v` if `low_open`).

  `at_most_rows` bounds an integer count by the static number of rows of another entry
  (e.g. `num_spikes` by the rows of `positions`).
  """

  low: float | None = None
  high: float | None = None
  low_open: bool = False
  at_most_rows: str | None = None

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


def count(rows_of: str, low: int = 0) -> Bounds:
  return Bounds(low, at_most_rows=rows_of)


class SpatialContext(NamedTuple):
  """What a spatial stage reads besides the placement: the output grid's shape and
  spacing (mm), the label map's shape, the float dtype the map is computed in, and the
  permutation of label indices that swaps the config's paired labels (`flip_pairs`)."""

  shape: tuple
  spacing: tuple
  in_shape: tuple
  dtype: Any
  label_swap: np.ndarray | None = None


class Placement(NamedTuple):
  """The coordinate map from the output grid to the label map, before it is evaluated.

  The map is `x -> D^-1 (A (S p(x) + D u(x)) + t) + offset + centre` (`geometry`): `p(x)`
  the output grid in mm about the field of view's centre, `S` the mirror, `u` the
  displacement (output voxels), `A` / `t` the linear part and translation (mm), `D` the
  spacing and `offset` the output window's place in the label map (voxels).

  Attributes:
    linear: `A`, a 3x3 array (mm to mm).
    translation: `t`, 3 floats (mm).
    mirror: `S` as +-1 per axis, or None for no mirror.
    offset: 3 voxel offsets, or None for a centred window of the same shape.
    displacement: None, or `lin -> (3, X, Y, Z)`: `lin u` at full resolution, given the
      voxel-to-voxel linear part `lin = D^-1 A D` (so a field drawn on a small grid is
      transformed before it is upsampled).
    label_swap: None, or a permutation of the label indices applied to the resampled
      labels (a mirror's swap of left and right labels), composed into the label lookup
      table.
  """

  linear: Any
  translation: Any
  mirror: Any = None
  offset: Any = None
  displacement: Callable | None = None
  label_swap: Any = None


class RenderContext(NamedTuple):
  """What a source, image or k-space stage may read besides its input: the deformed
  label-index map (masks are looked up from it through small tables, no one-hot volumes),
  the segmentation value of each label index, the background's index, the grid, and the
  factor on per-voxel standard deviations (`SynthConfig.voxel_std_scale`).

  The sources also read `config` (the `SynthConfig`), `params` (every stage's params),
  `coords` (the label map's coordinates of each output voxel, three arrays), `inputs` (what
  `synthesize` was given besides the labels: `seeds`, `image`), `carried` (each source's
  `carry` volume, resampled with the labels) and `synth_key(name)` (a stage's synthesis
  key)."""

  index_map: jax.Array
  seg_values: np.ndarray
  background_index: int
  shape: tuple
  spacing: tuple
  std_scale: float = 1.0
  config: Any = None
  params: Mapping | None = None
  coords: Any = None
  inputs: Mapping | None = None
  carried: Mapping | None = None
  synth_key: Callable | None = None


class Spectrum(NamedTuple):
  """The spectrum the k-space stages share: `k`, the unshifted `fftn` of the image as the
  stages before have left it, and `original`, the image's own (a reference magnitude)."""

  k: jax.Array
  original: jax.Array


def label_mask(values, ctx: RenderContext):
  """The voxels whose label's segmentation value is one of `values`."""
  return lookup.take_small(np.isin(ctx.seg_values, values), ctx.index_map)


def check_mask_shape(name: str, mask, shape):
  """A stage given a mask (region, foreground) checks it covers the image."""
  if tuple(mask.shape) != tuple(shape):
    raise ValueError(f"{name} must have the image shape {tuple(shape)}, got {tuple(mask.shape)}")
