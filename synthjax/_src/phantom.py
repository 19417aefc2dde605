"""A procedural brain-like label map, so that everything runs with no data.

Labels follow FreeSurfer's conventions (so the `synthseg` preset finds left/right pairs):
0 background, 24 extra-cerebral CSF, 2/41 cerebral white matter, 3/42 cortex, 4/43
lateral ventricles, 10/49 thalamus, 8/47 cerebellum cortex, 16 brainstem. Axis 0 runs
left to right, axis 1 posterior to anterior, axis 2 inferior to superior (RAS).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PHANTOM_LABELS = (0, 2, 3, 4, 8, 10, 16, 24, 41, 42, 43, 47, 49)
PHANTOM_NAMES = {
  0: "background",
  2: "left white matter",
  3: "left cortex",
  4: "left lateral ventricle",
  8: "left cerebellum",
  10: "left thalamus",
  16: "brainstem",
  24: "CSF",
  41: "right white matter",
  42: "right cortex",
  43: "right lateral ventricle",
  47: "right cerebellum",
  49: "right thalamus",
}


def _ellipsoid(x, y, z, centre, radii):
  return (
    ((x - centre[0]) / radii[0]) ** 2
    + ((y - centre[1]) / radii[1]) ** 2
    + ((z - centre[2]) / radii[2]) ** 2
  )


def brain_phantom(
  shape: Sequence[int] = (96, 96, 96), spacing: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
  """Returns `(labels, affine)`: an int32 label map and its RAS voxel-to-mm affine.

  The field of view is `shape * spacing` mm (192 mm by default), with an adult-sized
  brain (about 140 x 170 x 120 mm) whose cortex is folded by a smooth periodic pattern.

  Args:
    shape: the label map's shape.
    spacing: isotropic voxel size in mm.

  Examples:
    >>> labels, affine = brain_phantom((48, 48, 48), 4.0)
    >>> sorted(set(labels.ravel().tolist())) == list(PHANTOM_LABELS)
    True
  """
  shape = tuple(int(s) for s in shape)
  spacing = float(spacing)
  axes = [(np.arange(n) - (n - 1) / 2.0) * spacing for n in shape]
  x, y, z = np.meshgrid(*axes, indexing="ij")
  left = x < 0
  labels = np.zeros(shape, np.int32)

  def paint(mask, left_value, right_value=None):
    right_value = left_value if right_value is None else right_value
    labels[mask & left] = left_value
    labels[mask & ~left] = right_value

  head = _ellipsoid(x, y, z, (0, 0, 5), (74, 90, 64)) <= 1
  paint(head, 24)
  folds = 0.045 * np.sin(x / 7.0) * np.sin(y / 6.0 + 1.0) * np.sin(z / 6.5 + 0.5)
  cerebrum = _ellipsoid(x, y, z, (0, 0, 10), (68, 84, 58))
  fissure = np.abs(x) < 1.6 * spacing
  paint((cerebrum <= 1 + folds) & ~fissure, 3, 42)
  paint((cerebrum <= 0.78 + folds) & ~fissure, 2, 41)
  for side, (lv, th) in ((-1, (4, 10)), (1, (43, 49))):
    vent = _ellipsoid(x, y, z, (side * 11, 8, 18), (6, 28, 9)) <= 1
    labels[vent] = lv
    thal = _ellipsoid(x, y, z, (side * 10, -8, 2), (8, 11, 8)) <= 1
    labels[thal] = th
  cereb = _ellipsoid(x, y, z, (0, -50, -32), (48, 24, 20)) <= 1
  paint(cereb & ~fissure, 8, 47)
  stem = (_ellipsoid(x, y, z, (0, -22, -35), (10, 10, 30)) <= 1) & (z < -8)
  labels[stem] = 16
  affine = np.diag([spacing, spacing, spacing, 1.0])
  affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * spacing
  return labels, affine
