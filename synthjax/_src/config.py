"""Static, hashable generator configuration.

Every field is a Python scalar or a tuple, so a `SynthConfig` can be passed as a static
argument to `jax.jit` and used as a dictionary key. Stage configs carry the ranges that
`sample_params` draws from and the probability that the stage is applied; `enabled=False`
removes a stage from the compiled program altogether.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Optional

import numpy as np

Range = tuple[float, float]


def as_range(name: str, value: Any) -> Range:
  try:
    lo, hi = (float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}") from None
  if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
    raise ValueError(f"{name} must be a finite range with low <= high, got {(lo, hi)}")
  return (lo, hi)


def check_prob(name: str, p: float) -> float:
  p = float(p)
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
  return p


def _freeze_ranges(obj, *names):
  for name in names:
    object.__setattr__(obj, name, as_range(f"{type(obj).__name__}.{name}", getattr(obj, name)))
  object.__setattr__(obj, "prob", check_prob(f"{type(obj).__name__}.prob", obj.prob))
  object.__setattr__(obj, "enabled", bool(obj.enabled))


@dataclasses.dataclass(frozen=True)
class GMMConfig:
  """Per-label Gaussian intensities (SynthSeg's `SampleConditionalGMM`).

  Attributes:
    mean: range of the uniform prior on each label's mean intensity.
    std: range of the uniform prior on each label's standard deviation.
    prob_background_zero: probability that the background label gets mean 0 and std 0.
  """
  mean: Range = (0.0, 250.0)
  std: Range = (0.0, 30.0)
  prob_background_zero: float = 0.05
  prob: float = 1.0  # kept for a uniform stage interface; the GMM is always rendered.
  enabled: bool = True

  def __post_init__(self):
    _freeze_ranges(self, "mean", "std")
    if self.std[0] < 0:
      raise ValueError(f"GMMConfig.std must be non-negative, got {self.std}")
    object.__setattr__(self, "prob_background_zero",
                       check_prob("GMMConfig.prob_background_zero", self.prob_background_zero))


@dataclasses.dataclass(frozen=True)
class AffineConfig:
  """Random affine transform about the centre of the output field of view.

  The transform maps each output voxel to the point of the label map it samples (SynthSeg's
  convention), so `scaling` scales the *sampling grid*: a factor `s > 1` covers a larger
  part of the map and the anatomy appears `1 / s` times its size; `s < 1` enlarges it.
  TorchIO's `RandomAffine(scales=...)` is the inverse (a factor above 1 enlarges).
  `object_size` is the plain-language control: an isotropic factor on the anatomy's size
  (0.5 renders it at half its linear size), drawn once per sample on top of `scaling`.

  Attributes:
    rotation: range of each of the three rotation angles, in degrees.
    scaling: range of each axis' sampling-grid factor (drawn per axis: also changes the
      aspect ratio); the anatomy appears `1 / scaling` times its size.
    shear: range of each of the six shear terms.
    translation: range of each axis' translation, in mm.
    object_size: optional range of the isotropic size factor of the anatomy (`None`: no
      such draw, and no `object_size` entry in the params).

  Examples:
    >>> AffineConfig(object_size=(0.5, 1.1)).object_size   # half to 1.1x the map's size
    (0.5, 1.1)
  """
  rotation: Range = (-15.0, 15.0)
  scaling: Range = (0.8, 1.2)
  shear: Range = (-0.012, 0.012)
  translation: Range = (0.0, 0.0)
  prob: float = 1.0
  enabled: bool = True
  object_size: Optional[Range] = None

  def __post_init__(self):
    _freeze_ranges(self, "rotation", "scaling", "shear", "translation")
    if self.scaling[0] <= 0:
      raise ValueError(f"AffineConfig.scaling must be positive, got {self.scaling}")
    if self.object_size is not None:
      size = as_range("AffineConfig.object_size", self.object_size)
      if size[0] <= 0:
        raise ValueError(f"AffineConfig.object_size must be positive, got {size}")
      object.__setattr__(self, "object_size", size)


@dataclasses.dataclass(frozen=True)
class DeformationConfig:
  """Stationary velocity field integrated by scaling and squaring (SynthSeg, VoxelMorph).

  The velocity is drawn on a grid of `ceil(grid_scale * shape)` nodes per axis with a
  standard deviation `std` (voxels of the output grid), upsampled to half resolution,
  integrated there in `steps` squarings and upsampled to the output grid.

  Attributes:
    std: range of the velocity standard deviation, in output voxels.
    grid_scale: range of the ratio between the small grid and the output shape. A range
      (FetalSynthGen's `nonlin_scale`) draws the grid size per sample.
    steps: number of squarings.
  """
  std: Range = (0.0, 4.0)
  grid_scale: Range = (0.04, 0.04)
  steps: int = 7
  prob: float = 1.0
  enabled: bool = True

  def __post_init__(self):
    _freeze_ranges(self, "std", "grid_scale")
    if self.grid_scale[0] <= 0 or self.grid_scale[1] > 1:
      raise ValueError(f"DeformationConfig.grid_scale must lie in (0, 1], got {self.grid_scale}")
    if int(self.steps) < 0:
      raise ValueError(f"DeformationConfig.steps must be >= 0, got {self.steps}")
    object.__setattr__(self, "steps", int(self.steps))


@dataclasses.dataclass(frozen=True)
class FlipConfig:
  """Left/right flip with swap of the paired labels (SynthSeg's `RandomFlip`).

  The mirror is applied to the output grid inside the coordinate map, before the
  deformation: without deformation the output is exactly mirrored; with it, the sample is
  the mirror of one drawn with the mirrored (equally likely) deformation field.

  Attributes:
    axis: the array axis that runs left to right (0 for RAS-oriented volumes).
  """
  axis: int = 0
  prob: float = 0.5
  enabled: bool = True

  def __post_init__(self):
    object.__setattr__(self, "prob", check_prob("FlipConfig.prob", self.prob))
    object.__setattr__(self, "enabled", bool(self.enabled))
    if int(self.axis) not in (0, 1, 2):
      raise ValueError(f"FlipConfig.axis must be 0, 1 or 2, got {self.axis}")
    object.__setattr__(self, "axis", int(self.axis))


@dataclasses.dataclass(frozen=True)
class BiasConfig:
  """Multiplicative smooth bias field `exp(N(0, std))` drawn on a small grid.

  Attributes:
    std: range of the log-field standard deviation.
    grid_scale: range of the ratio between the small grid and the output shape.
  """
  std: Range = (0.0, 0.7)
  grid_scale: Range = (0.025, 0.025)
  prob: float = 0.95
  enabled: bool = True

  def __post_init__(self):
    _freeze_ranges(self, "std", "grid_scale")
    if self.grid_scale[0] <= 0 or self.grid_scale[1] > 1:
      raise ValueError(f"BiasConfig.grid_scale must lie in (0, 1], got {self.grid_scale}")


@dataclasses.dataclass(frozen=True)
class GammaConfig:
  """Gamma transform `x ** exp(g)`, `g ~ N(0, std)`, on the [0, 1]-normalised image.

  Attributes:
    std: standard deviation of the log-gamma.
    clip: intensities are clipped to [0, clip] before normalisation (SynthSeg: 300).
  """
  std: float = 0.5
  clip: float = 300.0
  prob: float = 1.0
  enabled: bool = True

  def __post_init__(self):
    object.__setattr__(self, "prob", check_prob("GammaConfig.prob", self.prob))
    object.__setattr__(self, "enabled", bool(self.enabled))
    if float(self.std) < 0 or float(self.clip) <= 0:
      raise ValueError(f"GammaConfig needs std >= 0 and clip > 0, got {self.std}, {self.clip}")
    object.__setattr__(self, "std", float(self.std))
    object.__setattr__(self, "clip", float(self.clip))


SLICE_PROFILES = ("gaussian", "boxcar", "triangle")


@dataclasses.dataclass(frozen=True)
class ResolutionConfig:
  """Acquisition resolution simulation (SynthSeg's `SampleResolution`, `MimicAcquisition`).

  With probability `prob_iso` the acquisition is isotropic at `U[min_res, max_res_iso]`;
  otherwise one random axis gets `U[min_res, max_res_aniso]` and the others `min_res`.
  The slice thickness is `U[min_res, resolution]` per axis when `random_thickness`, else the
  resolution. The image is blurred along each axis by the slice profile of that axis'
  thickness, sampled on the low-resolution grid and linearly interpolated back onto the
  output grid.

  Attributes:
    min_res: lowest resolution in mm; `None` means the config spacing (per axis).
    blur_factor: Gaussian profile only: `sigma = blur_factor * thickness / spacing` voxels
      (SynthSeg's rule; 0.5 voxel on axes at the native resolution).
    blur_range: the profile's width (sigma or full width) is scaled by
      `U[1/blur_range, blur_range]`.
    slice_profile: "gaussian" (SynthSeg), "boxcar" (the average over a slab of full width
      `thickness`, with fractional end weights) or "triangle" (that boxcar convolved with
      itself: full width at half maximum `thickness`, base `2 * thickness`).
  """
  max_res_iso: float = 4.0
  max_res_aniso: float = 8.0
  min_res: Optional[float] = None
  prob_iso: float = 0.1
  random_thickness: bool = True
  blur_factor: float = 0.75
  blur_range: float = 1.03
  slice_profile: str = "gaussian"
  prob: float = 0.95
  enabled: bool = True

  def __post_init__(self):
    if self.slice_profile not in SLICE_PROFILES:
      raise ValueError(f"ResolutionConfig.slice_profile must be one of {SLICE_PROFILES}, "
                       f"got {self.slice_profile!r}")
    object.__setattr__(self, "slice_profile", str(self.slice_profile))
    object.__setattr__(self, "prob", check_prob("ResolutionConfig.prob", self.prob))
    object.__setattr__(self, "prob_iso", check_prob("ResolutionConfig.prob_iso", self.prob_iso))
    object.__setattr__(self, "enabled", bool(self.enabled))
    object.__setattr__(self, "random_thickness", bool(self.random_thickness))
    for name in ("max_res_iso", "max_res_aniso", "blur_factor", "blur_range"):
      v = float(getattr(self, name))
      if not v > 0:
        raise ValueError(f"ResolutionConfig.{name} must be positive, got {v}")
      object.__setattr__(self, name, v)
    if self.blur_range < 1:
      raise ValueError(f"ResolutionConfig.blur_range must be >= 1, got {self.blur_range}")
    if self.min_res is not None:
      object.__setattr__(self, "min_res", float(self.min_res))


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
  """Additive Gaussian noise on the [0, 1]-normalised image.

  Attributes:
    std: range of the noise standard deviation (FetalSynthGen's 5..15 on a 0..255 scale is
      (5/255, 15/255) here).
  """
  std: Range = (0.0, 0.0)
  prob: float = 0.0
  enabled: bool = True

  def __post_init__(self):
    _freeze_ranges(self, "std")
    if self.std[0] < 0:
      raise ValueError(f"NoiseConfig.std must be non-negative, got {self.std}")


def as_int_range(name: str, value: Any, minimum: int) -> tuple[int, int]:
  try:
    lo, hi = value
    if any(isinstance(v, bool) or float(v) != int(v) for v in (lo, hi)):
      raise ValueError
    lo, hi = int(lo), int(hi)
  except (TypeError, ValueError, OverflowError):
    raise ValueError(f"{name} must be a (low, high) pair of integers, got {value!r}") from None
  if lo < minimum or lo > hi:
    raise ValueError(f"{name} must be integers with {minimum} <= low <= high, got {(lo, hi)}")
  return (lo, hi)


@dataclasses.dataclass(frozen=True)
class SpikeConfig:
  """k-space spike (herringbone) artifact, as TorchIO's `RandomSpike`.

  `n ~ U{num_spikes}` spikes at positions `U[0, 1)^3` (fractions of the centred k-space,
  coefficient `floor(position * shape)` of `fftshift(fftn(x))`) each get `intensity * max|k|`
  added (TorchIO's spike); the image is the magnitude of the inverse transform. Positions
  are recorded for `num_spikes[1]` spikes; those past `n` are masked.

  Attributes:
    num_spikes: range of the (integer) number of spikes; the high end fixes the params shape.
    intensity: range of the spike magnitude relative to the maximum k-space magnitude.
  """
  num_spikes: tuple[int, int] = (1, 1)
  intensity: Range = (1.0, 3.0)
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    _freeze_ranges(self, "intensity")
    num = as_int_range("SpikeConfig.num_spikes", self.num_spikes, 0)
    if num[1] < 1:
      raise ValueError(f"SpikeConfig.num_spikes must allow at least one spike, got {num}")
    object.__setattr__(self, "num_spikes", num)


@dataclasses.dataclass(frozen=True)
class GhostingConfig:
  """Ghosting along a phase-encoding axis, as TorchIO's `RandomGhosting`.

  Along the drawn `axis`, every `num_ghosts`-th line of the centred k-space (indices
  `0, n, 2n, ...`) is scaled by `1 - intensity`, which puts ghosts every
  `shape[axis] / num_ghosts` voxels in the image. The lines at frequencies
  `|f| <= round(restore * shape[axis]) // 2` are left untouched (with `restore = 0`, only
  the central line: TorchIO's default). The image is the magnitude of the inverse transform.

  Attributes:
    num_ghosts: range of the (integer) line period `n`; 0 means no ghosting.
    axes: the axes the phase-encoding axis is drawn from (uniformly).
    intensity: range of the artifact strength (0: no ghosts; 1: the lines are zeroed).
    restore: fraction of the k-space lines about the centre that are restored.
  """
  num_ghosts: tuple[int, int] = (4, 10)
  axes: tuple[int, ...] = (0, 1, 2)
  intensity: Range = (0.5, 1.0)
  restore: float = 0.0
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    _freeze_ranges(self, "intensity")
    object.__setattr__(self, "num_ghosts",
                       as_int_range("GhostingConfig.num_ghosts", self.num_ghosts, 0))
    axes = tuple(int(a) for a in (self.axes if isinstance(self.axes, (tuple, list))
                                  else (self.axes,)))
    if not axes or any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
      raise ValueError(f"GhostingConfig.axes must be distinct axes among 0, 1, 2, got {self.axes}")
    object.__setattr__(self, "axes", axes)
    if self.intensity[0] < 0:
      raise ValueError(f"GhostingConfig.intensity must be non-negative, got {self.intensity}")
    restore = float(self.restore)
    if not 0.0 <= restore <= 1.0:
      raise ValueError(f"GhostingConfig.restore must lie in [0, 1], got {self.restore}")
    object.__setattr__(self, "restore", restore)


@dataclasses.dataclass(frozen=True)
class GibbsConfig:
  """Gibbs ringing by k-space truncation (MONAI's `RandGibbsNoise`, with a box).

  k-space frequencies with `|f| > (1 - alpha) * shape / 2` along any axis are zeroed (a
  centred box keeping a fraction `1 - alpha` of each axis' band, as a smaller acquisition
  matrix; MONAI uses a ball) and the image is the magnitude of the inverse transform.

  Attributes:
    alpha: range of the truncation strength in [0, 1] (0: identity; 1: only the mean left).
  """
  alpha: Range = (0.0, 0.8)
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    _freeze_ranges(self, "alpha")
    if self.alpha[0] < 0 or self.alpha[1] > 1:
      raise ValueError(f"GibbsConfig.alpha must lie in [0, 1], got {self.alpha}")


@dataclasses.dataclass(frozen=True)
class RicianConfig:
  """Rician noise `sqrt((x + n1)^2 + n2^2)`, `n1, n2 ~ N(0, std)` (MONAI's `RandRicianNoise`).

  The noise of a magnitude image reconstructed from complex data with Gaussian noise; on
  the [0, 1]-normalised image, after the k-space artifacts and before the Gaussian `noise`
  stage (an alternative to it: enable one or the other, or both).

  Attributes:
    std: range of the standard deviation of each of the two Gaussian components.
  """
  std: Range = (0.0, 0.05)
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    _freeze_ranges(self, "std")
    if self.std[0] < 0:
      raise ValueError(f"RicianConfig.std must be non-negative, got {self.std}")


@dataclasses.dataclass(frozen=True)
class SubclusterConfig:
  """Sub-label intensity classes (FetalSynthGen's seeds, `ImageFromSeeds`).

  Labels are merged into meta-labels and each meta-label `m` is split into `K_m` subclusters,
  `K_m ~ U{num_subclusters}` per sample, each with its own Gaussian drawn from the GMM
  priors (`SynthConfig.gmm`). Voxels outside every meta-label keep their label's Gaussian.

  Two sources of the split:

  * `"procedural"` (no files): meta-label `m` is the group `meta_labels[m - 1]` of label
    values (by default every non-background label on its own); a smooth random field `f`
    (a small Gaussian grid of `grid_scale * shape` nodes, upsampled, standardised) splits it
    into `K_m` level-set regions, subcluster `floor(K_m * frac(Phi(f) + phase_m))`.
  * `"seeds"`: precomputed seed maps in FetalSynthGen's layout, passed to `synthesize` as
    `seeds` (`(max_subclusters, X, Y, Z)`, entry `K - 1` holding the union over meta-labels
    of the `subclasses_K` maps, voxel values `10 * m + k`; see
    `synthjax.data.load_seed_maps`).

  Related classes (FetalSynthGen's `generation_classes`): for meta-labels listed in
  `related_metas`, the subcluster means are `clip(mu_m + related_std * N(0, 1), 0,
  gmm.mean[1])` about one shared mean `mu_m` instead of independent draws.

  Attributes:
    num_subclusters: range of the (integer) number of subclusters per meta-label; the high
      end (at most 10) fixes the params shape.
    source: `"procedural"` or `"seeds"`.
    meta_labels: procedural source: groups of label values forming meta-labels 1, 2, ...;
      `()` makes every non-background label its own meta-label.
    num_meta: seeds source: the number of meta-labels (values `10 * m + k`, m = 1..num_meta).
    related_metas: meta-labels (1-based) whose subclusters share a mean.
    related_std: spread of related subcluster means about their shared mean.
    grid_scale: procedural source: range of the split field's grid / shape ratio.
  """
  num_subclusters: tuple[int, int] = (1, 6)
  source: str = "procedural"
  meta_labels: tuple[tuple[int, ...], ...] = ()
  num_meta: int = 4
  related_metas: tuple[int, ...] = ()
  related_std: float = 25.0
  grid_scale: Range = (0.03, 0.08)
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    _freeze_ranges(self, "grid_scale")
    if self.grid_scale[0] <= 0 or self.grid_scale[1] > 1:
      raise ValueError(f"SubclusterConfig.grid_scale must lie in (0, 1], got {self.grid_scale}")
    num = as_int_range("SubclusterConfig.num_subclusters", self.num_subclusters, 1)
    if num[1] > 10:
      raise ValueError(f"SubclusterConfig.num_subclusters allows at most 10 subclusters "
                       f"(seed values 10 * m + k), got {num}")
    object.__setattr__(self, "num_subclusters", num)
    if self.source not in ("procedural", "seeds"):
      raise ValueError(f"SubclusterConfig.source must be 'procedural' or 'seeds', got "
                       f"{self.source!r}")
    try:
      groups = tuple(tuple(int(v) for v in g) for g in self.meta_labels)
    except TypeError:
      raise ValueError(f"SubclusterConfig.meta_labels must be groups of label values, got "
                       f"{self.meta_labels!r}") from None
    flat = [v for g in groups for v in g]
    if any(not g for g in groups) or len(flat) != len(set(flat)):
      raise ValueError(f"SubclusterConfig.meta_labels must be non-empty groups naming each "
                       f"label at most once, got {groups}")
    object.__setattr__(self, "meta_labels", groups)
    if int(self.num_meta) < 1:
      raise ValueError(f"SubclusterConfig.num_meta must be >= 1, got {self.num_meta}")
    object.__setattr__(self, "num_meta", int(self.num_meta))
    related = tuple(int(m) for m in self.related_metas)
    if any(m < 1 for m in related) or len(set(related)) != len(related):
      raise ValueError(f"SubclusterConfig.related_metas must be distinct meta-labels >= 1, "
                       f"got {self.related_metas}")
    object.__setattr__(self, "related_metas", related)
    if not float(self.related_std) >= 0:
      raise ValueError(f"SubclusterConfig.related_std must be >= 0, got {self.related_std}")
    object.__setattr__(self, "related_std", float(self.related_std))
    object.__setattr__(self, "prob", check_prob("SubclusterConfig.prob", self.prob))
    object.__setattr__(self, "enabled", bool(self.enabled))


@dataclasses.dataclass(frozen=True)
class ImageIntensityConfig:
  """A real image as the intensity prior (FetalSynthGen's `image_as_intensity`).

  Where applied, the image passed to `synthesize` as `image` is deformed with the labels'
  coordinate map (trilinear), min-max scaled to [0, scale] and used instead of the GMM
  intensities; the rest of the pipeline (bias, gamma, resolution, artifacts) follows.

  Attributes:
    scale: the intensity range the image is scaled to (the GMM's 0..255 scale).
  """
  scale: float = 255.0
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    if not float(self.scale) > 0:
      raise ValueError(f"ImageIntensityConfig.scale must be positive, got {self.scale}")
    object.__setattr__(self, "scale", float(self.scale))
    object.__setattr__(self, "prob", check_prob("ImageIntensityConfig.prob", self.prob))
    object.__setattr__(self, "enabled", bool(self.enabled))


@dataclasses.dataclass(frozen=True)
class MotionConfig:
  """Rigid motion during the acquisition, as TorchIO's `RandomMotion`.

  Attributes:
    degrees: range of each movement's three rotation angles, in degrees (TorchIO: ±10).
    translation: range of each movement's three translations, in mm (TorchIO: ±10).
    num_transforms: range of the (integer) number of movements; the high end fixes the
      params shape. TorchIO's default is exactly 2 movements, (2, 2).
    axes: the axes the segment (slow phase-encoding) axis is drawn from, uniformly.
      TorchIO always segments the last axis, (2,).
    perturbation: jitter of each movement time, as a fraction of the interval
      `1 / (n + 1)` between evenly spaced times (TorchIO: 0.3); at most 0.5 keeps the
      times ordered.
  """
  degrees: Range = (-10.0, 10.0)
  translation: Range = (-10.0, 10.0)
  num_transforms: tuple[int, int] = (2, 2)
  axes: tuple[int, ...] = (2,)
  perturbation: float = 0.3
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    _freeze_ranges(self, "degrees", "translation")
    num = as_int_range("MotionConfig.num_transforms", self.num_transforms, 0)
    if num[1] < 1:
      raise ValueError(f"MotionConfig.num_transforms must allow at least one movement, got {num}")
    object.__setattr__(self, "num_transforms", num)
    try:
      axes = tuple(int(a) for a in (self.axes if isinstance(self.axes, (tuple, list))
                                    else (self.axes,)))
    except (TypeError, ValueError):
      axes = ()
    if not axes or any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
      raise ValueError(f"MotionConfig.axes must be distinct axes among 0, 1, 2, got {self.axes}")
    object.__setattr__(self, "axes", axes)
    pert = float(self.perturbation)
    if not 0.0 <= pert <= 0.5:
      raise ValueError(f"MotionConfig.perturbation must lie in [0, 0.5], got {self.perturbation}")
    object.__setattr__(self, "perturbation", pert)


@dataclasses.dataclass(frozen=True)
class SliceStackConfig:
  """Slice-stack acquisition with inter-slice motion and reconstruction (see module doc).

  Defaults mirror FetalSynthGen's `SimulateMotion` scanner where it has an equivalent:
  thickness U[1.5, 3.5] mm (`slice_thickness_min/max`); its `gap` U[1.5, 5.5] mm is the
  distance between slice centres, which here is `thickness + gap`: gap U[0, 2] mm gives
  centre distances in [1.5, 5.5] mm. The peer draws 2-6 stacks; the default here is 2-3
  (one per orientation; the cost grows linearly with the number of stack slots). The
  peer's motion comes from recorded fetal trajectories; here a random walk with steps of
  up to 1 degree / 1 mm per slice reaches a few degrees / mm within a stack of ~40 slices.

  Attributes:
    num_stacks: range of the (integer) number of stacks; the high end, rounded up to a
      multiple of `len(axes)`, is the (static) number of stack slots.
    axes: the slice axes, in slot order (stack slot `i` uses `axes[i % len(axes)]`).
    thickness: range of each stack's slice thickness (FWHM of the slice profile), in mm.
    gap: range of each stack's gap between slices, in mm (negative: overlapping slices);
      `thickness[0] + gap[0]` must be positive.
    rotation_std: range of each stack's random-walk step std of the three rotation angles
      (degrees per slice time).
    translation_std: range of each stack's random-walk step std of the three translations
      (mm per slice time).
  """
  num_stacks: tuple[int, int] = (2, 3)
  axes: tuple[int, ...] = (0, 1, 2)
  thickness: Range = (1.5, 3.5)
  gap: Range = (0.0, 2.0)
  rotation_std: Range = (0.0, 1.0)
  translation_std: Range = (0.0, 1.0)
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    _freeze_ranges(self, "thickness", "gap", "rotation_std", "translation_std")
    num = as_int_range("SliceStackConfig.num_stacks", self.num_stacks, 1)
    object.__setattr__(self, "num_stacks", num)
    axes = self.axes if isinstance(self.axes, (tuple, list)) else (self.axes,)
    try:
      axes = tuple(int(a) for a in axes)
    except (TypeError, ValueError):
      axes = ()
    if not axes or any(a not in (0, 1, 2) for a in axes) or len(set(axes)) != len(axes):
      raise ValueError("SliceStackConfig.axes must be distinct axes among 0, 1, 2, "
                       f"got {self.axes!r}")
    object.__setattr__(self, "axes", axes)
    if self.thickness[0] <= 0:
      raise ValueError(f"SliceStackConfig.thickness must be positive, got {self.thickness}")
    if self.thickness[0] + self.gap[0] <= 0:
      raise ValueError("SliceStackConfig.gap: thickness[0] + gap[0] (the smallest distance "
                       f"between slice centres) must be positive, got thickness {self.thickness}"
                       f" and gap {self.gap}")
    for name in ("rotation_std", "translation_std"):
      if getattr(self, name)[0] < 0:
        raise ValueError(f"SliceStackConfig.{name} must be non-negative, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class StructNoiseConfig:
  """Structural noise in a region (FetalSynthGen's `StructNoise`, an SR artifact).

  A multi-scale noise field (`num_stages` levels from half resolution down, normalised to
  `max |.| = 1`) is added with weight `std` to the [0, 1] image and clamped to
  `[0, 2 max x]`; the result is blended into the image with a mixture of `num_blobs`
  isotropic Gaussian blobs (widths `clip(N(sigma_mean, sigma_std), *sigma_clip)` voxels)
  centred at random voxels of the region (FetalSynthGen: the white matter, label 3 of
  FeTA). An empty region leaves the image unchanged.

  Defaults mirror FetalSynthGen's documented configuration (`docs/sr_artif_api.md`:
  `std_min 0.2, std_max 0.4, nloc_min 5, nloc_max 15`, `nstages` 1..5, `sigma_mu 25`,
  `sigma_std 5`, clamp [1, 40]), with numpy's exclusive upper bounds made inclusive
  (`randint(5, 15)` is 5..14, `randint(1, 5)` is 1..4). FetalSynthGen's stage is optional
  (absent from its default generator; its docs suggest `prob 0.4`), so here it is off by
  default: `enabled=False`, `prob=0`.

  Attributes:
    std: range of the noise weight (on the [0, 1] image).
    num_blobs: range of the (integer) number of blobs (FetalSynthGen's `nloc`); the high end
      fixes the params shape.
    num_stages: range of the (integer) number of noise levels (FetalSynthGen's `nstages`).
    sigma_mean, sigma_std: mean and std of the Gaussian prior on each blob's width, voxels.
    sigma_clip: the blob widths are clipped to this range (voxels).
    region_labels: label values whose voxels may hold blob centres (FetalSynthGen's
      `wm_label`); used by the generator to build the region mask.
  """
  std: Range = (0.2, 0.4)
  num_blobs: tuple[int, int] = (5, 14)
  num_stages: tuple[int, int] = (1, 4)
  sigma_mean: float = 25.0
  sigma_std: float = 5.0
  sigma_clip: Range = (1.0, 40.0)
  region_labels: tuple[int, ...] = (3,)
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    _freeze_ranges(self, "std", "sigma_clip")
    name = type(self).__name__
    if self.std[0] < 0:
      raise ValueError(f"{name}.std must be non-negative, got {self.std}")
    blobs = as_int_range(f"{name}.num_blobs", self.num_blobs, 0)
    if blobs[1] < 1:
      raise ValueError(f"{name}.num_blobs must allow at least one blob, got {blobs}")
    object.__setattr__(self, "num_blobs", blobs)
    object.__setattr__(self, "num_stages", as_int_range(f"{name}.num_stages",
                                                         self.num_stages, 1))
    for field in ("sigma_mean", "sigma_std"):
      v = getattr(self, field)
      try:
        v = float(v)
      except (TypeError, ValueError):
        raise ValueError(f"{name}.{field} must be a number, got {v!r}") from None
      if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name}.{field} must be finite and non-negative, got {v}")
      object.__setattr__(self, field, v)
    if self.sigma_clip[0] <= 0:
      raise ValueError(f"{name}.sigma_clip must be positive, got {self.sigma_clip}")
    labels = self.region_labels
    labels = tuple(labels) if isinstance(labels, (tuple, list)) else (labels,)
    try:
      if any(isinstance(v, bool) or float(v) != int(v) for v in labels):
        raise ValueError
      labels = tuple(int(v) for v in labels)
    except (TypeError, ValueError, OverflowError):
      raise ValueError(f"{name}.region_labels must be integers, got {self.region_labels!r}") \
          from None
    object.__setattr__(self, "region_labels", labels)


@dataclasses.dataclass(frozen=True)
class TextureConfig:
  """Multi-scale multiplicative texture inside labels (anatomix's Perlin texture).

  The GMM intensities are multiplied by `1 + amplitude[label] * noise` (clipped at 0), where
  `noise` is a unit-std multi-scale field: `num_scales` levels from a finest grid of
  `shape / 2**finest_scale` nodes, level `i` weighted by `U[scale_weight]`.

  anatomix (`step2_generate_views.py`) multiplies the GMM image by `1 + 0.02 * perlin`,
  `perlin` the sum of four levels at scales 4, 8, 16, 32 voxels (grids `n/4 .. n/32`)
  with per-level std `U[0, 5]`: a modulation of std `0.02 * sqrt(sum std_i^2)`, between 0
  and 0.2 (0.12 on average). The defaults mirror it: `finest_scale=2`, `num_scales=(4, 4)`,
  `scale_weight=(0, 1)`, and amplitudes `U[0, 0.2]` (the std of the relative modulation,
  one per label here; fix them equal for anatomix's single field). Off by default.

  Attributes:
    amplitude: range of each label's modulation std.
    num_scales: range of the (integer) number of active levels (finest first).
    finest_scale: static pyramid level of the finest grid (`ceil(n / 2**finest_scale)`).
    scale_weight: range of the per-level weights (relative stds).
  """
  amplitude: Range = (0.0, 0.2)
  num_scales: tuple[int, int] = (4, 4)
  finest_scale: int = 2
  scale_weight: Range = (0.0, 1.0)
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    _freeze_ranges(self, "amplitude", "scale_weight")
    name = type(self).__name__
    if self.amplitude[0] < 0:
      raise ValueError(f"{name}.amplitude must be non-negative, got {self.amplitude}")
    if self.scale_weight[0] < 0:
      raise ValueError(f"{name}.scale_weight must be non-negative, got {self.scale_weight}")
    object.__setattr__(self, "num_scales", as_int_range(f"{name}.num_scales",
                                                         self.num_scales, 1))
    f = self.finest_scale
    if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 0:
      raise ValueError(f"{name}.finest_scale must be an integer >= 0, got {f!r}")
    object.__setattr__(self, "finest_scale", int(f))


def _positive(name: str, value) -> float:
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a number, got {value!r}") from None
  if not (math.isfinite(v) and v > 0):
    raise ValueError(f"{name} must be a finite positive number, got {value!r}")
  return v


@dataclasses.dataclass(frozen=True)
class BlurCortexConfig:
  """Local blur of the cortex (FetalSynthGen's `BlurCortex`).

  The image is blurred with per-axis Gaussian stds `~ Gamma(blur_std_shape,
  blur_std_scale)` voxels, and mixed back inside `nblur ~ U{nblur}` Gaussian blobs whose
  per-axis sigmas are `~ Gamma(blob_sigma_shape, blob_sigma_scale)` voxels and whose centres
  are cortex voxels (the `region_mask` given to `apply_blur_cortex`).

  Attributes:
    nblur: inclusive range of the number of blobs; `nblur[1]` fixes the params shape. The
      peer's default `randint(50, 200)` is `(50, 199)`.
    blob_sigma_shape, blob_sigma_scale: Gamma prior of the blob sigmas (peer: 3, 1).
    blur_std_shape, blur_std_scale: Gamma prior of the blur stds (peer: 2, 1).
    max_blur_std: blur stds are clipped to this (voxels), which bounds the static kernel
      radius (`P(Gamma(2, 1) > 10) ~ 5e-4`).
    frontal_prior: draw centres with the peer's prior (two isotropic Gaussians at both ends
      of axis 0); `False` draws them uniformly in the region.
    cortex_label: label value of the cortex (FeTA: 2), for the pipeline to build the
      region mask; `apply_blur_cortex` itself takes the mask.
  """
  nblur: tuple[int, int] = (50, 199)
  blob_sigma_shape: float = 3.0
  blob_sigma_scale: float = 1.0
  blur_std_shape: float = 2.0
  blur_std_scale: float = 1.0
  max_blur_std: float = 10.0
  frontal_prior: bool = True
  cortex_label: int = 2
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    object.__setattr__(self, "prob", check_prob("BlurCortexConfig.prob", self.prob))
    object.__setattr__(self, "enabled", bool(self.enabled))
    object.__setattr__(self, "frontal_prior", bool(self.frontal_prior))
    nblur = as_int_range("BlurCortexConfig.nblur", self.nblur, 0)
    if nblur[1] < 1:
      raise ValueError(f"BlurCortexConfig.nblur must allow at least one blob, got {nblur}")
    object.__setattr__(self, "nblur", nblur)
    for name in ("blob_sigma_shape", "blob_sigma_scale", "blur_std_shape", "blur_std_scale",
                 "max_blur_std"):
      object.__setattr__(self, name, _positive(f"BlurCortexConfig.{name}", getattr(self, name)))
    label = self.cortex_label
    if (isinstance(label, bool) or not isinstance(label, (int, np.integer, float))
        or not math.isfinite(label) or int(label) != label):
      raise ValueError(f"BlurCortexConfig.cortex_label must be an integer, got {label!r}")
    object.__setattr__(self, "cortex_label", int(self.cortex_label))


@dataclasses.dataclass(frozen=True)
class BoundaryConfig:
  """Brain-extraction boundaries (FetalSynthGen's `SimulatedBoundaries`).

  When applied, with probability `prob_no_mask` the image is left as is; otherwise it is
  multiplied by a mask built from the foreground (`seg > 0`): with probability `prob_halo`
  the foreground dilated by a ball of radius `U{halo_radius}` voxels, and with probability
  `prob_fuzzy` irregular "fuzzy" boundaries that extend the (halo) mask further by a
  spatially varying radius `fuzzy_width * u_c(x) + fuzzy_jitter * u_f(x)` voxels, with
  `u_c`, `u_f` in [0, 1] smooth random fields (linear upsampling of uniform values on grids
  of `ceil(scale * n)` nodes per axis).

  The fuzzy mask approximates the peer's morphology loop (random band pixels, 27-neighbour
  threshold and closing repeated 2..4 times, then per-surface-voxel dilation levels from a
  mixture of ~100 Gaussian blobs of sigma ~8..18): like it, it contains the (halo) mask and
  extends it by a smoothly varying depth (coarse field) with a ragged fringe (fine field);
  it is not the same distribution of shapes.

  Attributes:
    prob_no_mask: probability of no masking (peer: 0.5).
    prob_halo: probability of the halo when masking (peer: 0.5).
    halo_radius: inclusive range of the halo ball radius in voxels (peer: `randint(5, 15)`).
    prob_fuzzy: probability of fuzzy boundaries when masking (peer: 0.5).
    fuzzy_width: range of the maximal smooth extension, in voxels.
    fuzzy_jitter: range of the maximal ragged extension, in voxels.
    fuzzy_grid_scale: node count / shape of the coarse field (256 -> 16 nodes).
    jitter_grid_scale: node count / shape of the fine field (256 -> 77 nodes).
  """
  prob_no_mask: float = 0.5
  prob_halo: float = 0.5
  halo_radius: tuple[int, int] = (5, 14)
  prob_fuzzy: float = 0.5
  fuzzy_width: Range = (2.0, 10.0)
  fuzzy_jitter: Range = (0.0, 3.0)
  fuzzy_grid_scale: float = 0.06
  jitter_grid_scale: float = 0.3
  prob: float = 0.0
  enabled: bool = False

  def __post_init__(self):
    _freeze_ranges(self, "fuzzy_width", "fuzzy_jitter")
    for name in ("prob_no_mask", "prob_halo", "prob_fuzzy"):
      object.__setattr__(self, name, check_prob(f"BoundaryConfig.{name}", getattr(self, name)))
    object.__setattr__(self, "halo_radius",
                       as_int_range("BoundaryConfig.halo_radius", self.halo_radius, 0))
    for name in ("fuzzy_width", "fuzzy_jitter"):
      if getattr(self, name)[0] < 0:
        raise ValueError(f"BoundaryConfig.{name} must be non-negative, got {getattr(self, name)}")
    for name in ("fuzzy_grid_scale", "jitter_grid_scale"):
      v = _positive(f"BoundaryConfig.{name}", getattr(self, name))
      if v > 1:
        raise ValueError(f"BoundaryConfig.{name} must lie in (0, 1], got {v}")
      object.__setattr__(self, name, v)


@dataclasses.dataclass(frozen=True)
class SynthConfig:
  """Everything static about a generator: shapes, label tables and stage ranges.

  Attributes:
    shape: output shape `(X, Y, Z)`. Larger label maps are randomly cropped to it, smaller
      ones padded with `background`.
    label_values: the generation label values, in a fixed order (each gets a Gaussian).
    spacing: voxel spacing in mm of the label maps and of the output.
    output_labels: the segmentation value of each generation label (same length as
      `label_values`), e.g. 0 for labels merged into background; `None` keeps them.
    flip_pairs: `(left, right)` generation-label pairs swapped by a left/right flip.
    background: the label value used for padding and for `prob_background_zero`.
    affine, deformation, flip, gmm, bias, gamma, resolution, noise: the stage configs.
    spike, ghosting, gibbs, rician: the MR artifact stages (disabled unless asked for).
    subclusters, image_intensity: FetalSynthGen's intensity models (disabled unless asked
      for).
    motion: k-space rigid motion (TorchIO's `RandomMotion`; disabled unless asked for).
    slice_stack: FetalSynthGen's slice-stack acquisition with inter-slice motion and
      reconstruction onto the volume grid (disabled unless asked for).
    texture: anatomix's multi-scale texture inside labels (disabled unless asked for).
    struct_noise: FetalSynthGen's structural noise in a label (disabled unless asked for).
    blur_cortex, boundary: FetalSynthGen's cortex blur and skull-stripping boundaries
      (disabled unless asked for).

  Examples:
    >>> cfg = SynthConfig(shape=(32, 32, 32), label_values=(0, 1, 2))
    >>> hash(cfg) == hash(SynthConfig(shape=(32, 32, 32), label_values=(0, 1, 2)))
    True
  """
  shape: tuple[int, int, int]
  label_values: tuple[int, ...]
  spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
  output_labels: Optional[tuple[int, ...]] = None
  flip_pairs: tuple[tuple[int, int], ...] = ()
  background: int = 0
  affine: AffineConfig = AffineConfig()
  deformation: DeformationConfig = DeformationConfig()
  flip: FlipConfig = FlipConfig()
  gmm: GMMConfig = GMMConfig()
  bias: BiasConfig = BiasConfig()
  gamma: GammaConfig = GammaConfig()
  resolution: ResolutionConfig = ResolutionConfig()
  noise: NoiseConfig = NoiseConfig()
  spike: SpikeConfig = SpikeConfig()
  ghosting: GhostingConfig = GhostingConfig()
  gibbs: GibbsConfig = GibbsConfig()
  rician: RicianConfig = RicianConfig()
  subclusters: SubclusterConfig = SubclusterConfig()
  image_intensity: ImageIntensityConfig = ImageIntensityConfig()
  motion: MotionConfig = MotionConfig()
  slice_stack: SliceStackConfig = SliceStackConfig()
  texture: TextureConfig = TextureConfig()
  struct_noise: StructNoiseConfig = StructNoiseConfig()
  blur_cortex: BlurCortexConfig = BlurCortexConfig()
  boundary: BoundaryConfig = BoundaryConfig()

  def __post_init__(self):
    shape = tuple(int(s) for s in self.shape)
    if len(shape) != 3 or min(shape) < 2:
      raise ValueError(f"SynthConfig.shape must be 3 sizes >= 2, got {self.shape}")
    object.__setattr__(self, "shape", shape)
    spacing = tuple(float(s) for s in self.spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
      raise ValueError(f"SynthConfig.spacing must be 3 positive numbers, got {self.spacing}")
    object.__setattr__(self, "spacing", spacing)

    values = tuple(int(v) for v in self.label_values)
    if not values:
      raise ValueError("SynthConfig.label_values is empty")
    if min(values) < 0:
      raise ValueError(f"SynthConfig.label_values must be non-negative, got {min(values)}")
    dups = sorted({v for v in values if values.count(v) > 1})
    if dups:
      raise ValueError(f"SynthConfig.label_values has duplicates: {dups}")
    object.__setattr__(self, "label_values", values)
    object.__setattr__(self, "background", int(self.background))
    if self.background not in values:
      raise ValueError(f"SynthConfig.background {self.background} is not in label_values")

    if self.output_labels is not None:
      out = tuple(int(v) for v in self.output_labels)
      if len(out) != len(values):
        raise ValueError(f"SynthConfig.output_labels has {len(out)} entries for "
                         f"{len(values)} label_values")
      object.__setattr__(self, "output_labels", out)

    pairs = tuple((int(a), int(b)) for a, b in self.flip_pairs)
    seen = set()
    for a, b in pairs:
      for v in (a, b):
        if v not in values:
          raise ValueError(f"SynthConfig.flip_pairs names label {v}, which is not in label_values")
        if v in seen:
          raise ValueError(f"SynthConfig.flip_pairs names label {v} twice")
        seen.add(v)
    object.__setattr__(self, "flip_pairs", pairs)

    for name, typ in _STAGE_TYPES.items():
      stage = getattr(self, name)
      if isinstance(stage, dict):
        stage = typ(**stage)
        object.__setattr__(self, name, stage)
      if not isinstance(stage, typ):
        raise TypeError(f"SynthConfig.{name} must be a {typ.__name__}, got {type(stage).__name__}")

  @property
  def num_labels(self) -> int:
    return len(self.label_values)

  @property
  def segmentation_values(self) -> tuple[int, ...]:
    """The output segmentation value of each generation label."""
    return self.output_labels if self.output_labels is not None else self.label_values

  def replace(self, **changes) -> "SynthConfig":
    """Returns a copy with fields replaced; a dict for a stage updates that stage's fields.

    A stage dict with `prob > 0` for a disabled stage also enables it (unless it sets
    `enabled` itself).
    """
    for name, value in list(changes.items()):
      if name in _STAGE_TYPES and isinstance(value, dict):
        stage = getattr(self, name)
        value = dict(value)
        # Asking for a positive probability on a disabled stage means "use this stage".
        if not stage.enabled and "enabled" not in value and float(value.get("prob", 0)) > 0:
          value["enabled"] = True
        changes[name] = dataclasses.replace(stage, **value)
    unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
    if unknown:
      raise TypeError(f"SynthConfig has no field(s) {sorted(unknown)}")
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True)

  @classmethod
  def from_dict(cls, d: dict) -> "SynthConfig":
    d = dict(d)
    if d.get("flip_pairs") is not None:
      d["flip_pairs"] = tuple(tuple(p) for p in d["flip_pairs"])
    for name, typ in _STAGE_TYPES.items():
      if name in d and isinstance(d[name], dict):
        d[name] = typ(**d[name])
    return cls(**d)

  @classmethod
  def from_json(cls, text: str) -> "SynthConfig":
    return cls.from_dict(json.loads(text))


# Each stage's config type, from SynthConfig's own fields: a stage is a field whose default
# is a stage config dataclass.
_STAGE_TYPES = {f.name: type(f.default) for f in dataclasses.fields(SynthConfig)
                if dataclasses.is_dataclass(f.default)}
