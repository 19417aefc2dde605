"""Random-access sources of label maps (and images) on disk, for Grain.

A `NiftiSource` is a Grain `RandomAccessDataSource`: `len(source)` volumes, and
`source[i]` a dict describing volume `i` whose arrays are `Volume`s. A `Volume` reads
lazily through nibabel's array proxy (a patch reads only its region of the file) unless the
source caches volumes in memory. Every file is checked when the source is built (it exists,
its header reads, it is 3-D, image and label agree in shape and affine), and the values when
they are read (non-integer labels fail there), each error naming the file.

Mirrors TorchIO's `SubjectsDataset` / MONAI's `LoadImaged` for NIfTI, and CAREamics'
`read_source_func` / `extension_filter` for other formats.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Sequence
from typing import Any

import nibabel as nib
import numpy as np

from synthjax._src import nifti
from synthjax._src.pytypes import PathLike, VolumeReader

NIFTI_EXTENSIONS = (".nii.gz", ".nii")


def _strip_ext(name: str, extensions) -> str:
  for ext in sorted(extensions, key=len, reverse=True):
    if name.endswith(ext):
      return name[: -len(ext)]
  return name


def expand_paths(patterns: Sequence[PathLike]) -> list[str]:
  """NIfTI files from files, folders (their `.nii` and `.nii.gz`) and globs, in order.

  Raises:
    FileNotFoundError: a file that does not exist.
    ValueError: a folder without NIfTI files, or a glob that matches nothing.
  """
  paths = []
  for pat in patterns:
    pat = os.fspath(pat)
    if os.path.isdir(pat):
      found = sorted(
        glob.glob(os.path.join(pat, "*.nii")) + glob.glob(os.path.join(pat, "*.nii.gz"))
      )
      if not found:
        raise ValueError(f"{pat}: folder holds no .nii or .nii.gz file")
      paths += found
    elif any(c in pat for c in "*?["):
      found = sorted(glob.glob(pat))
      if not found:
        raise ValueError(f"{pat}: pattern matches no file")
      paths += found
    else:
      if not os.path.exists(pat):
        raise FileNotFoundError(f"{pat}: no such file")
      paths.append(pat)
  return paths


def _available_ram() -> int:
  try:
    import psutil

    return int(psutil.virtual_memory().available)
  except Exception:  # psutil missing or unsupported platform
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


class Volume:
  """A 3-D array read on demand: `vol[x0:x1, y0:y1, z0:z1]` reads only that region.

  Attributes:
    path: the file it reads.
    shape: the array's shape.
  """

  def __init__(
    self, path: str, kind: str, reader: VolumeReader | None = None, canonical: bool = False
  ) -> None:
    self.path = path
    self.kind = kind  # "labels" or "image"
    self._reader = reader
    self._canonical = canonical
    self._data = None
    self._proxy = None
    self.shape: tuple[int, ...]
    self.affine: np.ndarray
    self.shape, self.affine = _header(path, reader, canonical)

  def _source(self):
    if self._data is not None:
      return self._data
    if self._reader is not None or self._canonical:
      self._data = self._convert(_read_full(self.path, self._reader, self._canonical))
      return self._data
    if self._proxy is None:
      try:
        self._proxy = nifti.load_image(self.path).dataobj
      except Exception as e:  # the file changed or broke after the source was built
        raise ValueError(f"{self.path}: cannot read data ({type(e).__name__}: {e})") from e
    return self._proxy

  def _convert(self, arr):
    arr = np.asarray(arr)
    if arr.ndim == 4 and arr.shape[3] == 1:
      arr = arr[..., 0]
    if self.kind == "image":
      return arr.astype(np.float32, copy=False)
    nifti.check_int32_range(self.path, arr)
    if np.issubdtype(arr.dtype, np.integer):
      return arr.astype(np.int32, copy=False)
    bad = ~np.isfinite(arr) | (arr != np.round(arr))
    if bad.any():
      where = tuple(int(i) for i in np.argwhere(bad)[0])
      raise ValueError(
        f"{self.path}: label map has {int(bad.sum())} non-integer value(s) in "
        f"the region read, e.g. {arr[where]!r} at {where} of that region"
      )
    return arr.astype(np.int32)

  def __getitem__(self, slices: tuple[slice, ...]) -> np.ndarray:
    src = self._source()
    if src is self._data:
      return src[slices]
    try:
      # A trailing singleton axis (X, Y, Z, 1) is common in NIfTI label maps.
      region = np.asarray(src[tuple(slices) + (0,)] if len(src.shape) == 4 else src[slices])
    except Exception as e:  # corrupt or truncated file
      raise ValueError(f"{self.path}: cannot read data ({type(e).__name__}: {e})") from e
    return self._convert(region)

  @property
  def seekable(self) -> bool:
    """Whether a region can be read without reading the file up to it (not gzip)."""
    return self._data is not None or (
      self._reader is None and not self._canonical and not self.path.endswith(".gz")
    )

  def read(self) -> np.ndarray:
    """The whole array (int32 labels or float32 image)."""
    return self[(slice(None),) * 3]

  def cache(self) -> Volume:
    """Reads the whole array into memory, where later reads take it from; returns `self`."""
    self._data = self.read()
    self._proxy = None
    return self

  def __getstate__(self) -> dict[str, Any]:
    state = dict(self.__dict__)
    state["_proxy"] = None  # file handles do not cross processes; reopened lazily
    return state


def _header(path, reader, canonical):
  if reader is not None:
    arr, affine = _call_reader(reader, path)
    return tuple(np.shape(arr)[:3]), np.asarray(affine, np.float64)
  try:
    img = nifti.load_image(path)
  except Exception as e:
    raise ValueError(f"{path}: cannot read as NIfTI ({type(e).__name__}: {e})") from e
  shape = tuple(img.shape)
  if len(shape) == 4 and shape[3] == 1:
    shape = shape[:3]
  if len(shape) != 3:
    raise ValueError(f"{path}: volume must be 3-D, got shape {tuple(img.shape)}")
  if canonical:
    ornt = nib.orientations.io_orientation(img.affine)
    transform = nib.orientations.inv_ornt_aff(ornt, shape)
    affine = img.affine @ transform
    shape = tuple(int(shape[int(a)]) for a in ornt[:, 0])
    return shape, np.asarray(affine, np.float64)
  return shape, np.asarray(img.affine, np.float64)


def _call_reader(reader, path):
  try:
    out = reader(path)
  except ValueError as e:
    if str(e).startswith(f"{path}: "):
      raise  # already one line naming the file (synthjax.scans' readers)
    raise ValueError(f"{path}: custom reader failed ({type(e).__name__}: {e})") from e
  except Exception as e:
    raise ValueError(f"{path}: custom reader failed ({type(e).__name__}: {e})") from e
  if isinstance(out, tuple) and len(out) == 2:
    arr, affine = out
  else:
    arr, affine = out, np.eye(4)
  arr = np.asarray(arr)
  if arr.ndim != 3:
    raise ValueError(f"{path}: custom reader returned shape {arr.shape}, expected 3-D")
  return arr, affine


def _read_full(path, reader, canonical):
  if reader is not None:
    return _call_reader(reader, path)[0]
  try:
    img = nifti.load_image(path)
    if canonical:
      img = nib.as_closest_canonical(img)
    return np.asanyarray(img.dataobj)
  except Exception as e:
    raise ValueError(f"{path}: cannot read data ({type(e).__name__}: {e})") from e


def _reference(labels: Volume | None, image: Volume | None) -> Volume:
  """The volume whose header describes an element: its label map, else its image."""
  ref = labels if labels is not None else image
  if ref is None:  # refused when the source is built
    raise ValueError("an element has neither a label map nor an image")
  return ref


@dataclasses.dataclass
class NiftiSource:
  """A Grain `RandomAccessDataSource` of label maps, optionally paired with images.

  Build it with `from_folder`, `from_files` or `from_pairs`. `source[i]` is a dict with
  `labels` (a `Volume`, or None for image-only sources), `image` (a `Volume` or None),
  `affine` (4x4), `spacing` (3,), `path` and `index`. It pickles cleanly for Grain's
  spawned workers (file handles are reopened there).

  Attributes:
    label_paths: one label map per element (entries may be None for image-only sources).
    image_paths: the matching images, or None.
    reader: optional custom reader `path -> array` or `path -> (array, affine)`.
    canonical: reorient every volume to RAS (reads whole volumes).
    cache: keep volumes in memory once read; "auto" caches when the total size is under a
      quarter of the available RAM (per process: each Grain worker holds its own copy).
  """

  label_paths: Sequence[PathLike | None]
  image_paths: Sequence[PathLike | None] | None = None
  reader: VolumeReader | None = None
  canonical: bool = False
  cache: bool | str = "auto"

  def __post_init__(self) -> None:
    self.label_paths = [None if p is None else os.fspath(p) for p in self.label_paths]
    if self.image_paths is not None:
      self.image_paths = [None if p is None else os.fspath(p) for p in self.image_paths]
      if len(self.image_paths) != len(self.label_paths):
        raise ValueError(f"{len(self.image_paths)} images for {len(self.label_paths)} label maps")
    if not self.label_paths:
      raise ValueError("the source is empty: no label maps given")
    missing = [p for p in self._all_paths() if not os.path.exists(p)]
    if missing:
      raise FileNotFoundError(
        f"{missing[0]}: no such file"
        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
      )
    self._volumes = [self._open(i) for i in range(len(self.label_paths))]
    if self.cache not in ("auto", True, False):
      raise ValueError(f"cache must be 'auto', True or False, got {self.cache!r}")
    self.cached: bool = (
      bool(self.cache) if self.cache != "auto" else (self.nbytes() < _available_ram() // 4)
    )

  def _all_paths(self):
    paths = [p for p in self.label_paths if p is not None]
    if self.image_paths is not None:
      paths += [p for p in self.image_paths if p is not None]
    return paths

  def _open(self, i):
    lab_path = self.label_paths[i]
    img_path = self.image_paths[i] if self.image_paths is not None else None
    labels = Volume(lab_path, "labels", self.reader, self.canonical) if lab_path else None
    image = Volume(img_path, "image", self.reader, self.canonical) if img_path else None
    if labels is None and image is None:
      raise ValueError(f"element {i} has neither a label map nor an image")
    if labels is not None and image is not None:
      if labels.shape != image.shape:
        raise ValueError(
          f"{img_path}: image shape {image.shape} differs from its label map "
          f"{lab_path} shape {labels.shape}"
        )
      if not np.allclose(labels.affine, image.affine, atol=1e-4):
        raise ValueError(f"{img_path}: image affine differs from its label map {lab_path}")
    return labels, image

  def describe(self, index: int) -> dict[str, Any]:
    """`{"shape", "path"}` of element `index` from the headers (reads no voxel)."""
    ref = _reference(*self._volumes[int(index)])
    return {"shape": ref.shape, "path": ref.path}

  def nbytes(self) -> int:
    """Total size of the volumes in memory (int32 labels, float32 images)."""
    return sum(4 * int(np.prod(v.shape)) for pair in self._volumes for v in pair if v is not None)

  def __len__(self) -> int:
    return len(self.label_paths)

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"index {index} out of range for a source of {len(self)} volumes")
    labels, image = self._volumes[index]
    if self.cached:
      for v in (labels, image):
        if v is not None and v._data is None:
          v.cache()
    ref = _reference(labels, image)
    spacing = np.sqrt(np.sum(ref.affine[:3, :3] ** 2, axis=0))
    return {
      "labels": labels,
      "image": image,
      "affine": ref.affine.copy(),
      "spacing": spacing,
      "path": ref.path,
      "index": index,
      "shape": ref.shape,
    }

  def __repr__(self) -> str:
    kind = "label maps" if self.image_paths is None else "image/label pairs"
    return f"NiftiSource({len(self)} {kind}, cached={self.cached})"

  # Constructors ----------------------------------------------------------------------

  @classmethod
  def from_files(
    cls,
    label_paths: Sequence[PathLike | None],
    image_paths: Sequence[PathLike | None] | None = None,
    **kwargs: Any,
  ) -> NiftiSource:
    """From explicit lists of label-map paths (and matching image paths)."""
    return cls(list(label_paths), None if image_paths is None else list(image_paths), **kwargs)

  @classmethod
  def from_folder(
    cls,
    folder: PathLike,
    pattern: str = "**/*",
    *,
    extensions: Sequence[str] = NIFTI_EXTENSIONS,
    **kwargs: Any,
  ) -> NiftiSource:
    """All label maps under `folder` matching `pattern` whose names end in `extensions`.

    Args:
      folder: the folder to search.
      pattern: a glob relative to `folder` (recursive with `**`).
      extensions: kept file-name endings (CAREamics' `extension_filter`), e.g. `(".npy",)`
        together with `reader=np.load`.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
      raise FileNotFoundError(f"{folder}: no such folder")
    paths = sorted(
      p
      for p in glob.glob(os.path.join(folder, pattern), recursive=True)
      if os.path.isfile(p) and p.endswith(tuple(extensions))
    )
    if not paths:
      raise ValueError(f"{folder}: no file matches {pattern!r} with extension {tuple(extensions)}")
    return cls(paths, None, **kwargs)

  @classmethod
  def from_pairs(
    cls,
    folder: PathLike,
    *,
    image_suffix: str = "_T2w",
    label_suffix: str = "_dseg",
    extensions: Sequence[str] = NIFTI_EXTENSIONS,
    **kwargs: Any,
  ) -> NiftiSource:
    """Image/label pairs matched by BIDS-like suffixes under `folder` (recursively).

    `sub-01_rec-x_T2w.nii.gz` pairs with `sub-01_rec-x_T2w_dseg.nii.gz` (or
    `sub-01_rec-x_dseg.nii.gz`). An image without a label map, or the reverse, is an error
    naming it: nothing is silently dropped.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
      raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(
      p
      for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)
      if os.path.isfile(p) and p.endswith(tuple(extensions))
    )
    images, labels = {}, {}
    for p in files:
      stem = _strip_ext(p, extensions)
      if stem.endswith(label_suffix):
        key = stem[: -len(label_suffix)]
        key = key[: -len(image_suffix)] if key.endswith(image_suffix) else key
        labels[key] = p
      elif stem.endswith(image_suffix):
        images[stem[: -len(image_suffix)]] = p
    if not images and not labels:
      raise ValueError(
        f"{folder}: no file ends in {image_suffix!r} or {label_suffix!r} "
        f"with extension {tuple(extensions)}"
      )
    lonely = sorted(set(images) ^ set(labels))
    if lonely:
      k = lonely[0]
      path = images.get(k) or labels.get(k)
      other = "label map" if k in images else "image"
      raise ValueError(f"{path}: no matching {other} ({len(lonely)} unpaired file(s) in {folder})")
    keys = sorted(images)
    return cls([labels[k] for k in keys], [images[k] for k in keys], **kwargs)
