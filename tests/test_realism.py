"""Tissue statistics and the realism distance, against numpy and scipy references."""

import itertools

import numpy as np
import pytest

from synthjax import realism


def test_touching_pairs_match_a_loop_over_faces():
  labels = np.random.default_rng(0).integers(0, 5, (6, 7, 5))
  want = {}
  for idx in itertools.product(*map(range, labels.shape)):
    for axis in range(3):
      nxt = list(idx)
      nxt[axis] += 1
      if nxt[axis] < labels.shape[axis]:
        a, b = labels[idx], labels[tuple(nxt)]
        if a != b:
          key = (min(a, b), max(a, b))
          want[key] = want.get(key, 0) + 1
  assert realism.touching_pairs(labels) == tuple(sorted(want))
  many = tuple(sorted(k for k, n in want.items() if n >= 25))
  assert realism.touching_pairs(labels, min_faces=25) == many
  assert realism.touching_pairs(labels, (0, 1, 2)) == tuple(k for k in sorted(want) if k[1] <= 2)


def test_tissue_statistics_recover_gaussian_tissues():
  rng = np.random.default_rng(1)
  labels = np.zeros((40, 40, 40), np.int32)
  labels[20:] = 1
  labels[:, 20:] += 2  # four blocks: 0, 1, 2, 3
  means, stds = {0: 0.1, 1: 0.4, 2: 0.5, 3: 0.9}, {0: 0.0, 1: 0.05, 2: 0.02, 3: 0.1}
  image = np.zeros(labels.shape)
  for v in means:
    image[labels == v] = rng.normal(means[v], stds[v], (labels == v).sum())
  pairs = realism.touching_pairs(labels)
  assert pairs == ((0, 1), (0, 2), (1, 3), (2, 3))
  stats = realism.tissue_statistics(image, labels, (0, 1, 2, 3, 7), pairs)
  assert set(stats["intensity"]) == {0, 1, 2, 3}  # label 7 is absent: left out
  for v in means:
    # The median of 16000 normal draws: within 4 standard errors (1.25 sigma / sqrt(n)).
    assert abs(stats["intensity"][v] - means[v]) <= 4 * 1.25 * stds[v] / np.sqrt(16000) + 1e-12
    # 1.4826 MAD estimates sigma with a relative standard error of about 1.17 / sqrt(n).
    assert stats["spread"][v] == pytest.approx(stds[v], rel=0.04, abs=1e-12)
  for a, b in pairs:
    pooled = np.sqrt((stats["spread"][a] ** 2 + stats["spread"][b] ** 2) / 2)
    want = abs(stats["intensity"][a] - stats["intensity"][b]) / pooled
    assert stats["contrast"][(a, b)] == pytest.approx(want, rel=1e-12)
  with pytest.raises(ValueError, match="shape"):
    realism.tissue_statistics(image[:-1], labels, (0, 1))


def test_wasserstein1_is_scipys():
  from scipy import stats

  rng = np.random.default_rng(2)
  for n, m in ((5, 5), (17, 40), (1, 9)):
    x, y = rng.normal(size=n), rng.normal(1.0, 2.0, size=m)
    assert realism.wasserstein1(x, y) == pytest.approx(
      stats.wasserstein_distance(x, y), rel=1e-10, abs=1e-12
    )
  assert realism.wasserstein1([0.0, 1.0], [0.0, 1.0]) == 0.0


def _stats_of(noise, seed, n=8):
  """Statistics of `n` two-tissue images with the given noise std (contrast 0.5)."""
  rng = np.random.default_rng(seed)
  labels = np.zeros((16, 16, 16), np.int32)
  labels[8:] = 1
  out = []
  for _ in range(n):
    image = np.where(labels == 1, 0.7, 0.2) + rng.normal(0, noise, labels.shape)
    out.append(realism.tissue_statistics(image, labels, (0, 1), ((0, 1),)))
  return out


def test_realism_distance_grows_as_synthetic_noise_departs_from_real():
  real = _stats_of(0.05, seed=0)
  same = realism.realism_distance(_stats_of(0.05, seed=1), real)["distance"]
  distances = [
    realism.realism_distance(_stats_of(s, seed=1), real)["distance"] for s in (0.1, 0.2, 0.4)
  ]
  assert same < 0.1 < distances[0] < distances[1] < distances[2]
  # Doubling the noise moves log spread and log contrast by log 2 each.
  assert distances[0] == pytest.approx(np.log(2.0), abs=0.1)
  out = realism.realism_distance(_stats_of(0.1, seed=1), real)
  assert set(out["spread"]) == {0, 1} and set(out["contrast"]) == {(0, 1)}
  assert out["distance"] == pytest.approx(
    np.mean(list(out["spread"].values()) + list(out["contrast"].values()))
  )
  # Coverage: real spreads and contrasts inside the synthetic 5-95 % range.
  assert realism.realism_distance(_stats_of(0.05, seed=1, n=40), real)["coverage"] > 0.8
  assert out["coverage"] == 0.0  # twice the noise: every real value outside
  wide = _stats_of(0.02, seed=3, n=20) + _stats_of(0.1, seed=4, n=20)
  assert realism.realism_distance(wide, real)["coverage"] == 1.0
  with pytest.raises(ValueError, match="both"):
    realism.realism_distance([{"intensity": {}, "spread": {}, "contrast": {}}], real)
