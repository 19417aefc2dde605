"""Preview montages of the augmentation range, written as PNG.

A montage shows the input labels, then `n` synthetic samples, each as three orthogonal
mid-slices with the segmentation outline drawn over the image, so the range of contrasts,
deformations and resolutions is visible at a glance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from synthjax._src.pytypes import PathLike

if TYPE_CHECKING:
  from synthjax._src.config import SynthConfig

_OUTLINE = np.array([255, 64, 32], np.uint8)
_GAP = 4


def save_png(path: PathLike, rgb: np.ndarray) -> None:
  """Writes an (H, W, 3) uint8 array as an 8-bit RGB PNG (with Pillow)."""
  from PIL import Image

  rgb = np.ascontiguousarray(rgb, np.uint8)
  if rgb.ndim != 3 or rgb.shape[2] != 3:
    raise ValueError(f"expected an (H, W, 3) array, got shape {rgb.shape}")
  Image.fromarray(rgb, "RGB").save(path, format="PNG")


def label_colors(values: Iterable[int]) -> dict[int, np.ndarray]:
  """A fixed, distinct colour per label value (background black)."""
  out = {}
  for v in values:
    if v == 0:
      out[v] = np.zeros(3, np.uint8)
      continue
    rng = np.random.default_rng(int(v) * 7919 + 17)
    out[v] = (64 + rng.integers(0, 192, 3)).astype(np.uint8)
  return out


def _slices(volume):
  # Mid-slices across each axis, rotated so the second axis points up (radiological view).
  return [np.rot90(np.take(volume, volume.shape[a] // 2, axis=a)) for a in range(3)]


def _outline(seg2d):
  edge = np.zeros(seg2d.shape, bool)
  edge[:-1] |= seg2d[:-1] != seg2d[1:]
  edge[1:] |= seg2d[:-1] != seg2d[1:]
  edge[:, :-1] |= seg2d[:, :-1] != seg2d[:, 1:]
  edge[:, 1:] |= seg2d[:, :-1] != seg2d[:, 1:]
  return edge


def _pad(panel, h, w):
  out = np.zeros((h, w, 3), np.uint8)
  out[: panel.shape[0], : panel.shape[1]] = panel
  return out


def render_row(
  image: ArrayLike | None = None,
  seg: ArrayLike | None = None,
  labels: ArrayLike | None = None,
  colors: Mapping[int, np.ndarray] | None = None,
) -> list[np.ndarray]:
  """Three panels: image with seg outline, or coloured labels."""
  panels = []
  if labels is not None:
    if colors is None:
      colors = label_colors(np.unique(np.asarray(labels)).tolist())
    for sl in _slices(np.asarray(labels)):
      rgb = np.zeros(sl.shape + (3,), np.uint8)
      for v, c in colors.items():
        rgb[sl == v] = c
      panels.append(rgb)
    return panels
  for im, sg in zip(_slices(np.asarray(image, np.float32)), _slices(np.asarray(seg))):
    grey = (np.clip(im, 0, 1) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb[_outline(sg)] = _OUTLINE
    panels.append(rgb)
  return panels


def montage(rows: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
  """Stacks rows of three panels into one RGB image with gaps."""
  widths = [max(r[a].shape[1] for r in rows) for a in range(3)]
  height = max(p.shape[0] for r in rows for p in r)
  lines = []
  for r in rows:
    line = []
    for a in range(3):
      line += [_pad(r[a], height, widths[a]), np.zeros((height, _GAP, 3), np.uint8)]
    gap = np.zeros((_GAP, sum(widths) + 2 * _GAP, 3), np.uint8)
    lines += [np.concatenate(line[:-1], axis=1), gap]
  return np.concatenate(lines[:-1], axis=0)


def preview(labels: ArrayLike, config: SynthConfig, *, n: int = 8, seed: int = 0) -> np.ndarray:
  """RGB montage (H, W, 3) uint8 of the input labels and `n` samples of `config`.

  Sample `i` uses the keys of `synthjax generate --seed seed` sample `i`. Usable in a
  notebook (`plt.imshow(preview(...))`) or saved with `save_png`. A multi-contrast config
  (`num_channels > 1`) shows each sample as one row per channel, all outlined by the
  sample's one segmentation.

  Args:
    labels: integer label map (any shape; cropped or padded to `config.shape`).
    config: the `SynthConfig` to preview.
    n: number of samples.
    seed: seed of the samples.
  """
  from synthjax._src import labelmaps, rendering, samples, sampling

  labels = labelmaps.validate_labels(labels, config)
  colors = label_colors(sorted(set(config.label_values) | set(np.unique(labels).tolist())))
  # The input as the generator sees it with identity spatial params: the centred window.
  from synthjax._src.data.samplers import extract_patch
  from synthjax._src.stages.geometry import crop_offset

  offset = crop_offset(labels.shape, config.shape, np.full(3, 0.5, np.float32))
  window = extract_patch(labels, offset, config.shape, pad_value=config.background)
  rows = [render_row(labels=window, colors=colors)]
  for i in range(int(n)):
    pkey, skey = samples.sample_keys(seed, i)
    params = sampling.sample_params(pkey, config)
    image, seg = rendering.synthesize(skey, params, labels, config)
    image, seg = np.asarray(image), np.asarray(seg)
    for channel in (image,) if image.ndim == 3 else image:  # (C, X, Y, Z): channels first
      rows.append(render_row(image=channel, seg=seg))
  return montage(rows)
