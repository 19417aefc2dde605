"""Seeded train/validation splits and weighted mixing of sources.

Both return random-access sources, so they plug into `pipeline` like any other and keep
the stream reproducible from the seed (pymia's / CAREamics' splits, Grain's `mix`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from synthjax._src.pytypes import RandomAccessSource


def describe_element(source: RandomAccessSource, i: int) -> dict[str, Any]:
  """Shape and path of element `i` of a source, without decoding it where the source can."""
  describe = getattr(source, "describe", None)
  if describe is not None:
    return describe(i)
  element = source[i]
  return {"shape": element["shape"], "path": element.get("path")}


@dataclasses.dataclass
class Subset:
  """The elements `indices` of `source`, in that order (a random-access source)."""

  source: RandomAccessSource
  indices: Sequence[int]

  def __post_init__(self) -> None:
    self.indices = [int(i) for i in self.indices]
    bad = [i for i in self.indices if not 0 <= i < len(self.source)]
    if bad:
      raise IndexError(f"indices {bad[:5]} out of range for a source of {len(self.source)}")

  def __len__(self) -> int:
    return len(self.indices)

  def describe(self, i: int) -> dict[str, Any]:
    """The shape and path of element `i`, without decoding it where the source can."""
    return describe_element(self.source, self.indices[int(i)])

  def __getitem__(self, i: int) -> dict[str, Any]:
    element = dict(self.source[self.indices[int(i)]])
    element["index"] = int(i)
    element["source_index"] = self.indices[int(i)]
    return element


def train_val_split(
  source: RandomAccessSource, *, val_fraction: float = 0.2, min_val: int = 1, seed: int = 0
) -> tuple[Subset, Subset]:
  """Splits a source into `(train, val)`, two `Subset` views, by a seeded permutation.

  The validation set has `max(min_val, round(val_fraction * n))` elements and the training
  set keeps at least one; the same seed always gives the same split.

  Raises:
    ValueError: a fraction outside [0, 1), or too few elements for both sets.
  """
  n = len(source)
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
  n_val = max(int(min_val), int(round(val_fraction * n)))
  if n_val >= n:
    raise ValueError(
      f"cannot split {n} element(s) into {n_val} for validation and at least one for training"
    )
  perm = np.random.default_rng([int(seed), 3]).permutation(n)
  train = Subset(source, sorted(perm[n_val:].tolist()))
  return train, Subset(source, sorted(perm[:n_val].tolist()))


@dataclasses.dataclass
class MixedSource:
  """Draws each element from one of several sources with the given weights.

  Element `i` picks source `s` with probability `weights[s]` and one of its volumes
  uniformly, both from `(seed, i)`, so the mix is reproducible and random-access.

  Attributes:
    sources: the sources to mix.
    weights: non-negative weights, one per source.
    length: the mixed source's length (default: the sources' total).
    seed: seed of the draws.
  """

  sources: Sequence[RandomAccessSource]
  weights: Sequence[float]
  length: int = 0
  seed: int = 0

  def __post_init__(self) -> None:
    if len(self.sources) != len(self.weights) or not self.sources:
      raise ValueError(
        f"need one weight per source, got {len(self.weights)} weights for "
        f"{len(self.sources)} sources"
      )
    w = np.asarray(self.weights, np.float64)
    if not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
      raise ValueError(f"weights must be non-negative with a positive sum, got {list(w)}")
    self._p = w / w.sum()
    self.length = int(self.length) or sum(len(s) for s in self.sources)

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, i: int) -> dict[str, Any]:
    i = int(i)
    if not 0 <= i < self.length:
      raise IndexError(f"index {i} out of range for a mixed source of {self.length}")
    rng = np.random.default_rng([int(self.seed), 4, i])
    s = int(rng.choice(len(self.sources), p=self._p))
    j = int(rng.integers(len(self.sources[s])))
    element = dict(self.sources[s][j])
    element.update(index=i, mixed_from=s, source_index=j)
    return element
