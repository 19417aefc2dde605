"""Template label maps for the label-ensemble generator, read into one stack on the host."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

from synthjax._src import nifti
from synthjax._src.pytypes import PathLike


def _nifti_paths(spec) -> list[str]:
  spec = os.fspath(spec)
  if os.path.isdir(spec):
    found = [
      p
      for ext in ("*.nii", "*.nii.gz")
      for p in glob.glob(os.path.join(spec, "**", ext), recursive=True)
    ]
    if not found:
      raise FileNotFoundError(f"{spec}: folder holds no NIfTI files (.nii, .nii.gz)")
    return sorted(found)
  if glob.has_magic(spec):
    found = sorted(glob.glob(spec, recursive=True))
    if not found:
      raise FileNotFoundError(f"{spec}: pattern matches no file")
    return found
  return [spec]


def _fit(array, shape):
  """Centred zero-padding and/or cropping of `array` to `shape`."""
  out = array
  for a, n in enumerate(shape):
    m = out.shape[a]
    if m > n:
      start = (m - n) // 2
      out = np.take(out, np.arange(start, start + n), axis=a)
    elif m < n:
      pad = [(0, 0)] * 3
      pad[a] = ((n - m) // 2, n - m - (n - m) // 2)
      out = np.pad(out, pad)
  return out


def _crop_foreground(array):
  idx = np.argwhere(array != 0)
  lo, hi = idx.min(0), idx.max(0) + 1
  return array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]


def load_templates(
  paths_or_folder: PathLike | Sequence[PathLike],
  shape: Sequence[int] | None = None,
  *,
  crop_foreground: bool = False,
  skip_empty: bool = False,
  dtype: DTypeLike = np.int32,
  return_paths: bool = False,
) -> np.ndarray | tuple[np.ndarray, list[str]]:
  """Reads template label maps into one `(T, X, Y, Z)` stack for `render_ensemble`.

  Args:
    paths_or_folder: a folder (searched recursively for `.nii` / `.nii.gz`), a glob
      pattern, a file, or a list of any of those. Files are read with
      `nifti.load_label_map`, in sorted order within each folder or pattern.
    shape: common shape of the stack: every map is centred and zero-padded or cropped
      to it. None: all maps must have the same shape (or, with `crop_foreground`, the
      stack takes the largest foreground box and pads the others).
    crop_foreground: first crop each map to the bounding box of its non-zero voxels, so
      the template is centred (anatomix's `crop_and_pad_3d_volume`).
    skip_empty: leave out maps with no non-zero voxel (TotalSegmentator has empty masks)
      instead of raising.
    dtype: integer dtype of the stack (e.g. np.uint8 for a large stack of binary masks).
    return_paths: also return the list of files used, in stack order.

  Returns:
    The stack as a numpy array (and the paths when `return_paths`).

  Raises:
    FileNotFoundError: a missing file, or a folder / pattern with no NIfTI file.
    ValueError: unreadable or non-integer maps, negative labels, empty maps, labels
      that do not fit `dtype`, or shapes that differ with `shape=None` (naming the file).
  """
  specs = (
    [paths_or_folder] if isinstance(paths_or_folder, (str, os.PathLike)) else list(paths_or_folder)
  )
  if not specs:
    raise ValueError("load_templates: no paths given")
  dtype = np.dtype(dtype)
  if not np.issubdtype(dtype, np.integer):
    raise ValueError(f"load_templates: dtype must be an integer dtype, got {dtype}")
  if shape is not None:
    try:
      shape = tuple(int(s) for s in shape)
      if len(shape) != 3 or min(shape) < 1:
        raise ValueError
    except (TypeError, ValueError):
      raise ValueError(
        f"load_templates: shape must be three positive integers, got {shape!r}"
      ) from None
  paths = [p for spec in specs for p in _nifti_paths(spec)]
  info = np.iinfo(dtype)
  maps, used = [], []
  for path in paths:
    labels, _, _ = nifti.load_label_map(path)
    if labels.min() < 0:
      raise ValueError(f"{path}: template labels must be >= 0, found {int(labels.min())}")
    if labels.max() > info.max:
      raise ValueError(f"{path}: label {int(labels.max())} does not fit dtype {dtype}")
    if not labels.any():
      if skip_empty:
        continue
      raise ValueError(
        f"{path}: template has no foreground (all zero); pass skip_empty=True "
        f"to leave such files out"
      )
    if crop_foreground:
      labels = _crop_foreground(labels)
    maps.append(labels.astype(dtype))
    used.append(path)
  if not maps:
    raise ValueError(f"load_templates: every template is empty ({len(paths)} file(s))")
  if shape is None:
    if crop_foreground:
      shape = tuple(max(m.shape[a] for m in maps) for a in range(3))
    else:
      for m, path in zip(maps, used):
        if m.shape != maps[0].shape:
          raise ValueError(
            f"{path}: shape {m.shape} differs from {maps[0].shape} of "
            f"{used[0]}; pass shape=(X, Y, Z) to pad/crop to a common shape"
          )
      shape = maps[0].shape
  stack = np.stack([_fit(m, shape) for m in maps])
  return (stack, used) if return_paths else stack
