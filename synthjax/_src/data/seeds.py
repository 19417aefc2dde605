"""FetalSynthGen seed maps: precomputed intensity subclusters of each meta-label.

Layout (FetalSynthGen `data/derivatives/seeds`)::

    seeds/subclasses_K/sub-XX/anat/<label-map stem>_mlabel_M.nii.gz

for `K` subclusters (1..6) and meta-label `M` (1 CSF, 2 GM, 3 WM, 4 non-brain tissue), an
integer map whose non-zero voxels hold `10 * M + k`, `k < K`. `load_seed_maps` stacks them
into the `(K_max, X, Y, Z)` array `synthesize(..., seeds=...)` takes: entry `K - 1` is the
union over meta-labels of the `subclasses_K` maps.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from synthjax._src import nifti

_EXTENSIONS = (".nii.gz", ".nii")


def _stem(path: str) -> str:
  name = os.path.basename(path)
  for ext in _EXTENSIONS:
    if name.endswith(ext):
      return name[: -len(ext)]
  return name


def seed_map_paths(label_path, seeds_root, *, num_subclusters: int = 6,
                   num_meta: int = 4) -> dict:
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
      hits = sorted(p for ext in _EXTENSIONS for p in glob.glob(
          os.path.join(glob.escape(folder), "**", f"{glob.escape(stem)}_mlabel_{m}{ext}"),
          recursive=True))
      if not hits:
        raise FileNotFoundError(f"{folder}: no seed map {stem}_mlabel_{m}.nii.gz for "
                                f"{label_path} (K={k}, meta-label {m})")
      if len(hits) > 1:
        raise ValueError(f"{folder}: several seed maps for {stem}_mlabel_{m}: {hits}")
      out[(k, m)] = hits[0]
  return out


def load_seed_maps(label_path, seeds_root, *, num_subclusters: int = 6,
                   num_meta: int = 4) -> np.ndarray:
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
  paths = seed_map_paths(label_path, seeds_root, num_subclusters=num_subclusters,
                         num_meta=num_meta)
  shape = None
  if os.path.exists(os.fspath(label_path)):
    import nibabel as nib
    shape = tuple(nib.load(os.fspath(label_path)).shape[:3])
  stacked = None
  for k in range(1, num_subclusters + 1):
    for m in range(1, num_meta + 1):
      path = paths[(k, m)]
      data, _, _ = nifti.load_label_map(path)
      if shape is None:
        shape = data.shape
      if data.shape != shape:
        raise ValueError(f"{path}: seed map shape {data.shape} differs from the label map "
                         f"{label_path} shape {shape}")
      if stacked is None:
        stacked = np.zeros((num_subclusters,) + shape, np.int8)
      values = np.unique(data)
      bad = [int(v) for v in values if v != 0 and not (v // 10 == m and v % 10 < k)]
      if bad:
        raise ValueError(f"{path}: seed values {bad[:10]} are not 10*{m} + k with k < {k}")
      layer = stacked[k - 1]
      overlap = (layer != 0) & (data != 0)
      if overlap.any():
        raise ValueError(f"{path}: {int(overlap.sum())} voxels already belong to another "
                         f"meta-label in subclasses_{k}")
      layer[data != 0] = data[data != 0]
  return stacked
