"""Type aliases of the public API.

Importing this module imports neither JAX nor Grain (the data modules stay light in Grain's
worker processes): the aliases that name JAX types are strings, which type checkers resolve
and Python never evaluates.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import numpy as np

if TYPE_CHECKING:
  import jax
  import numpy.typing as npt

__all__ = [
  "FixedParams",
  "Params",
  "ParamsLike",
  "PRNGKey",
  "PathLike",
  "Size3",
  "Spacing",
  "VolumeReader",
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
# A custom reader of a volume file (`NiftiSource(reader=...)`): `path -> array` or
# `path -> (array, affine)`.
VolumeReader: TypeAlias = "Callable[[str], npt.ArrayLike | tuple[npt.ArrayLike, npt.ArrayLike]]"
# A sample's generation params as `sample_params` returns them: one dict of arrays per stage
# (`params["affine"]["rotation"]`), every leaf with a leading batch axis for a batch of keys.
Params: TypeAlias = "dict[str, dict[str, jax.Array]]"
# Params as the functions that render them take them: `Params`, or the same dicts holding host
# arrays, numbers or lists (a params JSON's). The leaves are `Any` because any array-like is
# taken (each is checked against the config's template): with `npt.ArrayLike` leaves the
# invariant `dict` would refuse a `Params`. Dicts, not mappings: the structure is checked with
# `isinstance(..., dict)`.
ParamsLike: TypeAlias = "dict[str, dict[str, Any]]"
# A `fixed` dict of `sample_params`: the params' nesting, any entry given as an array-like (or
# None: drawn); `Any` leaves for the reason `ParamsLike` has them.
FixedParams: TypeAlias = "dict[str, dict[str, Any]]"


class RandomAccessSource(Protocol):
  """A random-access data source (the protocol Grain's `MapDataset.source` takes)."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int, /) -> Any: ...


class PatchSampler(Protocol):
  """Picks a patch origin in an element (`UniformSampler`, `LabelSampler`, ...)."""

  def origin(
    self, rng: np.random.Generator, element: dict[str, Any], patch_size: Sequence[int], /
  ) -> np.ndarray:
    """The origin (first voxel) of a patch of `patch_size` in `element`'s volume."""
    ...
