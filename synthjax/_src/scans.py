"""Real scans and label maps on the training grid: orientation, spacing and intensities.

Training label maps and real scans go through the same geometry: reoriented to the
closest RAS orientation (nibabel's `as_closest_canonical`), then brought to the training
spacing. A scan is mapped back exactly the same way, so a prediction lands on the scan's
own grid with its affine.

- Label maps are coarsened by an integer factor with a majority vote in each block (every
  label keeps its share of the volume, unlike striding, which drops thin structures), and
  brought to any other spacing by a soft majority vote: each label's indicator is blurred
  and interpolated as an image would be, and the largest wins.
- Images are coarsened by block averaging for integer factors (a real thick voxel
  averages the tissue inside it) and otherwise resampled linearly after a Gaussian
  anti-aliasing blur (sigma = (f - 1) / 2 voxels for a factor f, as scikit-image's
  `resize(anti_aliasing=True)`).
- Intensities are normalised with the same function for synthetic and real images: the
  minimum maps to 0 and the 99.5th percentile to 1, clipped to [0, 1] (a robust min-max;
  the generator's own output is a plain min-max).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.imageglobals import LoggingOutputSuppressor
from nibabel.spatialimages import SpatialImage

from synthjax._src import nifti
from synthjax._src.pytypes import PathLike, Spacing

UPPER_PERCENTILE = 99.5
# Voxel sizes above this (in mm) are refused as a header error (e.g. metres as mm).
MAX_SPACING_MM = 100.0


class ScanError(ValueError):
  """A scan or label map that cannot be used, with the file named in the message."""


def load(path: PathLike, *, kind: str = "image") -> SpatialImage:
  """Reads a 3-D NIfTI file's header; returns the nibabel image (checked, with a 4-D
  singleton dropped). The voxels are read later (`read_data`).

  Raises:
    ScanError: missing or unreadable file, a rank other than 3, or a bad spacing (none in
      the header, not positive, not finite, or more than `MAX_SPACING_MM`).
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise ScanError(f"{path}: no such file")
  if os.path.isdir(path):
    raise ScanError(f"{path}: is a folder, not a NIfTI file")
  try:
    # Quiet: nibabel logs header fixes (such as zero pixdims) that are refused below.
    with LoggingOutputSuppressor():
      img = nifti.load_image(path)
    shape = img.shape
  except Exception as e:  # nibabel raises many types for bad files
    raise ScanError(f"{path}: cannot read as NIfTI ({type(e).__name__}: {e})") from e
  if not isinstance(img, nib.Nifti1Pair):  # NIfTI-1 and -2, single file or pair
    raise ScanError(f"{path}: not a NIfTI file (nibabel reads it as {type(img).__name__})")
  if len(shape) == 4 and shape[3] == 1:
    img = img.slicer[..., 0]
    shape = img.shape
  if len(shape) != 3:
    raise ScanError(f"{path}: {kind} must be 3-D, got shape {tuple(shape)}")
  if min(shape) < 1:
    raise ScanError(f"{path}: {kind} is empty, shape {tuple(shape)}")
  header = img.header
  if int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0:
    pixdim = _stored_pixdim(path, header)
    if not np.all(pixdim > 0):
      raise ScanError(
        f"{path}: {kind} has no voxel spacing in its header (pixdim "
        f"{pixdim.tolist()}, no qform or sform)"
      )
  zooms = np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(0))
  if not np.all(np.isfinite(np.asarray(img.affine))) or not np.all(zooms > 0):
    raise ScanError(f"{path}: {kind} has an invalid affine (spacing {zooms.tolist()})")
  if np.any(zooms > MAX_SPACING_MM):
    raise ScanError(
      f"{path}: {kind} has an absurd spacing {np.round(zooms, 4).tolist()} mm "
      f"(more than {MAX_SPACING_MM:g} mm); check its header's units"
    )
  return img


def _stored_pixdim(path, header):
  """The voxel sizes as the file stores them (nibabel replaces zeros by ones on reading)."""
  from nibabel.openers import ImageOpener

  try:
    with ImageOpener(path) as f:
      raw = type(header).from_fileobj(f, check=False)
    return np.asarray(raw["pixdim"][1:4], float)
  except Exception:  # a pair's header in another file, or a header nibabel read otherwise
    return np.asarray(header["pixdim"][1:4], float)


def read_data(img: SpatialImage, path: PathLike | None = None) -> np.ndarray:
  """The voxels of a nibabel image (as stored); a truncated or corrupt file is a `ScanError`
  naming it."""
  path = os.fspath(path or img.get_filename() or "<image>")
  try:
    return np.asanyarray(img.dataobj)
  except Exception as e:  # gzip, zlib and nibabel raise many types for a corrupt file
    raise ScanError(
      f"{path}: cannot read its voxels, the file is corrupt or truncated ({type(e).__name__}: {e})"
    ) from e


def check_image(path: PathLike) -> None:
  """Reads a scan fully and checks what `load_scan` checks (3-D, spacing, finite and not
  constant intensities), without resampling it: for refusing bad input before any output
  is written.

  Raises:
    ScanError: as `load` and `load_scan`.
  """
  img = load(path)
  _check_intensities(np.asarray(read_data(img, path), np.float32), path)


def _check_intensities(data, path):
  finite = np.isfinite(data)
  if not np.all(finite):
    raise ScanError(f"{path}: image has {int((~finite).sum())} non-finite voxel(s)")
  lo, hi = float(data.min()), float(data.max())
  if lo == hi:
    raise ScanError(
      f"{path}: image has constant intensities (every voxel is {lo:g}); nothing to segment"
    )


def canonical(img: SpatialImage) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`(data, affine, ornt)`: the data in the closest RAS orientation, and the orientation
  transform `ornt` that `from_canonical` undoes."""
  img_affine = np.asarray(img.affine)
  ornt = nib.orientations.io_orientation(img_affine)
  data = read_data(img)
  data = nib.orientations.apply_orientation(data, ornt)
  affine = img_affine @ nib.orientations.inv_ornt_aff(ornt, img.shape)
  return np.ascontiguousarray(data), affine, ornt


def from_canonical(data: np.ndarray, ornt: np.ndarray) -> np.ndarray:
  """Puts an array in canonical orientation back into the scan's own orientation."""
  inverse = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), ornt)
  # `ornt_transform(RAS, ornt)` maps the canonical axes onto the scan's axes.
  return np.ascontiguousarray(nib.orientations.apply_orientation(data, inverse))


def spacing_of(affine: np.ndarray) -> tuple[float, ...]:
  """The voxel size in mm along each array axis of a voxel-to-world `affine` (its columns'
  lengths)."""
  return tuple(float(s) for s in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0)))


def integer_factors(
  spacing: Spacing, target: Spacing, *, tol: float = 1e-3
) -> tuple[int, ...] | None:
  """The per-axis factors `target / spacing` if all are integers (else None)."""
  f = np.asarray(target, float) / np.asarray(spacing, float)
  r = np.round(f)
  return tuple(int(v) for v in r) if np.all(np.abs(f - r) < tol) and np.all(r >= 1) else None


def _crop_to_blocks(data, factors):
  return data[tuple(slice(0, (n // f) * f) for n, f in zip(data.shape, factors))]


def _blocks(data, factors):
  """View `(X/f, f, Y/f, f, Z/f, f)` of `data` (cropped to whole blocks)."""
  data = _crop_to_blocks(data, factors)
  shape = sum(((n // f, f) for n, f in zip(data.shape, factors)), ())
  return data.reshape(shape)


def block_affine(factors: Sequence[int]) -> np.ndarray:
  """The voxel-to-voxel affine of a block-coarsened grid: voxel `i` of the coarse grid is
  the centre `f * i + (f - 1) / 2` of its block on the fine grid."""
  f = np.asarray(factors, np.float64)
  m = np.diag(np.append(f, 1.0))
  m[:3, 3] = (f - 1.0) / 2.0
  return m


def downsample_labels(labels: np.ndarray, factors: Sequence[int]) -> np.ndarray:
  """Majority vote in each `factors` block (ties go to the smaller label value)."""
  factors = tuple(int(f) for f in factors)
  if factors == (1, 1, 1):
    return np.ascontiguousarray(labels, np.int32)
  blocks = _blocks(np.asarray(labels), factors)
  values = np.unique(blocks)
  best = np.full(blocks.shape[::2], -1, np.int64)
  best_value = np.zeros(blocks.shape[::2], np.int32)
  for v in values:
    count = (blocks == v).sum(axis=(1, 3, 5))
    better = count > best
    best = np.where(better, count, best)
    best_value = np.where(better, np.int32(v), best_value)
  return best_value


def downsample_image(image: np.ndarray, factors: Sequence[int]) -> np.ndarray:
  """Block average over `factors` blocks (float32)."""
  factors = tuple(int(f) for f in factors)
  image = np.asarray(image, np.float32)
  if factors == (1, 1, 1):
    return image
  return _blocks(image, factors).mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)


def resample(
  volume: np.ndarray,
  spacing: Spacing,
  target_spacing: Spacing,
  *,
  order: int,
  out_shape: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Resamples `volume` from `spacing` to `target_spacing` (voxel 0 centres aligned).

  Downsampling is anti-aliased with a Gaussian of sigma `(f - 1) / 2` voxels along axes
  coarsened by a factor `f > 1` (images only, `order >= 1`). Returns `(volume, scale)`
  with `scale = target_spacing / spacing`, so the new affine is `affine @ diag(scale, 1)`.
  """
  from scipy import ndimage

  volume = np.asarray(volume)
  scale = np.asarray(target_spacing, np.float64) / np.asarray(spacing, np.float64)
  if out_shape is None:
    out_shape = tuple(max(1, int(round(n / s))) for n, s in zip(volume.shape, scale))
  if order >= 1 and np.any(scale > 1):
    sigma = np.maximum(0.0, (scale - 1.0) / 2.0)
    volume = ndimage.gaussian_filter(volume.astype(np.float32), sigma, mode="nearest")
  out = ndimage.affine_transform(
    volume, scale, output_shape=tuple(out_shape), order=order, mode="nearest", prefilter=False
  )
  return out, scale


def resample_labels(
  labels: np.ndarray,
  spacing: Spacing,
  target_spacing: Spacing,
  *,
  out_shape: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """A label map brought from `spacing` to `target_spacing`: `(labels, voxel_affine)`, the
  second mapping the new grid's voxels to the old one's (so the new affine is
  `affine @ voxel_affine`).

  Integer factors that divide the shape take the block majority vote (`downsample_labels`).
  Other factors take a soft majority vote: each label's indicator is resampled as an image
  (Gaussian anti-aliasing, linear interpolation) and each voxel takes the label of the
  largest value, so every label keeps about its share of the volume. The indicators are
  resampled one label at a time (no one-hot volume).
  """
  labels = np.asarray(labels)
  factors = integer_factors(spacing, target_spacing)
  if factors is not None and all(n % f == 0 for n, f in zip(labels.shape, factors)):
    return downsample_labels(labels, factors), block_affine(factors)
  best = scale = None  # (largest fraction so far, its label value) and the grid's scale
  for v in np.unique(labels):
    frac, scale = resample(
      (labels == v).astype(np.float32), spacing, target_spacing, order=1, out_shape=out_shape
    )
    if best is None:
      best = frac, np.full(frac.shape, v, np.int32)
    else:
      better = frac > best[0]
      best = np.where(better, frac, best[0]), np.where(better, np.int32(v), best[1])
  if best is None or scale is None:
    raise ScanError(f"cannot resample an empty label map (shape {labels.shape})")
  return best[1], np.diag(np.append(scale, 1.0))


def normalize_intensity(image: Any, *, xp: Any = np) -> Any:
  """Robust min-max: the minimum to 0, the 99.5th percentile to 1, clipped to [0, 1].

  Works on numpy (`xp=np`) or JAX arrays (`xp=jnp`, traceable); the same formula is used
  for synthetic training images and real scans.
  """
  lo = xp.min(image)
  hi = xp.percentile(image, UPPER_PERCENTILE)
  scale = xp.where(hi > lo, hi - lo, 1.0)
  return xp.clip((image - lo) / scale, 0.0, 1.0).astype(xp.float32)


@dataclasses.dataclass(frozen=True)
class LabelReader:
  """A `NiftiSource` reader: a label map in RAS orientation, coarsened by `down`.

  Picklable, so Grain's spawned workers can use it.

  Attributes:
    down: integer coarsening factor (1 keeps the map), applied with a majority vote.
    spacing: the spacing in mm to bring every map to instead (`resample_labels`), so that
      maps of different voxel sizes train together; `down` must then be 1.
  """

  down: int = 1
  spacing: tuple[float, ...] | None = None

  def __post_init__(self) -> None:
    if self.spacing is not None and self.down != 1:
      raise ScanError(
        f"give a coarsening factor (down={self.down}) or a spacing ({self.spacing} mm), not both"
      )
    if self.spacing is not None and (len(self.spacing) != 3 or min(self.spacing) <= 0):
      raise ScanError(f"spacing must be three positive lengths in mm, got {self.spacing}")

  def __call__(self, path: PathLike) -> tuple[np.ndarray, np.ndarray]:
    img = load(path, kind="label map")
    data, affine, _ = canonical(img)
    if not np.issubdtype(data.dtype, np.integer):
      bad = ~np.isfinite(data) | (data != np.round(data))
      if bad.any():
        raise ScanError(f"{path}: label map has {int(bad.sum())} non-integer value(s)")
    data = data.astype(np.int64)
    if data.min() < 0 or data.max() > np.iinfo(np.int32).max:
      raise ScanError(
        f"{path}: label values must lie in [0, 2**31), got [{data.min()}, {data.max()}]"
      )
    return self._to_grid(data.astype(np.int32), affine)

  def layer(self, data: np.ndarray, path: PathLike) -> np.ndarray:
    """`data`, an integer volume on the grid of the label map at `path` (one of its seed
    maps), brought to the grid this reader reads that map on (`synthjax.data.seed_patches`'s
    `to_grid`)."""
    img = load(path, kind="label map")
    if tuple(np.shape(data)) != tuple(img.shape[:3]):
      raise ScanError(
        f"{path}: a volume of shape {tuple(np.shape(data))} is not on this "
        f"label map's grid {tuple(img.shape[:3])}"
      )
    oriented, affine, _ = canonical(nib.Nifti1Image(np.asarray(data, np.int32), img.affine))
    return self._to_grid(oriented, affine)[0]

  def _to_grid(self, data, affine):
    if self.spacing is None:
      data = downsample_labels(data, (self.down,) * 3)
      return data, affine @ block_affine((self.down,) * 3)
    data, voxel_affine = resample_labels(data, spacing_of(affine), self.spacing)
    return data, affine @ voxel_affine


@dataclasses.dataclass
class Scan:
  """A real scan brought to the training grid, with what is needed to go back.

  Attributes:
    path: the file.
    image: float32 normalised image on the training grid (canonical orientation).
    native_shape: the scan's own shape.
    affine: the scan's own affine.
    canonical_shape: shape in canonical orientation at the scan's own spacing.
    ornt: orientation transform (scan -> canonical).
    spacing: the scan's spacing in canonical orientation.
    target_spacing: the training spacing.
    origin: where training-grid voxel 0 lies on the canonical grid, in its voxels
      (`(f - 1) / 2` after block averaging by `f`, 0 after resampling).
  """

  path: str
  image: np.ndarray
  native_shape: tuple[int, ...]
  affine: np.ndarray
  canonical_shape: tuple[int, ...]
  ornt: np.ndarray
  spacing: tuple[float, ...]
  target_spacing: tuple[float, ...]
  origin: tuple[float, ...] = (0.0, 0.0, 0.0)

  def to_native(self, volume: np.ndarray, *, order: int) -> np.ndarray:
    """A volume on the training grid (`(*grid, C...)`) back on the scan's own grid."""
    from scipy import ndimage

    volume = np.asarray(volume)
    scale = np.asarray(self.spacing) / np.asarray(self.target_spacing)
    shift = -np.asarray(self.origin) * scale
    channels = volume.shape[3:]
    flat = volume.reshape(volume.shape[:3] + (-1,))
    # scipy takes a per-axis offset; its stubs say float.
    out = np.stack(
      [
        ndimage.affine_transform(
          flat[..., c],
          scale,
          shift,  # pyright: ignore[reportArgumentType]
          output_shape=self.canonical_shape,
          order=order,
          mode="nearest",
          prefilter=False,
        )
        for c in range(flat.shape[-1])
      ],
      axis=-1,
    )
    out = out.reshape(self.canonical_shape + channels)
    return from_canonical(out, self.ornt)


def load_scan(
  path: PathLike,
  target_spacing: Sequence[float],
  *,
  max_voxels: int = 512**3,
  normalize: bool = True,
) -> Scan:
  """Reads a real scan and brings it to the training grid (see the module docstring);
  `normalize=False` keeps its own intensities (for measuring them, `synthjax.priors`).

  Raises:
    ScanError: unreadable file, rank other than 3, invalid spacing, non-finite or constant
      values, or a resampled grid larger than `max_voxels`.
  """
  img = load(path)
  data, affine_c, ornt = canonical(img)
  data = np.asarray(data, np.float32)
  spacing = spacing_of(affine_c)
  target = tuple(float(s) for s in target_spacing)
  grid = [int(round(n * s / t)) for n, s, t in zip(data.shape, spacing, target)]
  if np.prod(np.maximum(grid, 1), dtype=np.float64) > max_voxels:
    raise ScanError(
      f"{path}: spacing {tuple(round(s, 3) for s in spacing)} mm resampled to "
      f"the training spacing {target} mm gives a grid of {grid} voxels, too large "
      f"(more than {max_voxels})"
    )
  _check_intensities(data, path)
  factors = integer_factors(spacing, target)
  if factors is not None and all(n % f == 0 for n, f in zip(data.shape, factors)):
    on_grid = downsample_image(data, factors)
    origin = tuple((f - 1) / 2.0 for f in factors)
  else:
    on_grid, _ = resample(data, spacing, target, order=1)
    origin = (0.0, 0.0, 0.0)
  image = normalize_intensity(on_grid) if normalize else on_grid.astype(np.float32)
  return Scan(
    path=os.fspath(path),
    image=image,
    native_shape=tuple(img.shape),
    affine=np.asarray(img.affine),
    canonical_shape=tuple(data.shape),
    ornt=ornt,
    spacing=spacing,
    target_spacing=target,
    origin=origin,
  )


def load_truth(path: PathLike, scan: Scan) -> np.ndarray:
  """A label map on the scan's own grid (same shape and affine), as int32."""
  img = load(path, kind="label map")
  if tuple(img.shape) != tuple(scan.native_shape):
    raise ScanError(
      f"{path}: label map shape {tuple(img.shape)} differs from its image "
      f"{scan.path} shape {tuple(scan.native_shape)}"
    )
  if not np.allclose(np.asarray(img.affine), scan.affine, atol=1e-3):
    raise ScanError(f"{path}: label map affine differs from its image {scan.path}")
  data = read_data(img, path)
  if not np.issubdtype(data.dtype, np.integer):
    bad = ~np.isfinite(data) | (data != np.round(data))
    if bad.any():
      raise ScanError(f"{path}: label map has {int(bad.sum())} non-integer value(s)")
  return np.asarray(data).astype(np.int32)


def parse_pairs(pairs: Sequence[str] | None) -> list[tuple[str, str]]:
  """`IMAGE:LABELS` strings to `(image, labels)` path tuples, each checked to exist."""
  out = []
  for pair in pairs or ():
    if pair.count(":") != 1:
      raise ScanError(f"{pair!r}: expected IMAGE:LABELS (two paths joined by one ':')")
    image, labels = pair.split(":")
    for p in (image, labels):
      if not os.path.exists(p):
        raise ScanError(f"{p}: no such file (in {pair!r})")
    out.append((image, labels))
  return out


def find_pairs(
  folder: PathLike, *, image_suffix: str = "_T2w", label_suffix: str = "_dseg"
) -> list[tuple[str, str]]:
  """Every `(image, labels)` pair of a BIDS-like folder, sorted by image path.

  An image is any `*{image_suffix}.nii[.gz]` below `folder`; its label map is the file of the
  same name with `label_suffix` in place of `image_suffix`, in the same folder.

  Raises:
    ScanError: no such folder, no image in it, or an image without its label map (named).
  """
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise ScanError(f"{folder}: no such folder")
  pairs = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    for name in sorted(files):
      for ext in (".nii.gz", ".nii"):
        if name.endswith(image_suffix + ext):
          stem = name[: -len(image_suffix + ext)]
          labels = os.path.join(root, stem + label_suffix + ext)
          if not os.path.exists(labels):
            raise ScanError(f"{os.path.join(root, name)}: no label map {labels}")
          pairs.append((os.path.join(root, name), labels))
          break
  if not pairs:
    raise ScanError(f"{folder}: no image named *{image_suffix}.nii[.gz] below it")
  return sorted(pairs)


def spacing_option(values: Sequence[float], option: str = "--spacing") -> tuple[float, ...]:
  """A command line's spacing (one length for every axis, or three) as three floats.

  Raises:
    ScanError: other than one or three values, or a length that is not positive and
      finite or is more than `MAX_SPACING_MM`.
  """
  values = tuple(float(v) for v in values)
  if len(values) not in (1, 3) or not all(0 < v <= MAX_SPACING_MM for v in values):
    raise ScanError(
      f"{option} takes one or three positive lengths in mm (at most "
      f"{MAX_SPACING_MM:g}), got {list(values)}"
    )
  return values * (3 // len(values))


def pairs_in(
  folders: Sequence[PathLike],
  *,
  image_suffix: str = "_T2w",
  label_suffix: str = "_dseg",
  match: str | None = None,
) -> list[tuple[str, str]]:
  """The pairs of every folder (`find_pairs`), those whose image path matches the regular
  expression `match` where one is given.

  Raises:
    ScanError: as `find_pairs`, or no pair matching `match`.
  """
  import re

  pairs = []
  for folder in folders:
    pairs += find_pairs(folder, image_suffix=image_suffix, label_suffix=label_suffix)
  if match:
    pairs = [pr for pr in pairs if re.search(match, pr[0])]
    if not pairs:
      raise ScanError(f"no image path in {list(folders)} matches {match!r}")
  return pairs


def load_pair(
  image_path: PathLike,
  label_path: PathLike,
  target_spacing: Sequence[float],
  *,
  normalize: bool = True,
) -> tuple[Scan, np.ndarray]:
  """A real scan and its label map, both on the training grid (canonical orientation):
  `(scan, labels)`, the labels coarsened by majority vote where the factors are integers
  (as the image is block-averaged), else by nearest neighbour. `normalize` as `load_scan`."""
  scan = load_scan(image_path, target_spacing, normalize=normalize)
  truth = load_truth(label_path, scan)
  canon = np.ascontiguousarray(nib.orientations.apply_orientation(truth, scan.ornt))
  factors = integer_factors(scan.spacing, target_spacing)
  if factors is not None and all(n % f == 0 for n, f in zip(canon.shape, factors)):
    grid = downsample_labels(canon, factors)
  else:
    grid, _ = resample(canon, scan.spacing, target_spacing, order=0, out_shape=scan.image.shape)
  return scan, np.ascontiguousarray(grid, np.int32)


@dataclasses.dataclass
class ArraySource:
  """A random-access source of in-memory volumes for `synthjax.data.pipeline`: label maps
  with their real images (already on the training grid).

  Attributes:
    labels: int32 arrays.
    images: float32 arrays of the same shapes (or None for label maps alone).
    names: one name per volume (used in error messages).
    spacing: the grid spacing.
  """

  labels: list[np.ndarray]
  images: list[np.ndarray] | None
  names: list[str]
  spacing: tuple[float, ...]

  def __len__(self) -> int:
    return len(self.labels)

  def describe(self, i: int) -> dict[str, Any]:
    """The shape and name of element `i`, as `synthjax.data` describes a source's elements."""
    return {"shape": tuple(self.labels[int(i)].shape), "path": self.names[int(i)]}

  def __getitem__(self, i: int) -> dict[str, Any]:
    i = int(i)
    image = None if self.images is None else self.images[i]
    return {
      "labels": self.labels[i],
      "image": image,
      "shape": tuple(self.labels[i].shape),
      "spacing": np.asarray(self.spacing),
      "affine": np.diag(list(self.spacing) + [1.0]),
      "path": self.names[i],
      "index": i,
    }


def pad_to(volume: np.ndarray, shape: Sequence[int], value: float = 0) -> np.ndarray:
  """Centre `volume` in `shape` (cropping where it is larger)."""
  out = np.full(shape, value, volume.dtype)
  src, dst = [], []
  for n, m in zip(volume.shape, shape):
    if n >= m:
      a = (n - m) // 2
      src.append(slice(a, a + m))
      dst.append(slice(0, m))
    else:
      a = (m - n) // 2
      src.append(slice(0, n))
      dst.append(slice(a, a + n))
  out[tuple(dst)] = volume[tuple(src)]
  return out


def common_shape(maps: Sequence[np.ndarray], multiple: int, dim: int) -> tuple[int, ...]:
  """The smallest shape holding every map whose sizes are multiples of `multiple` (a U-Net's
  total downsampling), except along z for a 2-D net (`dim` 2), which sees single slices."""
  shape = np.max([m.shape for m in maps], axis=0)
  shape = [int(-(-n // multiple) * multiple) for n in shape]
  if dim == 2:  # slices need no padding along z
    shape[2] = int(np.max([m.shape[2] for m in maps]))
  return tuple(shape)


def load_test(
  pair: Sequence[PathLike], spacing: Sequence[float]
) -> tuple[str, np.ndarray, np.ndarray]:
  """A real scan and its labels on the training grid: `(name, image, truth)`."""
  scan, grid = load_pair(pair[0], pair[1], spacing)
  name = os.path.basename(pair[0]).split(".nii")[0]
  return name, scan.image, grid
