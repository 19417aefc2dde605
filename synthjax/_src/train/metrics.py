"""Segmentation metrics on label maps, as MONAI computes them: Dice per label, the 95%
Hausdorff distance, and each label's volume.

The recipe's validation (`synthjax train --val`), `synthjax segment` (volumes) and the
sim-to-real benchmark (`benchmarks/sim2real.py`) all use these functions.

Conventions (MONAI 1.6, checked against it in tests/test_segmentation_parts.py):

- Labels are given explicitly (`labels`), each scored as one channel of a one-hot map; leave
  out 0 for MONAI's `include_background=False`.
- Dice is `DiceMetric(ignore_empty=True)`, MONAI's default: a label absent from the truth
  has no score (NaN), even where the prediction holds it, and is left out of means.
  `ignore_empty=False` gives MONAI's other convention: 1 if both maps lack the label, 0 if
  only the truth does.
- The 95% Hausdorff distance is `compute_hausdorff_distance(percentile=95, spacing=...)`:
  the surface of a label is its voxels with a face neighbour outside it (voxels on the
  array's border count as surface); the distances from each surface voxel of one map to
  the nearest of the other are taken in mm (`spacing`, along the array's axes), and the
  result is the larger of the two directed 95th percentiles (linear interpolation). It is
  NaN when either map lacks the label (MONAI's value too).
- Volumes are voxel counts times the voxel volume (|det| of the affine's 3x3 part), in mL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def dice_per_label(
  pred: ArrayLike, truth: ArrayLike, labels: Iterable[int], *, ignore_empty: bool = True
) -> dict[int, float]:
  """`{label: dice}` for each label value in `labels`.

  A label absent from the truth scores NaN (`ignore_empty`, MONAI's default), else 1 if
  the prediction lacks it too and 0 if not.
  """
  pred, truth = np.asarray(pred), np.asarray(truth)
  if pred.shape != truth.shape:
    raise ValueError(f"prediction shape {pred.shape} differs from the truth {truth.shape}")
  out = {}
  for v in labels:
    p, t = pred == v, truth == v
    n_truth, n_pred = int(t.sum()), int(p.sum())
    if n_truth:
      out[int(v)] = float(2.0 * np.logical_and(p, t).sum() / (n_truth + n_pred))
    else:
      out[int(v)] = float("nan") if ignore_empty else (0.0 if n_pred else 1.0)
  return out


def mean_score(scores: Mapping[int, float]) -> float:
  """Mean over the labels that have a (finite) score (NaN if none has)."""
  values = [v for v in scores.values() if np.isfinite(v)]
  return float(np.mean(values)) if values else float("nan")


def score_scan(
  seg: ArrayLike,
  truth: ArrayLike,
  labels: Iterable[int],
  *,
  spacing: float | Sequence[float] | None = None,
) -> dict[str, Any]:
  """One scan's record: `{"mean_dice", "per_label": {label: dice}}`, with `"hd95"`
  (`{label: mm}`) when `spacing` is given. Keys are strings, as JSON keeps them.

  The recipe's validation and the sim-to-real benchmark score scans with it, and combine
  the records of several scans with `mean_over_scans`.
  """
  labels = [int(v) for v in labels]
  dice = dice_per_label(seg, truth, labels)
  record: dict[str, Any] = {
    "mean_dice": mean_score(dice),
    "per_label": {str(k): v for k, v in dice.items()},
  }
  if spacing is not None:
    record["hd95"] = {str(v): hausdorff95(seg, truth, v, spacing) for v in labels}
  return record


def _nanmean(values: Sequence[float]) -> float:
  finite = [v for v in values if np.isfinite(v)]
  return float(np.mean(finite)) if finite else float("nan")


def mean_over_scans(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
  """The mean over scans of `score_scan` records: `{"mean_dice", "min_dice", "per_label"}`.

  `mean_dice` and `min_dice` are the mean and the lowest of the scans' mean Dice; each
  label's mean leaves out the scans whose truth lacks it (NaN if all do).
  """
  records = list(records)
  if not records:
    raise ValueError("no scan records to average")
  means = [float(r["mean_dice"]) for r in records]
  per_label: dict[str, list[float]] = {}
  for r in records:
    for label, v in r["per_label"].items():
      per_label.setdefault(label, []).append(float(v))
  finite = [m for m in means if np.isfinite(m)]
  return {
    "mean_dice": float(np.mean(finite)) if finite else float("nan"),
    "min_dice": float(np.min(finite)) if finite else float("nan"),
    "per_label": {k: _nanmean(v) for k, v in per_label.items()},
  }


def surface(mask: ArrayLike) -> np.ndarray:
  """The voxels of `mask` with a face neighbour outside it or outside the array."""
  from scipy import ndimage

  mask = np.asarray(mask, bool)
  return mask & ~np.asarray(ndimage.binary_erosion(mask, border_value=0), bool)


def hausdorff95(
  pred: ArrayLike, truth: ArrayLike, label: int, spacing: float | Sequence[float] = (1.0, 1.0, 1.0)
) -> float:
  """The 95% Hausdorff distance of `label` between the two maps, in mm (NaN if either lacks
  it): the larger of the 95th percentiles of the surface distances from the prediction to
  the truth and from the truth to the prediction."""
  from scipy import ndimage

  p, t = np.asarray(pred) == label, np.asarray(truth) == label
  if p.shape != t.shape:
    raise ValueError(f"prediction shape {p.shape} differs from the truth {t.shape}")
  if not p.any() or not t.any():
    return float("nan")
  spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, float), (p.ndim,)))
  sp, st = surface(p), surface(t)
  to_truth = np.asarray(ndimage.distance_transform_edt(~st, sampling=spacing))[sp]
  to_pred = np.asarray(ndimage.distance_transform_edt(~sp, sampling=spacing))[st]
  return float(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95)))


def voxel_volume(affine: ArrayLike) -> float:
  """The volume of one voxel in mm^3 (|det| of the affine's 3x3 part)."""
  return float(abs(np.linalg.det(np.asarray(affine, np.float64)[:3, :3])))


def label_volumes(seg: ArrayLike, affine: ArrayLike, labels: Iterable[int]) -> dict[str, Any]:
  """`{"voxel_volume_mm3", "labels": {value: {"voxels", "mL"}}}` of every label in `labels`
  other than 0 (absent ones with 0 voxels), and of any other non-zero value in `seg`."""
  mm3 = voxel_volume(affine)
  values, counts = np.unique(np.asarray(seg), return_counts=True)
  found = dict(zip(values.tolist(), counts.tolist()))
  keys = sorted({int(v) for v in labels} | set(found))
  out = {}
  for v in keys:
    if v == 0:
      continue
    n = int(found.get(v, 0))
    out[str(v)] = {"voxels": n, "mL": n * mm3 / 1000.0}
  return {"voxel_volume_mm3": mm3, "labels": out}
