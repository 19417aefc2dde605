"""Type aliases of the public API.

Importing this module imports neither JAX nor Grain (the data modules stay light in Grain's
worker processes): the aliases that name JAX types are strings, which type checkers resolve
and Python never evaluates.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np

if TYPE_CHECKING:
  import jax

__all__ = [
  "PRNGKey",
  "PathLike",
  "Size3",
  "Spacing",
  "RandomAccessSource",
  "PatchSampler",
]

# A typed key (`jax.random.key`) or a raw `uint32[2]` one (`jax.random.PRNGKey`).
PRNGKey: TypeAlias = "jax.Array"
# A file or folder path.
PathLike: TypeAlias = "str | os.PathLike[str]"
# A size for every axis (one int) or one per axis.
Size3: TypeAlias = "int | Sequence[int]"
# A voxel size in mm: one for every axis or one per axis.
Spacing: TypeAlias = "float | Sequence[float]"


class RandomAccessSource(Protocol):
  """A random-access data source (the protocol Grain's `MapDataset.source` takes)."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int, /) -> Any: ...


class PatchSampler(Protocol):
  """Picks a patch origin in an element (`UniformSampler`, `LabelSampler`, ...)."""

  def origin(
    self, rng: np.random.Generator, element: dict[str, Any], patch_size: Sequence[int], /
  ) -> np.ndarray: ...
