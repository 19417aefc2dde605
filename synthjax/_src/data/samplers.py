"""Patch samplers: where to cut a patch from a volume, and the cut itself.

A sampler maps `(rng, element, patch_size)` to the patch origin (voxel index of its first
corner). Origins are clipped so the patch lies inside the volume where it fits; along an
axis where the volume is smaller than the patch, the patch is centred and padded. Mirrors
TorchIO's `UniformSampler`, `LabelSampler` and `WeightedSampler`, and MONAI's
`RandSpatialCrop` / `RandCropByLabelClasses` / `RandWeightedCrop`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
  import jax


def _clip_origin(centre, shape, patch_size):
  origin = np.asarray(centre) - np.asarray(patch_size) // 2
  out = []
  for c, n, p in zip(origin, shape, patch_size):
    room = n - p
    out.append(min(max(int(c), 0), room) if room >= 0 else room // 2)
  return np.asarray(out, np.int64)


def _centre_from_weights(rng, weights):
  flat = np.asarray(weights, np.float64).ravel()
  if flat.size == 0 or not np.all(np.isfinite(flat)) or flat.min() < 0 or flat.sum() <= 0:
    raise ValueError("patch weights must be finite, non-negative and not all zero")
  cdf = np.cumsum(flat)
  i = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
  return np.unravel_index(min(i, flat.size - 1), np.shape(weights))


@dataclasses.dataclass(frozen=True)
class UniformSampler:
  """Patches anywhere in the volume with equal probability (TorchIO `UniformSampler`)."""

  needs_full_labels = False

  def origin(
    self, rng: np.random.Generator, element: Mapping[str, Any], patch_size: Sequence[int]
  ) -> np.ndarray:
    """The patch's first voxel in the volume, drawn with `rng` (negative along an axis where
    the patch is larger than the volume, which centres it there)."""
    shape = element["shape"]
    out = []
    for n, p in zip(shape, patch_size):
      room = n - p
      out.append(int(rng.integers(0, room + 1)) if room >= 0 else room // 2)
    return np.asarray(out, np.int64)


@dataclasses.dataclass(frozen=True)
class LabelSampler:
  """Patch centred on a voxel of a label drawn with the given probabilities.

  Like TorchIO's `LabelSampler` and MONAI's `RandCropByLabelClasses`: draw a label among
  those present in the volume (probabilities renormalised over them), then a voxel of that
  label uniformly; the patch is centred there (clipped to fit), so it always contains the
  drawn voxel.

  Attributes:
    label_probabilities: label value -> probability; `None` gives every present label
      the same probability.
  """

  label_probabilities: Mapping[int, float] | None = None
  needs_full_labels = True

  def __post_init__(self) -> None:
    if self.label_probabilities is not None:
      probs = {int(k): float(v) for k, v in dict(self.label_probabilities).items()}
      if any(v < 0 for v in probs.values()) or sum(probs.values()) <= 0:
        raise ValueError(
          f"label_probabilities must be non-negative with a positive sum, got {probs}"
        )
      object.__setattr__(self, "label_probabilities", tuple(sorted(probs.items())))

  def origin(
    self, rng: np.random.Generator, element: Mapping[str, Any], patch_size: Sequence[int]
  ) -> np.ndarray:
    """The patch's first voxel in the volume, drawn with `rng` (negative along an axis where
    the patch is larger than the volume, which centres it there)."""
    labels = element["labels_full"]
    present = np.unique(labels)
    if self.label_probabilities is None:
      values = present
      probs = np.ones(len(values))
    else:
      table = dict(self.label_probabilities)
      values = np.asarray([v for v in present if table.get(int(v), 0.0) > 0])
      probs = np.asarray([table[int(v)] for v in values])
      if values.size == 0:
        raise ValueError(
          f"{element['path']}: none of the labels "
          f"{sorted(k for k, v in table.items() if v > 0)} is present"
        )
    label = values[rng.choice(len(values), p=probs / probs.sum())]
    voxels = np.flatnonzero(labels == label)
    centre = np.unravel_index(voxels[rng.integers(len(voxels))], labels.shape)
    return _clip_origin(centre, labels.shape, patch_size)


@dataclasses.dataclass(frozen=True)
class WeightedSampler:
  """Patch centre drawn with probability proportional to a weight map.

  Attributes:
    weights: `element -> array` of non-negative weights over the volume (e.g. a probability
      map read from disk, or a function of `element["labels_full"]`). Must pickle (a
      module-level function or a dataclass) when Grain workers are used.
  """

  weights: Callable
  needs_full_labels = True

  def origin(
    self, rng: np.random.Generator, element: Mapping[str, Any], patch_size: Sequence[int]
  ) -> np.ndarray:
    """The patch's first voxel in the volume, drawn with `rng` (negative along an axis where
    the patch is larger than the volume, which centres it there)."""
    w = np.asarray(self.weights(element))
    if w.shape != tuple(element["shape"]):
      raise ValueError(
        f"{element['path']}: weight map shape {w.shape} differs from the "
        f"volume shape {tuple(element['shape'])}"
      )
    return _clip_origin(_centre_from_weights(rng, w), w.shape, patch_size)


def extract_patch(
  volume: Any,
  origin: Sequence[int] | np.ndarray | jax.Array,
  patch_size: Sequence[int],
  *,
  pad_value: float = 0,
) -> np.ndarray:
  """Reads `volume[origin : origin + patch_size]`, padding where it leaves the volume.

  `volume` is a numpy array or a lazy `Volume` (only the overlapping region is read).
  """
  shape = volume.shape[:3]
  src, dst = [], []
  for o, p, n in zip(origin, patch_size, shape):
    lo, hi = max(int(o), 0), min(int(o) + p, n)
    if hi <= lo:
      lo = hi = 0
    src.append(slice(lo, hi))
    dst.append(slice(lo - int(o), lo - int(o) + (hi - lo)))
  region = volume[tuple(src)]
  if tuple(region.shape[:3]) == tuple(patch_size):
    return np.asarray(region)
  out = np.full(tuple(patch_size) + tuple(region.shape[3:]), pad_value, dtype=region.dtype)
  out[tuple(dst)] = region
  return out
