"""Segmentation metrics on label maps: Dice per label and the 95% Hausdorff distance.

Dice follows the usual convention (MONAI `DiceMetric`, the FeTA challenge): a label absent
from both maps has no score (NaN) and is left out of means. The 95% Hausdorff distance
(MONAI `compute_hausdorff_distance(percentile=95)`) is taken between the two surfaces
(voxels of the label with a neighbour outside it), in mm; it is NaN when either map lacks
the label.
"""

from __future__ import annotations

import numpy as np


def dice_per_label(pred, truth, labels):
  """`{label: dice}` for each label value in `labels` (NaN where both maps lack it)."""
  pred, truth = np.asarray(pred), np.asarray(truth)
  if pred.shape != truth.shape:
    raise ValueError(f"prediction shape {pred.shape} differs from the truth {truth.shape}")
  out = {}
  for v in labels:
    p, t = pred == v, truth == v
    denom = int(p.sum()) + int(t.sum())
    out[int(v)] = float(2.0 * np.logical_and(p, t).sum() / denom) if denom else float("nan")
  return out


def mean_score(scores: dict) -> float:
  """Mean over the labels that have a score (NaN if none has)."""
  values = [v for v in scores.values() if np.isfinite(v)]
  return float(np.mean(values)) if values else float("nan")


def _surface(mask):
  from scipy import ndimage
  return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff95(pred, truth, label, spacing=(1.0, 1.0, 1.0)):
  """95th percentile of the symmetric surface distances of `label`, in mm (NaN if absent)."""
  from scipy import ndimage
  p, t = np.asarray(pred) == label, np.asarray(truth) == label
  if not p.any() or not t.any():
    return float("nan")
  sp, st = _surface(p), _surface(t)
  dt_t = ndimage.distance_transform_edt(~st, sampling=spacing)
  dt_p = ndimage.distance_transform_edt(~sp, sampling=spacing)
  distances = np.concatenate([dt_t[sp], dt_p[st]])
  return float(np.percentile(distances, 95))
