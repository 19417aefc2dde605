"""Run folders: samples, view pairs and label ensembles as `synthjax generate`, `views` and
`ensemble` write them.

Each function records the run's manifest and holds the folder's lock while it writes
(`runs.start_run`), then writes the samples through `write_dataset`: run again after an
interruption, it writes only the missing ones. Sample `i` depends on `(seed, i)` alone
(`samples.sample_keys`) and renders `sources[i % len(sources)]`.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from synthjax._src import inputs, runs, samples
from synthjax._src.config import SynthConfig
from synthjax._src.pytypes import PathLike

if TYPE_CHECKING:
  from synthjax._src.ensembles import EnsembleConfig

OUTPUT_FORMATS = ("nifti", "arrayrecord")


def _versions():
  import jax

  import synthjax

  return {"synthjax": synthjax.__version__, "jax": jax.__version__, "numpy": np.__version__}


def _write_run(out, manifest, overwrite, make_writer, indices, make_sample, progress, shard=None):
  """Starts the run of `manifest` in `out` and writes its samples `indices` under its lock."""
  from synthjax._src.data import writers

  lock = runs.start_run(out, manifest, overwrite, shard=shard)
  try:
    return writers.write_dataset(make_writer(), indices, make_sample, progress=progress)
  finally:
    lock.close()


def check_shard(shard: tuple[int, int] | None) -> tuple[int, int] | None:
  """Returns `shard` as `(i, n)` ints with `0 <= i < n`, or None.

  Raises:
    ValueError: naming the shard.
  """
  if shard is None:
    return None
  try:
    i, count = (operator.index(v) for v in shard)
  except (TypeError, ValueError):
    raise ValueError(f"shard must be a pair of ints (i, n), got {shard!r}") from None
  if not 0 <= i < count:
    raise ValueError(f"shard (i, n) needs 0 <= i < n, got ({i}, {count})")
  return i, count


def generate_manifest(
  sources: Sequence[inputs.Source],
  config: SynthConfig,
  *,
  n: int,
  seed: int = 0,
  output_format: str = "nifti",
) -> dict[str, Any]:
  """The manifest `generate` records in its run folder: what `check_run` compares a folder to."""
  return _manifest(
    "generate",
    seed=seed,
    config=config.to_dict(),
    sources=[s.record for s in sources],
    output_format=output_format,
    n=n,
    source_of_sample="sources[index % len(sources)]",
  )


def _manifest(command, *, seed, config, sources, output_format, n, **extra):
  """A run's manifest (`runs.start_run`): its command, the `runs.SAME_RUN_KEYS`, the
  sample count, the command's own entries and the versions."""
  return {
    "format": runs.RUN_FORMAT,
    "command": command,
    "seed": seed,
    "config": config,
    "sources": sources,
    "output_format": output_format,
    **extra,
    "n": n,
    "versions": _versions(),
  }


def generate(
  out: PathLike,
  sources: Sequence[inputs.Source],
  config: SynthConfig,
  *,
  n: int,
  seed: int = 0,
  output_format: str = "nifti",
  workers: int = 4,
  overwrite: bool = False,
  progress: bool = False,
  shard: tuple[int, int] | None = None,
) -> list[int]:
  """Writes `n` synthetic samples (image, seg, params JSON) rendered from `sources`.

  With `shard=(i, k)` this call writes only the samples `j` with `j % k == i`, so that `k`
  processes (a SLURM array, a Kubernetes indexed job) fill one folder side by side. Each
  sample's bytes are those of a single run, whatever the split; each shard resumes on its own,
  and `check_run` tells when the set is complete.

  Args:
    out: the run folder (`runs.start_run`: new, empty, or holding this same run).
    sources: `inputs.Source`s (`load_sources` or `demo_sources`, with `with_seed_maps` when
      the config uses seed maps), checked against `config` (`check_sources`).
    config: the `SynthConfig`.
    n: number of samples.
    seed: the run's seed, in `[0, 2**32)`.
    output_format: `"nifti"` (a NIfTI folder) or `"arrayrecord"` (sharded ArrayRecord).
    workers: background threads writing (compressing) NIfTI samples.
    overwrite: replace a run of another command or seed in `out` (its files only).
    progress: print a progress bar to stderr.
    shard: `(i, k)`: write shard `i` of `k` (0-based), alongside the other shards' processes;
      None: the whole run. Every shard must be given the same `n`, `seed`, config, sources
      and format.

  Returns:
    The indices written by this call (those already complete are skipped).

  Raises:
    InputError: the synthesis cannot fit in memory.
    ValueError: a bad `output_format` or `shard`.
    runs.FolderError: `out` holds something else, or another run writes there (shards of
      the same run with the same `k` excepted).

  Examples:
    >>> sources, spacing = demo_sources((32, 32, 32), 6.0)             # doctest: +SKIP
    >>> cfg = preset_config("synthseg", label_values(sources), (32,) * 3, spacing)  # doctest: +SKIP
    >>> generate("out", sources, cfg, n=4, seed=5)                      # doctest: +SKIP
    [0, 1, 2, 3]
  """
  import synthjax
  from synthjax._src.data import arrayrecord, nifti_folder

  if output_format not in OUTPUT_FORMATS:
    raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
  shard = check_shard(shard)
  # Host copies awaiting the writer threads: an image and a seg per pending sample.
  inputs.check_fits(config, sources, extra_bytes=8 * math.prod(config.shape) * (workers + 1))
  manifest = generate_manifest(sources, config, n=n, seed=seed, output_format=output_format)

  def make_writer():
    if output_format == "nifti":
      return nifti_folder.NiftiWriter(out, max_pending=workers)
    return arrayrecord.ArrayRecordWriter(
      os.path.join(out, runs.ARRAYRECORD_PREFIX), file_numbers=shard or (0, 1)
    )

  def make(i):
    labels, affine, record, seeds = sources[i % len(sources)]
    pkey, skey = samples.sample_keys(seed, i)
    params = synthjax.sample_params(pkey, config)
    image, seg = synthjax.synthesize(skey, params, labels, config, seeds=seeds)
    return {
      "index": i,
      "image": np.asarray(image),
      "seg": np.asarray(seg, np.int32),
      "affine": samples.output_affine(
        affine, labels.shape, config.shape, np.asarray(params["crop"]["position"])
      ),
      "sidecar": samples.make_sidecar(
        seed=seed,
        index=i,
        synth_key=skey,
        params_key=pkey,
        params=params,
        config=config,
        source=record,
        version=synthjax.__version__,
      ),
    }

  indices = range(n) if shard is None else range(shard[0], n, shard[1])
  return _write_run(out, manifest, overwrite, make_writer, indices, make, progress, shard)


def generate_views(
  out: PathLike,
  sources: Sequence[inputs.Source],
  config: SynthConfig,
  *,
  n: int,
  seed: int = 0,
  shared_spatial: bool = True,
  overwrite: bool = False,
) -> list[int]:
  """Writes `n` pairs of contrastive views (anatomix step 2) rendered from `sources`.

  Sample `i` is `sample_{i:05d}_view{0,1}_image.nii.gz` with one `_seg.nii.gz` when the
  views share the spatial transform (voxel-aligned), else one `_view{v}_seg.nii.gz` per
  view, and its params JSON.

  Args:
    out: the run folder (as for `generate`).
    sources: `inputs.Source`s checked against `config`.
    config: the `SynthConfig`.
    n: number of pairs.
    seed: the run's seed, in `[0, 2**32)`.
    shared_spatial: one spatial transform for both views (else one per view).
    overwrite: replace a run of another command or seed in `out` (its files only).

  Returns:
    The indices written by this call.

  Raises:
    InputError: the synthesis cannot fit in memory.
    runs.FolderError: `out` holds something else, or another run writes there.
  """
  import synthjax
  from synthjax._src.data import nifti_folder

  inputs.check_fits(config, sources, batch=2)
  manifest = _manifest(
    "views",
    seed=seed,
    config=config.to_dict(),
    sources=[s.record for s in sources],
    output_format="nifti-views",
    n=n,
    shared_spatial=shared_spatial,
    source_of_sample="sources[index % len(sources)]",
  )

  def make(i):
    stem = os.path.join(out, f"sample_{i:05d}")
    labels, affine, record, _ = sources[i % len(sources)]
    pkey, skey = samples.sample_keys(seed, i)
    params = synthjax.sample_view_params(pkey, config, shared_spatial=shared_spatial)
    images, segs = synthjax.synthesize_views(
      skey, params, labels, config, shared_spatial=shared_spatial
    )
    files = {}
    for v in range(2):
      aff = samples.output_affine(
        affine, labels.shape, config.shape, np.asarray(params["crop"]["position"][v])
      )
      files[f"{stem}_view{v}_image.nii.gz"] = (np.asarray(images[v]), aff)
      if v == 0 or not shared_spatial:
        name = f"{stem}_seg.nii.gz" if shared_spatial else f"{stem}_view{v}_seg.nii.gz"
        files[name] = (np.asarray(segs[v], np.int32), aff)
    side = samples.make_sidecar(
      seed=seed,
      index=i,
      synth_key=skey,
      params_key=pkey,
      params=params,
      config=config,
      source=record,
      version=synthjax.__version__,
      shared_spatial=shared_spatial,
    )
    return {"index": i, "files": files, "sidecar": side}

  return _write_run(
    out, manifest, overwrite, lambda: nifti_folder.NiftiFilesWriter(out), range(n), make, False
  )


def generate_ensembles(
  out: PathLike,
  config: EnsembleConfig,
  *,
  n: int,
  seed: int = 0,
  templates: Sequence[PathLike] | None = None,
  overwrite: bool = False,
) -> list[int]:
  """Writes `n` synthetic label maps (anatomix label ensembles), `sample_{i:05d}_labels.nii.gz`
  with an identity affine, and their params JSONs.

  Args:
    out: the run folder (as for `generate`).
    config: the `ensembles.EnsembleConfig`.
    n: number of label maps.
    seed: the run's seed, in `[0, 2**32)`.
    templates: template label maps (files, folders or globs), each cropped to its
      foreground; None draws random shapes.
    overwrite: replace a run of another command or seed in `out` (its files only).

  Returns:
    The indices written by this call.

  Raises:
    FileNotFoundError: a template file that does not exist.
    InputError: a template cannot be read or used (naming it).
    runs.FolderError: `out` holds something else, or another run writes there.

  Examples:
    >>> cfg = synthjax.ensembles.EnsembleConfig(shape=(64, 64, 64))    # doctest: +SKIP
    >>> generate_ensembles("out", cfg, n=8, seed=1)                     # doctest: +SKIP
  """
  import synthjax
  from synthjax import ensembles
  from synthjax._src.data import nifti_folder

  stack, paths = None, None
  if templates:
    with inputs.input_errors():
      stack, paths = ensembles.load_templates(templates, crop_foreground=True, return_paths=True)
  manifest = _manifest(
    "ensemble",
    seed=seed,
    config=config.to_dict(),
    sources=paths or "random shapes",
    output_format="nifti-labels",
    n=n,
  )

  def make(i):
    stem = os.path.join(out, f"sample_{i:05d}")
    pkey, skey = samples.sample_keys(seed, i)
    params = ensembles.sample_ensemble_params(pkey, config)
    labels = np.asarray(ensembles.render_ensemble(skey, params, stack, config), np.int32)
    side = samples.make_ensemble_sidecar(
      seed=seed,
      index=i,
      synth_key=skey,
      params_key=pkey,
      params=params,
      config=config,
      templates=paths,
      version=synthjax.__version__,
    )
    return {"index": i, "files": {stem + "_labels.nii.gz": (labels, np.eye(4))}, "sidecar": side}

  return _write_run(
    out, manifest, overwrite, lambda: nifti_folder.NiftiFilesWriter(out), range(n), make, False
  )
