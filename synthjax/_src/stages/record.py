"""What every stage module exports: its `Stage` record, and what the records share.

A stage module (`synthjax/_src/stages/<stage>.py`) holds the stage's config dataclass, its
`sample` (the params), its `apply` (the rendering) and a `Stage` record that names them;
`registry.STAGES` lists the records in render order. This module defines the record, the
physical domains of params entries (`Bounds`), and the `RenderContext` an image stage reads
its masks from.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Optional

import numpy as np
import jax

from synthjax._src.ops import lookup


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
      stage's synthesis key (None without a `synth_stream`) and a `RenderContext`. The
      render loop calls it only where `params["applied"]` (it gates `applied` once for
      every stage), so `apply` renders unconditionally.
    off: image stages: `(image, stage_config) -> image` rendered when the config disables
      the stage or the stage is not applied (None: the image passes unchanged).
    strength: how `sample_params(..., strength=s)` weakens the stage (`strength.py`): a
      mapping from entries to their identity values (numbers, or functions of the
      `SynthConfig`), which the draws move toward, the stage not applied at `s = 0`; an
      empty mapping for a stage without a magnitude, applied with probability times `s`;
      or None for what is rendered rather than how it is altered (the intensity sources,
      the crop), which `s` leaves alone.
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
  strength: Optional[Mapping[str, Any]] = None


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


def count(rows_of: str, low: int = 0) -> Bounds:
  return Bounds(low, at_most_rows=rows_of)


class RenderContext(NamedTuple):
  """What an image stage may read besides the image: the deformed label-index map (masks
  are looked up from it through small tables, no one-hot volumes), the segmentation value
  of each label index, the background's index, the grid, and the factor on per-voxel
  standard deviations (`SynthConfig.voxel_std_scale`)."""
  index_map: jax.Array
  seg_values: np.ndarray
  background_index: int
  shape: tuple
  spacing: tuple
  std_scale: float = 1.0


def label_mask(values, ctx: RenderContext):
  """The voxels whose label's segmentation value is one of `values`."""
  return lookup.take_small(np.isin(ctx.seg_values, values), ctx.index_map)


def check_mask_shape(name: str, mask, shape):
  """A stage given a mask (region, foreground) checks it covers the image."""
  if tuple(mask.shape) != tuple(shape):
    raise ValueError(f"{name} must have the image shape {tuple(shape)}, got {tuple(mask.shape)}")
