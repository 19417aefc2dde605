"""The inputs of a run: its label maps (files or the demo phantom), its config, its seed maps.

Each label map becomes a `Source`: the map, its world affine, the record that the run's
manifest and every sample's params JSON keep of it (the path or the phantom's grid, with the
SHA-256 of the content), and its seed maps when the config draws sub-label classes from them.
Bad input raises `InputError`, one line naming the file, label, shape or field.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from synthjax._src.config import SynthConfig
from synthjax._src.pytypes import PathLike

PRESETS = ("synthseg", "fetal", "anatomix_views")


class InputError(ValueError):
  """Input a run cannot use: a label map, config, seed map or shape, named in the message."""


class Source(NamedTuple):
  """A label map a run renders.

  Attributes:
    labels: the label map, int32 `(X, Y, Z)`.
    affine: its world affine, 4x4.
    record: what the run records of it: `{"path": ...}` or `{"demo": {"shape", "spacing"}}`,
      with `labels_sha256` and, with seed maps, `seeds` and `seeds_sha256`.
    seeds: the seed maps (`load_seed_maps`), or None when the config does not use them.
  """

  labels: np.ndarray
  affine: np.ndarray
  # A JSON record: its values are whatever JSON holds.
  record: dict[str, Any]
  seeds: np.ndarray | None = None


def demo_sources(
  shape: Sequence[int] = (96, 96, 96), spacing: float = 2.0
) -> tuple[list[Source], tuple[float, ...]]:
  """The built-in brain phantom as a run's only source.

  Args:
    shape: the phantom's grid.
    spacing: its isotropic voxel size in mm.

  Returns:
    `([source], (spacing,) * 3)`.

  Examples:
    >>> sources, spacing = demo_sources((32, 32, 32), 6.0)
    >>> sources[0].labels.shape, spacing
    ((32, 32, 32), (6.0, 6.0, 6.0))
  """
  from synthjax._src import phantom, samples

  labels, affine = phantom.brain_phantom(tuple(shape), spacing)
  record = {
    "demo": {"shape": list(shape), "spacing": spacing},
    "labels_sha256": samples.content_digest(labels),
  }
  return [Source(labels, affine, record)], (spacing,) * 3


def load_sources(patterns: Sequence[PathLike]) -> tuple[list[Source], tuple[float, ...] | None]:
  """Reads the label maps of a run: files, folders (their NIfTI files) and globs, in order.

  Args:
    patterns: paths, folders or glob patterns (`synthjax.data.expand_paths`).

  Returns:
    `(sources, spacing)`: a `Source` per file and the voxel size they share (None when
    `patterns` is empty).

  Raises:
    FileNotFoundError: a file that does not exist.
    InputError: a folder or pattern without NIfTI files, an unreadable label map, or one
      whose spacing differs from the first one's (naming the file).

  Examples:
    >>> sources, spacing = load_sources(["labels/*.nii.gz"])    # doctest: +SKIP
  """
  from synthjax._src import nifti, samples
  from synthjax._src.data.sources import expand_paths

  sources: list[Source] = []
  spacing: tuple[float, ...] | None = None
  with input_errors():
    paths = expand_paths(patterns)
  for path in paths:
    with input_errors():
      labels, affine, sp = nifti.load_label_map(path)
    if spacing is None:
      spacing = sp
    elif not np.allclose(sp, spacing, rtol=1e-4):
      raise InputError(f"{path}: spacing {sp} differs from the first label map's {spacing}")
    sources.append(
      Source(
        labels,
        affine,
        {"path": os.path.abspath(path), "labels_sha256": samples.content_digest(labels)},
      )
    )
  return sources, spacing


def label_values(sources: Iterable[Source]) -> list[int]:
  """The sorted union of the label values of `sources` (what a preset is built on)."""
  return sorted(set().union(*(np.unique(s.labels).tolist() for s in sources)))


def load_config(path: PathLike) -> SynthConfig:
  """Reads a config JSON (as `SynthConfig.to_json` writes it).

  Raises:
    InputError: the file cannot be read or is not a valid config (naming it).
  """
  try:
    with open(path) as f:
      return SynthConfig.from_dict(json.load(f))
  except (OSError, ValueError, TypeError) as e:
    raise InputError(f"{path}: not a valid config ({e})") from e


def preset_config(
  preset: str,
  label_values: Iterable[int],
  shape: Iterable[int],
  spacing: Iterable[float],
  *,
  seeds: bool = False,
) -> SynthConfig:
  """The config of a preset (one of `PRESETS`) for label maps with these values.

  Args:
    preset: `"synthseg"`, `"fetal"` or `"anatomix_views"`.
    label_values: the label values of the maps (`label_values`).
    shape: the output shape.
    spacing: the maps' voxel size in mm.
    seeds: draw sub-label classes from seed maps (the `fetal` preset only).

  Raises:
    InputError: an unknown preset, or `seeds` with another preset than `fetal`.

  Examples:
    >>> cfg = preset_config("synthseg", (0, 2, 3), (32, 32, 32), (1.0, 1.0, 1.0))
    >>> cfg.shape
    (32, 32, 32)
  """
  from synthjax import presets

  if preset not in PRESETS:
    raise InputError(f"unknown preset {preset!r}; one of {PRESETS}")
  args = (tuple(label_values), tuple(shape), tuple(spacing))
  if preset == "fetal":
    return presets.fetal(*args, seeds=bool(seeds))
  if seeds:
    raise InputError(
      f"seed maps need the fetal preset or a config using seed subclusters, not {preset!r}"
    )
  return getattr(presets, preset)(*args)


def check_sources(sources: Iterable[Source], config: SynthConfig) -> None:
  """Refuses label values the config does not know; warns (on stderr) about maps that make
  a useless dataset (one label) or whose background is not label 0.

  Raises:
    InputError: a map holds a label value the config does not know (naming the map).
  """
  import synthjax

  for s in sources:
    name = s.record.get("path", "demo")
    with input_errors():
      synthjax.validate_labels(s.labels, config, name=name)
    present = np.unique(s.labels)
    if present.size == 1:
      print(
        f"synthjax: warning: {name}: holds a single label value ({int(present[0])}); every "
        "sample will show one class",
        file=sys.stderr,
      )
    if config.background != 0 and 0 not in config.label_values:
      print(
        f"synthjax: warning: {name}: has no label 0, so label {config.background} is taken "
        "as the background (padding, and the label zeroed by prob_background_zero)",
        file=sys.stderr,
      )


def uses_seed_maps(config: SynthConfig) -> bool:
  """Whether the config draws sub-label classes from seed maps (then every source needs them)."""
  sc = config.subclusters
  return bool(sc.enabled and sc.source == "seeds")


def with_seed_maps(
  sources: Iterable[Source], config: SynthConfig, seeds_root: PathLike
) -> list[Source]:
  """Adds each label map's seed maps (FetalSynthGen layout under `seeds_root`) to its source.

  Args:
    sources: `Source`s read from files (`load_sources`).
    config: a config that uses seed maps (`uses_seed_maps`).
    seeds_root: FetalSynthGen's `derivatives/seeds` folder.

  Returns:
    The sources with `seeds` set and their records naming the folder and the maps' SHA-256.

  Raises:
    FileNotFoundError: a seed map that does not exist.
    InputError: the config does not use seed maps, a source is the demo phantom, or a seed
      map cannot be read or does not match its label map's shape.
  """
  from synthjax._src import samples
  from synthjax._src.data import seeds as seed_io

  if not uses_seed_maps(config):
    raise InputError("the config's subclusters do not use seed maps")
  sc = config.subclusters
  out = []
  for s in sources:
    if "path" not in s.record:
      raise InputError("seed maps need label map files, not the demo phantom")
    path = s.record["path"]
    with input_errors():
      seeds = seed_io.load_seed_maps(
        path, seeds_root, num_subclusters=sc.num_subclusters[1], num_meta=sc.num_meta
      )
    if seeds.shape[1:] != s.labels.shape:
      raise InputError(
        f"{path}: seed maps have shape {seeds.shape[1:]}, the label map {s.labels.shape}"
      )
    record = dict(
      s.record, seeds=os.path.abspath(seeds_root), seeds_sha256=samples.content_digest(seeds)
    )
    out.append(Source(s.labels, s.affine, record, seeds))
  return out


def check_fits(
  config: SynthConfig, sources: Iterable[Source], *, batch: int = 1, extra_bytes: int = 0
) -> None:
  """Refuses, before anything is compiled or written, a config whose synthesis cannot fit in
  memory for the largest label map of `sources` (`memory.check_fits`).

  Raises:
    InputError: the estimate exceeds the available memory (naming the shape).
  """
  from synthjax._src import memory

  largest = max((s.labels.shape for s in sources), key=math.prod)
  with input_errors():
    memory.check_fits(config, largest, batch=batch, extra_bytes=extra_bytes)


@contextlib.contextmanager
def input_errors() -> Iterator[None]:
  """Re-raises a `ValueError` of the block as an `InputError` with the same message."""
  try:
    yield
  except InputError:
    raise
  except ValueError as e:
    raise InputError(str(e)) from e
