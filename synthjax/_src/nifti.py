"""NIfTI reading and writing with clear errors and atomic writes."""

from __future__ import annotations

import os
import tempfile
import threading
from typing import cast

import nibabel as nib
import numpy as np
import numpy.typing as npt
from nibabel.spatialimages import SpatialImage

from synthjax._src.pytypes import PathLike


def load_image(path: str | os.PathLike) -> SpatialImage:
  """`nibabel.load(path)`, typed as the spatial image (`affine`, `shape`, `dataobj`) that a
  volume file gives; nibabel annotates `load` with its file-image base class."""
  return cast(SpatialImage, nib.load(path))


def load_label_map(path: PathLike) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
  """Reads a label map; returns `(labels int32, affine 4x4, spacing 3-tuple)`.

  Raises:
    FileNotFoundError: no such file.
    ValueError: unreadable file, wrong rank, or non-integer values (naming the file).
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such file")
  try:
    img = load_image(path)
    data = np.asanyarray(img.dataobj)
  except Exception as e:  # nibabel raises many types for corrupt files
    raise ValueError(f"{path}: cannot read as NIfTI ({type(e).__name__}: {e})") from e
  if data.ndim == 4 and data.shape[3] == 1:
    data = data[..., 0]
  if data.ndim != 3:
    raise ValueError(f"{path}: label map must be 3-D, got shape {data.shape}")
  if not np.issubdtype(data.dtype, np.integer):
    bad = ~np.isfinite(data) | (data != np.round(data))
    if bad.any():
      where = tuple(int(i) for i in np.argwhere(bad)[0])
      raise ValueError(
        f"{path}: label map has {int(bad.sum())} non-integer value(s), e.g. "
        f"{data[where]!r} at voxel {where}"
      )
  check_int32_range(path, data)
  affine = np.asarray(img.affine, np.float64)
  spacing = tuple(float(s) for s in img.header.get_zooms()[:3])
  # C order: NIfTI data comes Fortran-ordered, and converting a Fortran array to a JAX
  # array is a transposing copy (72 against 58 ms for a 256^3 int32 map on two cores).
  return np.ascontiguousarray(data, dtype=np.int32), affine, spacing


_INT32 = np.iinfo(np.int32)


def check_int32_range(path, data) -> None:
  """Refuses label values that int32 cannot hold (a cast would wrap them silently and merge
  structures)."""
  if data.size == 0 or (np.issubdtype(data.dtype, np.integer) and data.dtype.itemsize < 4):
    return
  lo, hi = data.min(), data.max()
  if lo < _INT32.min or hi > _INT32.max:
    bad = data[(data < _INT32.min) | (data > _INT32.max)]
    raise ValueError(
      f"{path}: label value(s) outside the int32 range "
      f"[{_INT32.min}, {_INT32.max}], e.g. {bad.flat[0]!r} "
      f"({bad.size} voxel(s), dtype {data.dtype})"
    )


_umask_lock = threading.Lock()
_umask_value = None


def file_mode() -> int:
  """The mode a plain `open()` gives a new file: 0o666 less the process umask (read once;
  `tempfile.mkstemp` would leave 0o600, which a group cannot read)."""
  global _umask_value
  with _umask_lock:
    if _umask_value is None:
      _umask_value = os.umask(0o022)
      os.umask(_umask_value)
    return 0o666 & ~_umask_value


def make_temp(folder, suffix=""):
  """A new temporary file in `folder` (named `.tmp-*`, so interrupted runs' leftovers are
  recognised), with the mode `open()` would give; returns `(fd, path)`."""
  fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=folder)
  os.fchmod(fd, file_mode())
  return fd, tmp


TMP_PREFIX = ".tmp-"


def nifti_layout(image: npt.ArrayLike) -> np.ndarray:
  """A synthesized image as NIfTI stores it: `(X, Y, Z)`, or a multi-contrast `(C, X, Y, Z)`
  with the channels last (the file's 4th dimension, as scanners write contrasts)."""
  image = np.asarray(image)
  return np.moveaxis(image, 0, -1) if image.ndim == 4 else image


def save_nifti(path, array, affine, *, overwrite=False):
  """Writes `array` with `affine` to `path` atomically (temporary name, then rename).

  Raises:
    FileExistsError: `path` exists and `overwrite` is False.
  """
  path = os.fspath(path)
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path}: exists (pass overwrite to replace it)")
  folder = os.path.dirname(os.path.abspath(path))
  suffix = ".nii.gz" if path.endswith(".nii.gz") else ".nii"
  fd, tmp = make_temp(folder, suffix)
  os.close(fd)
  try:
    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, np.float64))
    img.header.set_xyzt_units("mm")
    nib.save(img, tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text_atomic(path, text, *, overwrite=False):
  path = os.fspath(path)
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path}: exists (pass overwrite to replace it)")
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = make_temp(folder)
  try:
    with os.fdopen(fd, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
