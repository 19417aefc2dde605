"""Quality control of a segmented scan: a picture to look at.

`qc_picture` draws three orthogonal slices (axial, coronal, sagittal, in RAS orientation as
`synthjax.scans` loads scans) through the centre of the segmented region, with every
label's boundary outlined in its own colour and a legend of label values and volumes in mL
(`metrics.label_volumes`, on the scan's own grid).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from synthjax._src import scans

# Pixel size of the picture (at DPI): three square panels and a legend column.
FIGSIZE = (13.0, 4.6)
DPI = 100


def write_json(path, record):
  """Writes `record` as JSON to `path`, atomically (`cli.atomic_write`)."""
  from synthjax._src.train.cli import atomic_write

  atomic_write(path, json.dumps(record, indent=1))


def _centre(seg):
  """The voxel at the centroid of the non-zero labels (the volume's centre if none)."""
  idx = np.argwhere(seg != 0)
  if len(idx) == 0:
    return tuple(n // 2 for n in seg.shape)
  return tuple(int(round(c)) for c in idx.mean(0))


def qc_picture(
  image_path: str, seg: np.ndarray, volumes: dict[str, Any], png_path: str, *, title: str = ""
) -> None:
  """Draws the QC picture of a scan (NIfTI path) and its segmentation `seg` (on the scan's
  grid, as written) to `png_path`, written to a temporary name and renamed."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import nibabel as nib
  from matplotlib.lines import Line2D

  img = scans.load(image_path)
  image, affine, ornt = scans.canonical(img)
  image = np.asarray(image, np.float32)
  seg = np.asarray(nib.orientations.apply_orientation(np.asarray(seg), ornt))
  sx, sy, sz = scans.spacing_of(affine)
  cx, cy, cz = _centre(seg)
  # (name, image slice, seg slice, pixel aspect, horizontal, vertical axis letters): the
  # slices are transposed so that R, A and S point right or up.
  panels = [
    ("axial", image[:, :, cz], seg[:, :, cz], sy / sx, "R", "A", f"z={cz}"),
    ("coronal", image[:, cy, :], seg[:, cy, :], sz / sx, "R", "S", f"y={cy}"),
    ("sagittal", image[cx, :, :], seg[cx, :, :], sz / sy, "A", "S", f"x={cx}"),
  ]
  finite = image[np.isfinite(image)]
  lo, hi = np.percentile(finite, (0.5, 99.5)) if finite.size else (0.0, 1.0)
  if hi <= lo:
    hi = lo + 1.0
  labels = sorted(int(v) for v in volumes["labels"])
  cmap = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
  colours = {v: cmap(i % cmap.N) for i, v in enumerate(labels)}

  fig = plt.figure(figsize=FIGSIZE, dpi=DPI)
  grid = fig.add_gridspec(
    1, 4, width_ratios=(1, 1, 1, 0.75), left=0.02, right=0.99, bottom=0.04, top=0.86, wspace=0.06
  )
  for i, (name, im, lab, aspect, right, up, where) in enumerate(panels):
    ax = fig.add_subplot(grid[0, i])
    ax.imshow(
      im.T, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest"
    )
    for v in labels:
      mask = lab == v
      # `contour` needs a slice of at least 2 x 2 voxels.
      if mask.any() and min(mask.shape) > 1:
        ax.contour(
          mask.T.astype(np.float32),
          levels=[0.5],
          colors=[colours[v]],
          linewidths=1.0,
          origin="lower",
        )
    ax.set_title(f"{name} ({where})", fontsize=9)
    ax.text(0.98, 0.5, right, transform=ax.transAxes, color="y", ha="right", va="center")
    ax.text(0.5, 0.98, up, transform=ax.transAxes, color="y", ha="center", va="top")
    ax.set_xticks([])
    ax.set_yticks([])
  legend = fig.add_subplot(grid[0, 3])
  legend.set_axis_off()
  handles = [
    Line2D([], [], color=colours[v], lw=3, label=f"{v}: {volumes['labels'][str(v)]['mL']:.3g} mL")
    for v in labels
  ]
  if handles:
    legend.legend(
      handles=handles,
      loc="center left",
      frameon=False,
      title="label: volume",
      fontsize=8 if len(handles) <= 24 else 6,
      ncol=1 if len(handles) <= 24 else 2,
    )
  total = sum(r["mL"] for r in volumes["labels"].values())
  fig.suptitle(
    f"{title}   voxel {volumes['voxel_volume_mm3']:.4g} mm\u00b3, labelled {total:.4g} mL",
    fontsize=10,
  )
  tmp = f"{png_path}.tmp-{os.getpid()}.png"
  try:
    fig.savefig(tmp, dpi=DPI)
    os.replace(tmp, png_path)
  finally:
    plt.close(fig)
    if os.path.exists(tmp):
      os.remove(tmp)
