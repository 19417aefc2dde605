"""What `synthjax info` says of a label map: its grid, its labels, and which presets know them."""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from synthjax._src.pytypes import PathLike


class LabelMapInfo(TypedDict):
  """What `label_map_info` returns (see there)."""

  path: PathLike
  shape: tuple[int, ...]
  spacing: tuple[float, ...]
  orientation: str
  counts: dict[int, int]
  unknown: dict[str, list[int]]
  flip_pairs: tuple[tuple[int, int], ...]


def label_map_info(path: PathLike) -> LabelMapInfo:
  """Describes a NIfTI label map.

  Args:
    path: the label map.

  Returns:
    A dict with `path`, `shape`, `spacing` (mm), `orientation` (axis codes, e.g. `"RAS"`),
    `counts` (`{label value: voxels}`, sorted by value), `unknown` (`{preset: label values
    it does not know}` for `synthseg` and `fetal`) and `flip_pairs` (the FreeSurfer
    left/right pairs among the values).

  Raises:
    FileNotFoundError: no such file.
    inputs.InputError: unreadable, not 3-D or not integer (naming the file).

  Examples:
    >>> info = label_map_info("aseg.nii.gz")       # doctest: +SKIP
    >>> info["unknown"]["synthseg"]                 # doctest: +SKIP
    []
  """
  import nibabel as nib

  from synthjax._src import inputs, nifti, presets

  with inputs.input_errors():
    labels, affine, spacing = nifti.load_label_map(path)
  values, counts = np.unique(labels, return_counts=True)
  values = values.tolist()
  return {
    "path": path,
    "shape": labels.shape,
    "spacing": spacing,
    "orientation": "".join(nib.aff2axcodes(affine)),
    "counts": dict(zip(values, counts.tolist())),
    "unknown": {
      name: sorted(set(values) - set(known))
      for name, known in (("synthseg", presets.FREESURFER_LABELS), ("fetal", presets.FETA_LABELS))
    },
    "flip_pairs": presets.freesurfer_flip_pairs(values),
  }


def format_label_map_info(info: LabelMapInfo) -> str:
  """The text `synthjax info` prints for `label_map_info(path)` (lines, no final newline)."""
  size = sum(info["counts"].values())
  lines = [
    f"file:        {info['path']}",
    f"shape:       {info['shape']}",
    f"spacing:     {tuple(round(s, 4) for s in info['spacing'])} mm",
    f"orientation: {info['orientation']}",
    f"labels:      {len(info['counts'])} values",
  ]
  lines += [
    f"  {v:>6d}  {c:>10d} voxels  {100.0 * c / size:6.2f}%" for v, c in info["counts"].items()
  ]
  for name, unknown in info["unknown"].items():
    verdict = "knows every label" if not unknown else f"does not know {unknown}"
    lines.append(f"preset {name + ':':<10s}{verdict}")
  pairs = info["flip_pairs"]
  lines.append(f"left/right pairs (FreeSurfer): {list(pairs) if pairs else 'none'}")
  return "\n".join(lines)
