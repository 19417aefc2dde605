"""Replaying a sample from the params JSON that `synthjax generate` wrote next to it."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import Any

import numpy as np

from synthjax._src.config import SynthConfig
from synthjax._src.pytypes import Params, PathLike, PRNGKey


class InputChangedError(ValueError):
  """A recorded input (label map, seed maps) whose content hash differs from the recorded one.

  `detail` is the message without the advice on how to replay anyway.
  """

  def __init__(self, detail: str):
    super().__init__(f"{detail}; pass force=True to replay anyway")
    self.detail = detail


class InputChangedWarning(UserWarning):
  """Warned by `load_sample` / `replay` with `force=True` when an input changed.

  `detail` is the message without the note that the replay goes on.
  """

  def __init__(self, detail: str):
    super().__init__(f"{detail}; replaying anyway (force=True)")
    self.detail = detail


@dataclasses.dataclass(frozen=True, eq=False)
class Sample:
  """A sample as its params JSON records it, with the inputs it was rendered from.

  Attributes:
    path: the params JSON it was read from.
    index: the sample's index in its run.
    key: the synthesis key (`synthjax.synthesize`'s first argument).
    params: the sampled params, as `synthjax.sample_params` returned them.
    config: the run's `SynthConfig`.
    source: the label source record (`{"path": ...}` or `{"demo": ...}`, with the inputs'
      SHA-256 and, for seed subclusters, the seed maps' folder).
    labels: the input label map.
    affine: the input label map's world affine.
    seeds: the seed maps, or None when the config does not use them.
  """

  path: str
  index: int
  key: PRNGKey
  params: Params
  config: SynthConfig
  # A JSON record (the sidecar's `source`): its values are whatever JSON holds.
  source: dict[str, Any]
  labels: np.ndarray
  affine: np.ndarray
  seeds: np.ndarray | None = None

  @property
  def output_affine(self) -> np.ndarray:
    """The world affine of the sample's output grid (the input's, shifted to the crop)."""
    from synthjax._src import samples

    return samples.output_affine(
      self.affine, self.labels.shape, self.config.shape, np.asarray(self.params["crop"]["position"])
    )


def _read_sidecar(path: str) -> dict:
  from synthjax._src import samples

  try:
    with open(path) as f:
      side = json.load(f)
  except OSError as e:
    kind = FileNotFoundError if isinstance(e, FileNotFoundError) else ValueError
    raise kind(f"{path}: cannot read params JSON ({e})") from e
  except ValueError as e:
    raise ValueError(f"{path}: cannot read params JSON ({e})") from e
  if not isinstance(side, dict) or side.get("format") != samples.SIDECAR_FORMAT:
    got = side.get("format") if isinstance(side, dict) else type(side).__name__
    raise ValueError(f"{path}: not a synthjax sample file (format {got!r})")
  missing = [k for k in ("index", "key", "config", "params", "source") if k not in side]
  if missing:
    raise ValueError(f"{path}: sample file lacks {missing}")
  return side


def _check_unchanged(path, src, field, array, what, force):
  """Refuses an input whose content differs from the recorded one (warns with `force`)."""
  from synthjax._src import samples

  recorded = src.get(field)
  if recorded is None or samples.content_digest(array) == recorded:
    return  # equal, or written before inputs were hashed: nothing to compare
  detail = (
    f"{what} changed since {path} was written (its content hash differs), so the "
    "replay would not reproduce the recorded sample"
  )
  if not force:
    raise InputChangedError(detail)
  warnings.warn(InputChangedWarning(detail), stacklevel=3)


def load_sample(path: PathLike, *, force: bool = False) -> Sample:
  """Reads a sample's params JSON (as `synthjax generate` writes it) and its inputs.

  Loads the label map (or rebuilds the demo phantom) and, for seed subclusters, the seed
  maps, and checks them against the SHA-256 the JSON records.

  Args:
    path: a `sample_XXXXX_params.json`.
    force: when an input's content differs from the recorded one, warn
      (`InputChangedWarning`) instead of raising.

  Returns:
    A `Sample`.

  Raises:
    FileNotFoundError: `path`, the label map or the seed maps do not exist.
    ValueError: `path` is not a valid sample params JSON (one line naming it), an input
      cannot be read, or an input changed since the sample was written
      (`InputChangedError`, unless `force`).

  Examples:
    >>> import synthjax
    >>> from synthjax.cli import main
    >>> main(["generate", "--demo", "--shape", "16", "16", "16", "-n", "3", "-o", "out",
    ...       "--seed", "0", "--quiet", "--no-cache"])
    wrote 3 samples to out
    0
    >>> s = synthjax.load_sample("out/sample_00002_params.json")
    >>> s.index, s.labels.shape    # the demo phantom, cropped to the output shape
    (2, (96, 96, 96))
  """
  import synthjax
  from synthjax._src import nifti, phantom

  path = os.fspath(path)
  side = _read_sidecar(path)
  try:
    config = SynthConfig.from_dict(side["config"])
    params = synthjax.params_from_json(side["params"], config)
    key = synthjax.key_from_json(side["key"])
    index = int(side["index"])
  except (ValueError, TypeError, OverflowError) as e:
    raise ValueError(f"{path}: {e}") from e
  src = side["source"]
  if not isinstance(src, dict) or not ("demo" in src or "path" in src):
    raise ValueError(f"{path}: source must name a label map ('path') or 'demo', got {src!r}")
  if "demo" in src:
    labels, affine = phantom.brain_phantom(tuple(src["demo"]["shape"]), src["demo"]["spacing"])
  else:
    try:
      labels, affine, _ = nifti.load_label_map(src["path"])
    except (ValueError, FileNotFoundError) as e:
      raise type(e)(f"label source of {path}: {e}") from e
  _check_unchanged(path, src, "labels_sha256", labels, src.get("path", "the demo phantom"), force)
  seeds = None
  if "seeds" in src:
    from synthjax._src.data import seeds as seed_io

    sc = config.subclusters
    try:
      seeds = seed_io.load_seed_maps(
        src["path"], src["seeds"], num_subclusters=sc.num_subclusters[1], num_meta=sc.num_meta
      )
    except (ValueError, FileNotFoundError) as e:
      raise type(e)(f"seed maps of {path}: {e}") from e
    _check_unchanged(path, src, "seeds_sha256", seeds, f"the seed maps under {src['seeds']}", force)
  return Sample(
    path=path,
    index=index,
    key=key,
    params=params,
    config=config,
    source=src,
    labels=labels,
    affine=np.asarray(affine, np.float64),
    seeds=seeds,
  )


def replay(
  path: PathLike | Sample, *, force: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Regenerates a sample written by `synthjax generate`, bit for bit.

  Args:
    path: the sample's `sample_XXXXX_params.json`, or a `Sample` from `load_sample`.
    force: replay even if the label map or seed maps changed since the sample was written
      (with an `InputChangedWarning`; the result then differs from the recorded sample).

  Returns:
    `(image, seg, affine)` as `generate` wrote them: the image as NumPy in the NIfTI layout
    (`(X, Y, Z)`, or `(X, Y, Z, C)` for several contrasts), the seg as int32 and the output
    grid's world affine (float64, 4x4).

  Raises:
    FileNotFoundError, ValueError: as `load_sample`.

  Examples:
    >>> import nibabel as nib, synthjax
    >>> from synthjax.cli import main
    >>> main(["generate", "--demo", "--shape", "16", "16", "16", "-n", "3", "-o", "run",
    ...       "--seed", "0", "--quiet", "--no-cache"])
    wrote 3 samples to run
    0
    >>> image, seg, affine = synthjax.replay("run/sample_00002_params.json")
    >>> written = nib.load("run/sample_00002_image.nii.gz").dataobj
    >>> np.asanyarray(written).tobytes() == image.tobytes()
    True
  """
  import synthjax
  from synthjax._src import nifti

  s = path if isinstance(path, Sample) else load_sample(path, force=force)
  image, seg = synthjax.synthesize(s.key, s.params, s.labels, s.config, seeds=s.seeds)
  return nifti.nifti_layout(image), np.asarray(seg, np.int32), s.output_affine


def replay_to(
  path: PathLike | Sample, folder: PathLike, *, force: bool = False, overwrite: bool = False
) -> tuple[str, str]:
  """Replays a sample (`replay`) into `folder` as `sample_XXXXX_{image,seg}.nii.gz`, as
  `synthjax replay` writes it.

  Args:
    path: the sample's params JSON, or a `Sample` from `load_sample`.
    folder: the output folder, created if missing.
    force: as for `replay`.
    overwrite: replace existing files (else FileExistsError).

  Returns:
    The paths of the image and the seg written.

  Raises:
    FileExistsError: a file exists and `overwrite` is False.
    FileNotFoundError, ValueError: as `load_sample`.

  Examples:
    >>> replay_to("out/sample_00002_params.json", "again")           # doctest: +SKIP
    ('again/sample_00002_image.nii.gz', 'again/sample_00002_seg.nii.gz')
  """
  from synthjax._src import nifti

  s = path if isinstance(path, Sample) else load_sample(path, force=force)
  image, seg, affine = replay(s)
  os.makedirs(folder, exist_ok=True)
  stem = os.path.join(folder, f"sample_{s.index:05d}")
  paths = stem + "_image.nii.gz", stem + "_seg.nii.gz"
  nifti.save_nifti(paths[0], image, affine, overwrite=overwrite)
  nifti.save_nifti(paths[1], seg, affine, overwrite=overwrite)
  return paths
