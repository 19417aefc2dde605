"""Small label maps and images that the test modules share.

Every builder is plain numpy and deterministic (seeded where random), so a test that uses
one sees the same volume in every process.
"""

import numpy as np


def voxel_grid(shape, spacing=1.0, centred=False):
  """`(3,) + shape` float64 voxel coordinates times `spacing` (a number or one per axis);
  `centred` puts the origin at the volume's centre, `(n - 1) / 2` along each axis."""
  spacing = np.broadcast_to(np.asarray(spacing, np.float64), (len(shape),))
  axes = [(np.arange(n) - ((n - 1) / 2 if centred else 0.0)) * s for n, s in zip(shape, spacing)]
  return np.stack(np.meshgrid(*axes, indexing="ij"))


def boxes(shape, *regions, dtype=np.int32):
  """A label map of `shape`: background 0, then each `(label, lo, hi)` box painted in order
  (voxel corners, `lo` included and `hi` excluded; a later box paints over an earlier one).

  Examples:
    >>> boxes((4, 4, 4), (1, (0, 0, 0), (2, 4, 4)))[:, 0, 0]
    array([1, 1, 0, 0], dtype=int32)
  """
  lab = np.zeros(shape, dtype)
  for label, lo, hi in regions:
    lab[tuple(slice(a, b) for a, b in zip(lo, hi))] = label
  return lab


def three_labels(n=16):
  """A small label map on `(n,) * 3` (n = 16): a box (1) around a core (2), a slab (3)
  crossing both, and background (0)."""
  s = n / 16
  at = lambda *v: tuple(int(x * s) for x in v)
  return boxes(
    (n, n, n),
    (1, at(3, 3, 3), at(13, 13, 13)),
    (2, at(6, 6, 6), at(10, 10, 10)),
    (3, at(5, 9, 4), at(8, 12, 12)),
  )


def ball(shape, centre, radius):
  """The boolean mask of voxels within `radius` (inclusive) of the voxel `centre`."""
  g = voxel_grid(shape)
  return ((g - np.reshape(centre, (3, 1, 1, 1))) ** 2).sum(0) <= radius**2


def nested_balls(shape, radii, spacing=1.0):
  """Labels 1, 2, ... in concentric balls about the volume's centre with the given outer
  radii (in the units of `spacing`, strict), 0 outside; a smaller ball paints over a larger."""
  r = np.sqrt((voxel_grid(shape, spacing, centred=True) ** 2).sum(0))
  labels = np.zeros(shape, np.int32)
  for v, radius in sorted(enumerate(radii, start=1), key=lambda t: -t[1]):
    labels[r < radius] = v
  return labels


def smooth_image(shape, seed=0, noise=0.05, core=True):
  """A non-negative float32 image with edges and smooth content: 0.2 background, an
  ellipsoid at 0.7, optionally (`core`) a small brighter ball off centre, and uniform noise
  of amplitude `noise`."""
  rng = np.random.default_rng(seed)
  x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
  img = 0.2 + 0.5 * ((x / 0.7) ** 2 + (y / 0.6) ** 2 + (z / 0.8) ** 2 < 1)
  if core:
    img += 0.3 * ((x - 0.2) ** 2 + (y + 0.1) ** 2 + z**2 < 0.1)
  img = img + noise * rng.random(shape)
  return img.astype(np.float32)
