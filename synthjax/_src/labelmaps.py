"""The label map as the generator reads it: input checks and label lookup tables.

`check_labels` and `check_extra_inputs` check what `synthesize` is given at trace time
(shapes and dtypes); `validate_labels` checks a label map's values on the host.
`label_index` maps label values to their position in `config.label_values`, through small
tables (no one-hot volumes), with a permutation such as the flip's left/right swap
composed in.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from synthjax._src.config import SynthConfig
from synthjax._src.ops import lookup
from synthjax._src.stages import geometry

__all__ = [
  "check_extra_inputs",
  "check_labels",
  "inside",
  "label_index",
  "tables",
  "validate_labels",
]

# Label values up to this use a dense lookup table; above it, a sorted search.
_DENSE_LUT_MAX = 1 << 16


@functools.lru_cache(maxsize=64)
def tables(config: SynthConfig):
  """`(background index, flip swap permutation, segmentation value per label index)`."""
  values = list(config.label_values)
  bg = values.index(config.background)
  seg = np.asarray(config.segmentation_values, np.int32)
  return bg, geometry.label_swap(config), seg


def label_index(raw: jax.Array, config: SynthConfig, *, swap=None) -> jax.Array:
  """Maps label values to their position in `config.label_values` (unknown: background).

  `swap` (optional, may be traced) is a permutation of those positions applied on top, e.g.
  the left/right swap of a flipped sample; it is composed into the small lookup table, so
  it costs no pass over the volume.
  """
  values = np.asarray(config.label_values, np.int64)
  bg = config.label_values.index(config.background)
  if jnp.iinfo(raw.dtype).bits > 32 or raw.dtype == jnp.uint32:
    # Values beyond int32 are unknown labels: map them to -1 before the narrowing cast
    # so they cannot wrap onto a known value.
    raw = jnp.where((raw < 0) | (raw > np.iinfo(np.int32).max), -1, raw)
  raw = raw.astype(jnp.int32)
  compose = (
    (lambda table: jnp.asarray(table))
    if swap is None
    else (lambda table: jnp.asarray(swap)[jnp.asarray(table)])
  )
  bg_out = bg if swap is None else jnp.asarray(swap)[bg]
  if values.size <= lookup.MAX_SELECT_ENTRIES:
    positions = compose(np.arange(values.size, dtype=np.int32))
    return lookup.match_values(raw, values.tolist(), positions, bg_out)
  vmax = int(values.max())
  if vmax <= _DENSE_LUT_MAX:
    lut = np.full(vmax + 1, bg, np.int32)
    lut[values] = np.arange(values.size, dtype=np.int32)
    known = (raw >= 0) & (raw <= vmax)
    return jnp.where(known, compose(lut)[jnp.clip(raw, 0, vmax)], bg_out)
  order = np.argsort(values)
  sorted_vals = jnp.asarray(values[order].astype(np.int32))
  pos = jnp.clip(jnp.searchsorted(sorted_vals, raw), 0, values.size - 1)
  found = sorted_vals[pos] == raw
  return jnp.where(found, compose(order.astype(np.int32))[pos], bg_out)


def inside(coords, shape):
  """Where the nearest-neighbour lookup at `coords` falls inside a volume of `shape`."""
  ok = True
  for a in range(3):
    idx = jnp.floor(coords[a] + 0.5)
    ok = ok & (idx >= 0) & (idx < shape[a])
  return ok


def check_labels(labels, config: SynthConfig):
  """Rank, dtype and size checks of a label array, at trace time (shapes only)."""
  shape = getattr(labels, "shape", None)
  dtype = getattr(labels, "dtype", None)
  if shape is None or len(shape) != 3:
    raise ValueError(f"labels must be a rank-3 integer array (X, Y, Z), got shape {shape}")
  if dtype is None or not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_)):
    raise TypeError(
      f"labels must have an integer dtype, got {dtype}; label maps stored as "
      "floats can be checked and cast with synthjax.validate_labels"
    )
  if min(shape) < 1:
    raise ValueError(f"labels has an empty axis: shape {shape}")


def check_extra_inputs(labels, seeds, image, config: SynthConfig):
  """The seed maps and the real image agree with the config and the labels' shape."""
  sc, ii = config.subclusters, config.image_intensity
  if seeds is not None:
    if not (sc.enabled and sc.source == "seeds"):
      raise ValueError(
        "seeds were given but the config does not use them: set "
        "subclusters={'source': 'seeds', 'prob': ...}"
      )
    k_max = sc.num_subclusters[1]
    if (
      getattr(seeds, "ndim", 0) != 4
      or tuple(seeds.shape[1:]) != tuple(labels.shape)
      or seeds.shape[0] < k_max
    ):
      raise ValueError(
        f"seeds must have shape (K >= {k_max}, *labels.shape) = "
        f"({k_max}, {', '.join(map(str, labels.shape))}), got "
        f"{getattr(seeds, 'shape', None)}"
      )
    if not jnp.issubdtype(seeds.dtype, jnp.integer):
      raise TypeError(f"seeds must have an integer dtype, got {seeds.dtype}")
  elif sc.enabled and sc.source == "seeds":
    raise ValueError(
      "the subclusters stage uses seed maps (source='seeds'): pass "
      "seeds=... to synthesize (synthjax.data.load_seed_maps reads them)"
    )
  if image is not None:
    if not ii.enabled:
      raise ValueError(
        "an image was given but image_intensity is disabled in the config: "
        "set image_intensity={'prob': ...}"
      )
    if tuple(getattr(image, "shape", ())) != tuple(labels.shape):
      raise ValueError(
        f"image must have the labels' shape {tuple(labels.shape)}, got "
        f"{getattr(image, 'shape', None)}"
      )
  elif ii.enabled:
    raise ValueError(
      "image_intensity is enabled: pass image=... (a real image on the labels' grid) to synthesize"
    )


def validate_labels(
  labels: npt.ArrayLike, config: SynthConfig, *, name: str = "labels"
) -> np.ndarray:
  """Host-side check of a label map against a config; returns it as an int32 array.

  Args:
    labels: array-like label map (NIfTI label maps are often stored as floats).
    config: the `SynthConfig` whose `label_values` the map must use.
    name: how the map is named in error messages (e.g. its file path).

  Returns:
    The labels as a numpy int32 array of rank 3.

  Raises:
    ValueError: wrong rank, non-integer or non-finite values, or label values the config
      does not know (all of them listed with their voxel counts).
  """
  arr = np.asarray(labels)
  if arr.ndim != 3:
    raise ValueError(f"{name}: label map must have rank 3 (X, Y, Z), got shape {arr.shape}")
  if arr.dtype == bool:
    arr = arr.astype(np.uint8)
  if not np.issubdtype(arr.dtype, np.integer):
    if not np.issubdtype(arr.dtype, np.floating):
      raise ValueError(f"{name}: label map has non-numeric dtype {arr.dtype}")
    bad = ~np.isfinite(arr) | (arr != np.round(arr))
    if bad.any():
      where = tuple(int(i) for i in np.argwhere(bad)[0])
      raise ValueError(
        f"{name}: label map has {int(bad.sum())} non-integer value(s), e.g. "
        f"{arr[where]!r} at voxel {where}"
      )
  values, counts = np.unique(arr, return_counts=True)
  known = set(config.label_values)
  unknown = [(int(v), int(c)) for v, c in zip(values, counts) if int(v) not in known]
  if unknown:
    shown = ", ".join(f"{v} ({c} voxels)" for v, c in unknown[:20])
    more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
    raise ValueError(f"{name}: label value(s) not in config.label_values: {shown}{more}")
  if arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max:
    raise ValueError(f"{name}: label values do not fit in int32")
  return arr.astype(np.int32)
