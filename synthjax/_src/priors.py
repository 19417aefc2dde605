"""Intensity priors measured on real scans, for contrast-specific training.

SynthSeg draws each label's Gaussian from wide uniform ranges so that a network learns
every contrast; its `estimate_priors.py` measures the per-label intensities of a few real
scans instead, for a network meant for one contrast. `estimate` does the same with robust
statistics, on the generator's intensity scale:

- each image is scaled so that the `percentile` of its labelled (non-`skip`) voxels is
  `scale` (the GMM draws means on 0..255); the image minimum is not moved, so a zero
  background stays zero;
- per image and class (labels pooled into classes as SynthSeg's `generation_classes`):
  the median, and the spread `1.4826 * MAD` (a Gaussian's standard deviation);
- the mean range of a class runs from its smallest to its largest median over the images,
  widened by `mean_margin * scale` on each side (a few scans of one site do not show the
  contrast's full range); the std range runs from the smallest spread over `std_factor` to
  the largest times `std_factor`.

The stds hold at the voxel size the images were measured at (`IntensityPriors.spacing`);
`presets.*(..., priors=...)` converts them to the preset's noise voxel, so a rendering on
that grid has the measured spread.

References:
  Billot et al., SynthSeg (MedIA 2023), `estimate_priors.py` and its contrast-specific
  training; Billot et al., "Partial volume segmentation of brain MRI scans of any
  resolution and contrast" (MICCAI 2020).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from synthjax._src.checks import (
  JsonConfig,
  LabelRanges,
  config_class,
  field,
  integer,
  label_ranges,
  positives,
)
from synthjax._src.pytypes import PathLike

if TYPE_CHECKING:
  from synthjax._src.config import SynthConfig

MAD_TO_STD = 1.4826


@config_class
class IntensityPriors(JsonConfig):
  """Per-label intensity ranges of real scans (`estimate`), as `GMMConfig.label_mean` and
  `label_std` take them.

  Attributes:
    mean: `(label, low, high)` triples: the range of each label's mean, on 0..255.
    std: `(label, low, high)` triples: the range of each label's standard deviation, per
      voxel of `spacing`; empty for priors on the means alone (the config keeps its stds).
    spacing: the voxel size in mm the stds were measured at.
    num_images: how many images they come from.
  """

  mean: LabelRanges = field(default=(), check=label_ranges())
  std: LabelRanges = field(default=(), check=label_ranges(low=0.0))
  spacing: tuple[float, ...] = field(default=(1.0, 1.0, 1.0), check=positives(3))
  num_images: int = field(default=0, check=integer(low=0))

  def _check_together(self):
    if self.std and [r[0] for r in self.mean] != [r[0] for r in self.std]:
      raise ValueError(
        f"IntensityPriors.mean and .std must name the same labels in the same "
        f"order, got {[r[0] for r in self.mean]} and {[r[0] for r in self.std]}"
      )

  @property
  def labels(self) -> tuple[int, ...]:
    return tuple(r[0] for r in self.mean)

  def stds_at(self, noise_spacing: Sequence[float]) -> tuple[tuple[float, float, float], ...]:
    """The std triples for a generator whose per-voxel stds describe voxels of
    `noise_spacing` (`SynthConfig.noise_spacing`, or its `spacing`): white noise averaged
    over a voxel `V` times larger has `sqrt(V)` times less spread, so the stds measured at
    `spacing` are multiplied by `sqrt(V_measured / V_noise)`."""
    f = math.sqrt(math.prod(self.spacing) / math.prod(float(s) for s in noise_spacing))
    return tuple((l, lo * f, hi * f) for l, lo, hi in self.std)


def estimate(
  images: Sequence[ArrayLike],
  label_maps: Sequence[ArrayLike],
  *,
  spacing: float | Sequence[float],
  classes: Sequence[Sequence[int]] | None = None,
  skip: Sequence[int] = (0,),
  scale: float = 255.0,
  percentile: float = 99.5,
  mean_margin: float = 0.1,
  std_factor: float = 1.5,
  min_voxels: int = 20,
  names: Sequence[str] | None = None,
) -> IntensityPriors:
  """Each label's mean and std ranges in real scans (SynthSeg's `estimate_priors.py`).

  Args:
    images: real images (arrays), all at the same voxel size.
    label_maps: their integer label maps, one per image, of the same shape.
    spacing: the voxel size of the images in mm (one number or three): the stds hold at it.
    classes: groups of label values pooled into one class (each label gets its class's
      ranges); labels in no group form a class alone. None: every label alone.
    skip: labels left out (the background: zero in skull-stripped scans, maternal or head
      tissue in others); a preset keeps its own ranges for them.
    scale: the intensity the `percentile` of each image's labelled voxels is scaled to.
    percentile: see `scale`.
    mean_margin: the mean ranges are widened by this fraction of `scale` on each side.
    std_factor: the std ranges run from the smallest spread / factor to the largest * factor.
    min_voxels: an image counts for a class only with at least this many of its voxels.
    names: one name per image for error messages (default "image i").

  Returns:
    The `IntensityPriors` of the labels found, in increasing label order.

  Raises:
    ValueError: no images, a count or shape mismatch, a non-finite image, a label in two
      classes, a class with too few voxels in every image, or an image without labelled
      voxels (each named).

  Examples:
    >>> labels = np.repeat(np.arange(3), 100).reshape(3, 10, 10)
    >>> image = labels * 50.0 + np.random.default_rng(0).normal(0, 2, labels.shape)
    >>> priors = estimate([image], [labels], spacing=1.0)
    >>> priors.labels
    (1, 2)
  """
  images, label_maps = list(images), list(label_maps)
  names = list(names) if names is not None else [f"image {i}" for i in range(len(images))]
  if not images:
    raise ValueError("estimate needs at least one image")
  if len(images) != len(label_maps) or len(names) != len(images):
    raise ValueError(
      f"estimate got {len(images)} images, {len(label_maps)} label maps and "
      f"{len(names)} names; give one label map and name per image"
    )
  spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, float), (3,)))
  if not 0.0 < percentile <= 100.0 or scale <= 0 or mean_margin < 0 or std_factor < 1.0:
    raise ValueError(
      f"estimate needs 0 < percentile <= 100, scale > 0, mean_margin >= 0 and "
      f"std_factor >= 1, got {percentile}, {scale}, {mean_margin}, {std_factor}"
    )
  skipped = {int(v) for v in skip}
  group_of = {}
  for g, group in enumerate(classes or ()):
    for v in group:
      if int(v) in group_of:
        raise ValueError(f"estimate: label {int(v)} is in more than one class")
      group_of[int(v)] = g
  medians, spreads, members = {}, {}, {}
  for image, labels, name in zip(images, label_maps, names):
    image = np.asarray(image, np.float64)
    labels = np.asarray(labels)
    if image.shape != labels.shape:
      raise ValueError(
        f"{name}: image shape {image.shape} differs from its label map's {labels.shape}"
      )
    if not np.all(np.isfinite(image)):
      raise ValueError(f"{name}: image has {int((~np.isfinite(image)).sum())} non-finite voxel(s)")
    present = [int(v) for v in np.unique(labels) if int(v) not in skipped]
    inside = np.isin(labels, present)
    if not inside.any():
      raise ValueError(f"{name}: no labelled voxel outside the skipped labels {sorted(skipped)}")
    top = np.percentile(image[inside], percentile)
    if top <= 0:
      raise ValueError(
        f"{name}: the {percentile}th percentile of its labelled voxels is "
        f"{top:g}; intensities must be positive"
      )
    image = image * (scale / top)
    by_class = {}
    for v in present:
      key = ("class", group_of[v]) if v in group_of else ("label", v)
      by_class.setdefault(key, []).append(v)
    for key, values in by_class.items():
      members.setdefault(key, set()).update(values)
      x = image[np.isin(labels, values)]
      if x.size < min_voxels:
        continue
      med = float(np.median(x))
      medians.setdefault(key, []).append(med)
      spreads.setdefault(key, []).append(MAD_TO_STD * float(np.median(np.abs(x - med))))
  mean_rows, std_rows = [], []
  for key, values in members.items():
    if key not in medians:
      raise ValueError(
        f"estimate: label(s) {sorted(values)} have fewer than {min_voxels} "
        f"voxels in every image; lower min_voxels or skip them"
      )
    m, s = np.asarray(medians[key]), np.asarray(spreads[key])
    margin = mean_margin * scale
    mean = (max(0.0, float(m.min()) - margin), float(m.max()) + margin)
    std = (float(s.min()) / std_factor, float(s.max()) * std_factor)
    for v in values:
      mean_rows.append((v, *mean))
      std_rows.append((v, *std))
  order = np.argsort([r[0] for r in mean_rows], kind="stable")
  return IntensityPriors(
    mean=tuple(mean_rows[i] for i in order),
    std=tuple(std_rows[i] for i in order),
    spacing=spacing,
    num_images=len(images),
  )


# Fetal T2w, the means of the FeTA tissues: five CC0 volumes of the spina-bifida fetal
# atlas (Fidon et al.; 21, 24, 27, 30 and 33 weeks), at 2 mm, each label alone, the
# default margins:
#   python benchmarks/estimate_priors.py --real-dir ../shared/data/fetal-sb-atlas \
#       --match 'ga(21nop|24nop|27op|30op|33op)' --spacing 2 --out priors.json
# The other ten atlas volumes stay out of it, to measure what the priors add. The stds
# measured with them are left out: the spread inside a tissue of these averaged volumes is
# smooth anatomy and partial volume, not noise, so it does not follow the voxel-volume rule
# the preset's stds do, and the means alone trained as well on the ten other volumes.
FETAL_T2W = IntensityPriors(
  mean=(
    (1, 145.2, 239.4),
    (2, 92.1, 173.2),
    (3, 122.1, 191.1),
    (4, 179.4, 258.3),
    (5, 131.5, 194.9),
    (6, 114.9, 173.3),
    (7, 109.8, 167.5),
  ),
  std=(),
  spacing=(2.0, 2.0, 2.0),
  num_images=5,
)


def load(path: PathLike) -> IntensityPriors:
  """The `IntensityPriors` stored in a JSON file (`IntensityPriors.to_json`).

  Raises:
    ValueError: the file cannot be read or does not hold valid priors (naming the file).
  """
  try:
    with open(path) as f:
      return IntensityPriors.from_json(f.read())
  except (OSError, ValueError, TypeError) as e:
    raise ValueError(f"{path}: not an intensity priors JSON ({e})") from None


def apply(config: SynthConfig, priors: IntensityPriors) -> SynthConfig:
  """`config` with its GMM drawing each label of `priors` from the measured ranges (stds
  converted to the config's noise voxel, `IntensityPriors.stds_at`); other labels keep the
  config's ranges. Sub-label classes (FetalSynthGen's subclusters), when enabled, draw
  each meta-label's Gaussians from the smallest range holding its labels' ranges.

  Raises:
    ValueError: a label of `priors` that is not among the config's label values, or seed-map
      subclusters whose meta-labels name no labels.
  """
  if not isinstance(priors, IntensityPriors):
    raise TypeError(
      f"priors must be an IntensityPriors (synthjax.priors.estimate), got {type(priors).__name__}"
    )
  unknown = sorted(set(priors.labels) - set(config.label_values))
  if unknown:
    raise ValueError(
      f"priors name label(s) {unknown}, which are not in the config's "
      f"label_values {config.label_values}"
    )
  noise_spacing = config.noise_spacing if config.noise_spacing is not None else config.spacing
  stds = priors.stds_at(noise_spacing)
  changes = {"gmm": {"label_mean": priors.mean, "label_std": stds}}
  sub = config.subclusters
  if sub.enabled:
    groups = _meta_groups(config)
    changes["subclusters"] = {
      "meta_mean": _hulls(priors.mean, groups),
      "meta_std": _hulls(stds, groups),
    }
  if not priors.std:  # means alone: the config's std ranges stay
    del changes["gmm"]["label_std"]
    changes.get("subclusters", {}).pop("meta_std", None)
  return config.replace(**changes)


def _meta_groups(config) -> tuple:
  """The label values of each subcluster meta-label (1-based position)."""
  sub = config.subclusters
  if sub.meta_labels:
    return sub.meta_labels
  if sub.source == "seeds":
    raise ValueError(
      "priors cannot reach the subclusters of seed maps whose "
      "SubclusterConfig.meta_labels do not name the labels of each meta-label"
    )
  return tuple((v,) for v in config.label_values if v != config.background)


def _hulls(rows: tuple, groups: tuple) -> tuple:
  """`(meta, low, high)`: per meta-label, the smallest range holding its labels' ranges
  (the subclusters of a tissue take the values its labels show); meta-labels none of whose
  labels are measured keep the config's range."""
  own = {r[0]: r[1:] for r in rows}
  out = []
  for m, group in enumerate(groups, start=1):
    ranges = [own[v] for v in group if v in own]
    if ranges:
      out.append((m, min(r[0] for r in ranges), max(r[1] for r in ranges)))
  return tuple(out)
