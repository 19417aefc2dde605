"""How close synthetic images are to real ones, tissue by tissue, without training a net.

Three statistics per image, each from the image and its label map (numpy, host side):

- the **intensity** of each tissue: its median on the normalised image;
- the **spread** within each tissue: its median absolute deviation, scaled to a Gaussian's
  standard deviation (1.4826 MAD), a robust measure of noise and texture;
- the **contrast** between each pair of touching tissues: the difference of their medians
  over their pooled spread, a contrast-to-noise ratio.

A domain-randomised generator varies the intensities on purpose, so the summary distance
(`realism_distance`) compares the spread and contrast only: the mean over tissues and pairs
of the 1-Wasserstein distance between the synthetic and the real distributions of their
logarithms. It is 0 when the synthetic spreads and contrasts are distributed as the real
ones; a grainy image (spread too high, contrast too low) or a flat one moves it up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

# Spreads and contrasts are compared as logarithms; this floor keeps a flat tissue (spread
# 0: a zero background) and a vanishing contrast finite.
LOG_FLOOR = 1e-3
MAD_TO_STD = 1.4826


def touching_pairs(
  labels: ArrayLike, label_values: Sequence[int] | None = None, *, min_faces: int = 1
) -> tuple[tuple[int, int], ...]:
  """Pairs `(a, b)`, `a < b`, of label values that share at least `min_faces` voxel faces.

  Args:
    labels: an integer label map (any rank).
    label_values: keep pairs of these values only (None: all).
    min_faces: the least number of shared faces for a pair to count.

  Returns:
    The sorted tuple of pairs.

  Examples:
    >>> touching_pairs(np.array([[0, 0, 1], [0, 2, 1]]))
    ((0, 1), (0, 2), (1, 2))
  """
  labels = np.asarray(labels)
  counts = {}
  for axis in range(labels.ndim):
    a = np.moveaxis(labels, axis, 0)[:-1].ravel()
    b = np.moveaxis(labels, axis, 0)[1:].ravel()
    diff = a != b
    lo, hi = np.minimum(a[diff], b[diff]), np.maximum(a[diff], b[diff])
    pairs, n = np.unique(np.stack([lo, hi], axis=1), axis=0, return_counts=True)
    for (x, y), k in zip(pairs.tolist(), n.tolist()):
      counts[(x, y)] = counts.get((x, y), 0) + k
  keep = None if label_values is None else set(int(v) for v in label_values)
  return tuple(
    sorted(
      p
      for p, k in counts.items()
      if k >= min_faces and (keep is None or (p[0] in keep and p[1] in keep))
    )
  )


def tissue_statistics(
  image: ArrayLike,
  labels: ArrayLike,
  label_values: Sequence[int],
  pairs: Sequence[tuple[int, int]] = (),
) -> dict[str, Any]:
  """Intensity, spread and contrast of the tissues of one image.

  Args:
    image: the image, normalised as a network sees it (e.g. to [0, 1]).
    labels: its label map, same shape.
    label_values: the tissues to measure; one absent from `labels` is left out.
    pairs: the `(a, b)` tissue pairs whose contrast to measure (`touching_pairs`).

  Returns:
    `{"intensity": {v: median}, "spread": {v: 1.4826 MAD}, "contrast": {(a, b): CNR}}`
    with `CNR = |median_a - median_b| / sqrt((spread_a^2 + spread_b^2) / 2)`.

  Raises:
    ValueError: image and labels of different shapes.
  """
  image, labels = np.asarray(image, np.float64), np.asarray(labels)
  if image.shape != labels.shape:
    raise ValueError(f"image shape {image.shape} differs from the labels' {labels.shape}")
  med, spread = {}, {}
  for v in label_values:
    x = image[labels == v]
    if x.size == 0:
      continue
    m = float(np.median(x))
    med[int(v)] = m
    spread[int(v)] = MAD_TO_STD * float(np.median(np.abs(x - m)))
  contrast = {}
  for a, b in pairs:
    if a in med and b in med:
      pooled = np.sqrt((spread[a] ** 2 + spread[b] ** 2) / 2.0)
      contrast[(int(a), int(b))] = abs(med[a] - med[b]) / max(pooled, LOG_FLOOR)
  return {"intensity": med, "spread": spread, "contrast": contrast}


def _collect(stats_list, kind):
  out = {}
  for stats in stats_list:
    for k, v in stats[kind].items():
      out.setdefault(k, []).append(v)
  return {k: np.asarray(v, np.float64) for k, v in out.items()}


def wasserstein1(x: ArrayLike, y: ArrayLike) -> float:
  """The 1-Wasserstein distance between two 1-D samples (their quantile functions' mean
  absolute difference, `scipy.stats.wasserstein_distance` for equal weights)."""
  x, y = np.sort(np.asarray(x, np.float64)), np.sort(np.asarray(y, np.float64))
  grid = np.concatenate([x, y])
  grid.sort()
  deltas = np.diff(grid)
  cdf_x = np.searchsorted(x, grid[:-1], side="right") / x.size
  cdf_y = np.searchsorted(y, grid[:-1], side="right") / y.size
  return float(np.sum(np.abs(cdf_x - cdf_y) * deltas))


def realism_distance(
  synthetic: Sequence[dict[str, Any]], real: Sequence[dict[str, Any]]
) -> dict[str, Any]:
  """How far synthetic images' spreads and contrasts lie from real ones'.

  Args:
    synthetic: `tissue_statistics` of the synthetic images (a list).
    real: `tissue_statistics` of the real images (a list).

  Returns:
    `{"distance": float, "coverage": float, "spread": {v: W1}, "contrast": {(a, b): W1},
    "intensity": {v: W1}}`: per tissue and pair, the 1-Wasserstein distance between the
    synthetic and real distributions of `log(max(x, LOG_FLOOR))` (spread, contrast) and of
    the median intensity; `distance` is the mean of the spread and contrast entries (the
    intensities, randomised on purpose, are reported but not summed). `coverage` is the
    fraction of real spreads and contrasts inside the synthetic 5th-95th percentile range
    of the same tissue or pair, averaged over them: a randomised generator should cover the
    real values without matching their distribution.

  Raises:
    ValueError: no tissue or pair measured in both sets.
  """
  out, covered = {}, []
  for kind in ("intensity", "spread", "contrast"):
    s, r = _collect(synthetic, kind), _collect(real, kind)
    f = (lambda a: a) if kind == "intensity" else (lambda a: np.log(np.maximum(a, LOG_FLOOR)))
    keys = sorted(set(s) & set(r))
    out[kind] = {k: wasserstein1(f(s[k]), f(r[k])) for k in keys}
    if kind != "intensity":
      for k in keys:
        lo, hi = np.percentile(s[k], (5, 95))
        covered.append(float(np.mean((r[k] >= lo) & (r[k] <= hi))))
  summed = list(out["spread"].values()) + list(out["contrast"].values())
  if not summed:
    raise ValueError(
      "no tissue or tissue pair is measured in both the synthetic and the real images"
    )
  out["distance"] = float(np.mean(summed))
  out["coverage"] = float(np.mean(covered))
  return out
