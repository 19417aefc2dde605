"""FetalSynthGen seed maps: precomputed intensity subclusters of each meta-label.

Layout (FetalSynthGen `data/derivatives/seeds`)::

    seeds/subclasses_K/sub-XX/anat/<label-map stem>_mlabel_M.nii.gz

for `K` subclusters (1..6) and meta-label `M` (1 CSF, 2 GM, 3 WM, 4 non-brain tissue), an
integer map whose non-zero voxels hold `10 * M + k`, `k < K`. `load_seed_maps` stacks them
into the `(K_max, X, Y, Z)` array `synthesize(..., seeds=...)` takes: entry `K - 1` is the
union over meta-labels of the `subclasses_K` maps. `seed_patches` feeds them to a Grain
pipeline, cut with each label patch.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grain
import numpy as np
import numpy.typing as npt

from synthjax._src import nifti
from synthjax._src.data.samplers import extract_patch
from synthjax._src.pytypes import PathLike, RandomAccessSource

if TYPE_CHECKING:
  from synthjax._src.config import SynthConfig

_EXTENSIONS = (".nii.gz", ".nii")


def _stem(path: str) -> str:
  name = os.path.basename(path)
  for ext in _EXTENSIONS:
    if name.endswith(ext):
      return name[: -len(ext)]
  return name


def seed_map_paths(
  label_path: PathLike, seeds_root: PathLike, *, num_subclusters: int = 6, num_meta: int = 4
) -> dict[tuple[int, int], str]:
  """Finds the seed files of a label map: `{(K, M): path}` for K <= num_subclusters.

  Raises:
    FileNotFoundError: a missing seeds folder or seed file (named).
    ValueError: more than one candidate file for a (K, M).
  """
  seeds_root = os.fspath(seeds_root)
  if not os.path.isdir(seeds_root):
    raise FileNotFoundError(f"{seeds_root}: no such seeds folder")
  stem = _stem(os.fspath(label_path))
  out = {}
  for k in range(1, num_subclusters + 1):
    folder = os.path.join(seeds_root, f"subclasses_{k}")
    for m in range(1, num_meta + 1):
      hits = sorted(
        p
        for ext in _EXTENSIONS
        for p in glob.glob(
          os.path.join(glob.escape(folder), "**", f"{glob.escape(stem)}_mlabel_{m}{ext}"),
          recursive=True,
        )
      )
      if not hits:
        raise FileNotFoundError(
          f"{folder}: no seed map {stem}_mlabel_{m}.nii.gz for {label_path} (K={k}, meta-label {m})"
        )
      if len(hits) > 1:
        raise ValueError(f"{folder}: several seed maps for {stem}_mlabel_{m}: {hits}")
      out[(k, m)] = hits[0]
  return out


def load_seed_maps(
  label_path: PathLike, seeds_root: PathLike, *, num_subclusters: int = 6, num_meta: int = 4
) -> np.ndarray:
  """Reads and stacks a label map's seed maps for `synthesize(..., seeds=...)`.

  Args:
    label_path: the label map the seeds belong to (its file name locates them).
    seeds_root: the `seeds` folder holding `subclasses_1`, `subclasses_2`, ...
    num_subclusters: the largest K to load (`SubclusterConfig.num_subclusters[1]`).
    num_meta: the number of meta-labels (`SubclusterConfig.num_meta`).

  Returns:
    int8 array `(num_subclusters, X, Y, Z)`.

  Raises:
    FileNotFoundError / ValueError naming the file: missing files, shapes that differ from
    the label map, overlapping meta-labels, or values that are not `10 * M + k` with
    `k < K`.
  """
  paths = seed_map_paths(label_path, seeds_root, num_subclusters=num_subclusters, num_meta=num_meta)
  shape = None
  if os.path.exists(os.fspath(label_path)):
    shape = tuple(nifti.load_image(os.fspath(label_path)).shape[:3])
  stacked = None
  for k in range(1, num_subclusters + 1):
    for m in range(1, num_meta + 1):
      path = paths[(k, m)]
      data, _, _ = nifti.load_label_map(path)
      if shape is None:
        shape = data.shape
      if data.shape != shape:
        raise ValueError(
          f"{path}: seed map shape {data.shape} differs from the label map "
          f"{label_path} shape {shape}"
        )
      if stacked is None:
        stacked = np.zeros((num_subclusters,) + shape, np.int8)
      values = np.unique(data)
      bad = [int(v) for v in values if v != 0 and not (v // 10 == m and v % 10 < k)]
      if bad:
        raise ValueError(f"{path}: seed values {bad[:10]} are not 10*{m} + k with k < {k}")
      layer = stacked[k - 1]
      overlap = (layer != 0) & (data != 0)
      if overlap.any():
        raise ValueError(
          f"{path}: {int(overlap.sum())} voxels already belong to another "
          f"meta-label in subclasses_{k}"
        )
      layer[data != 0] = data[data != 0]
  if stacked is None:  # no (K, M) pair to read
    raise ValueError(
      f"{label_path}: num_subclusters and num_meta must be at least 1, got "
      f"{num_subclusters} and {num_meta}"
    )
  return stacked


@dataclasses.dataclass
class SeedPatches(grain.transforms.Map):
  """Adds to each pipeline element the seed maps of its patch, `seeds` `(K, X, Y, Z)` int8.

  The seed stack of the element's volume (`load_seed_maps`, brought to the grid its label
  source reads by `to_grid`) is cut at the element's `origin` with the size of its
  `labels`, padded with 0 (no meta-label) where the patch leaves the volume, so that label
  and seed patches stay voxel for voxel aligned. Built by `seed_patches`; pass it in
  `pipeline(..., transforms=[...])`. Each worker reads a volume's seed files once and keeps
  the stack (int8: `K` bytes per voxel).

  Attributes:
    label_paths: the label map of each volume of the source, in the source's order.
    shapes: the shape each volume has in the source (checked against its seed stack).
    seeds_root: the `seeds` folder holding `subclasses_1`, `subclasses_2`, ...
    num_subclusters: `K`, the largest number of subclusters loaded.
    num_meta: the number of meta-labels.
    to_grid: `None` (the source reads the maps as stored), or a picklable
      `(layer, label_path) -> layer` bringing an integer volume on a label map's own grid
      to the grid the source reads that map on (orientation, coarsening, resampling).
  """

  label_paths: tuple[str, ...]
  shapes: tuple[tuple[int, ...], ...]
  seeds_root: str
  num_subclusters: int = 6
  num_meta: int = 4
  to_grid: Callable[[np.ndarray, str], npt.ArrayLike] | None = None

  def __post_init__(self) -> None:
    self._stacks = {}

  def __getstate__(self) -> dict[str, Any]:
    state = dict(self.__dict__)
    state["_stacks"] = {}
    return state

  @property
  def bytes_per_voxel(self) -> int:
    """Bytes it adds per voxel (`seeds`, int8), for `batch_nbytes`."""
    return int(self.num_subclusters)

  def stack(self, v: int) -> np.ndarray:
    """The `(K, X, Y, Z)` int8 seed stack of volume `v` on the source's grid."""
    if v not in self._stacks:
      path = self.label_paths[v]
      stack = load_seed_maps(
        path, self.seeds_root, num_subclusters=self.num_subclusters, num_meta=self.num_meta
      )
      if self.to_grid is not None:
        stack = np.stack([np.asarray(self.to_grid(layer, path)) for layer in stack])
      if tuple(stack.shape[1:]) != tuple(self.shapes[v]):
        raise ValueError(
          f"{self.seeds_root}: the seed maps of {path} have shape "
          f"{tuple(stack.shape[1:])} on the training grid, the label map "
          f"{tuple(self.shapes[v])}"
        )
      self._stacks[v] = stack.astype(np.int8)
    return self._stacks[v]

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    """The element with its patch of seed maps added as `seeds`."""
    stack = self.stack(int(element["volume"]))
    size = tuple(np.shape(element["labels"]))
    patch = extract_patch(np.moveaxis(stack, 0, -1), element["origin"], size, pad_value=0)
    return {**element, "seeds": np.ascontiguousarray(np.moveaxis(patch, -1, 0))}


def seed_patches(
  source: RandomAccessSource,
  seeds_root: PathLike,
  config: SynthConfig,
  *,
  to_grid: Callable[[np.ndarray, str], npt.ArrayLike] | None = None,
) -> SeedPatches:
  """The pipeline transform that feeds FetalSynthGen's seed maps to the train step.

  A config whose subclusters come from seed maps (`presets.fetal(..., seeds=True)`) renders
  a batch only with its `seeds` (`synthesize_batch`); this transform cuts them from each
  label map's seed files with the label patch. Every map's seed files are looked up here,
  so that a missing one fails before training starts.

  Args:
    source: the label source of the pipeline (`NiftiSource`): its paths name the seeds.
    seeds_root: the `seeds` folder (FetalSynthGen's `data/derivatives/seeds` layout).
    config: the `SynthConfig`; its `subclusters` give `K` and the number of meta-labels.
    to_grid: see `SeedPatches` (e.g. the label reader's own coarsening).

  Returns:
    A `SeedPatches` transform.

  Raises:
    ValueError: a config whose subclusters do not come from seed maps.
    FileNotFoundError: a missing seeds folder or seed file (named).

  Examples:
    >>> cfg = synthjax.presets.fetal(values, (64,) * 3, seeds=True)  # doctest: +SKIP
    >>> ds = pipeline(source, patch_size=64, batch_size=2, seed=0,  # doctest: +SKIP
    ...               transforms=[seed_patches(source, "seeds/", cfg)])
  """
  sub = config.subclusters
  if not (sub.enabled and sub.source == "seeds"):
    raise ValueError(
      "the config's subclusters do not come from seed maps "
      "(SubclusterConfig.source='seeds'); it needs no seed folder"
    )
  paths, shapes = [], []
  for i in range(len(source)):
    element = source[i]
    paths.append(os.fspath(element["path"]))
    shapes.append(tuple(int(n) for n in element["shape"]))
  k = int(sub.num_subclusters[1])
  for path in paths:
    seed_map_paths(path, seeds_root, num_subclusters=k, num_meta=int(sub.num_meta))
  return SeedPatches(
    label_paths=tuple(paths),
    shapes=tuple(shapes),
    seeds_root=os.fspath(seeds_root),
    num_subclusters=k,
    num_meta=int(sub.num_meta),
    to_grid=to_grid,
  )
