"""A Grain pipeline from a volume source to batches of patches with per-sample keys.

Sample `j` of the (infinite or `num_epochs`-long) stream is defined by `j` alone: epoch
`e = j // (V * N)`, volume `perm_e[(j % (V * N)) // N]` (a per-epoch permutation drawn from
`(seed, e)`), and a patch position drawn from `(seed, j)`. Batches are formed on the
`MapDataset`, so every batch is computed whole by one worker and Grain's round-robin over
workers returns them in order: the stream is identical for any number of workers, and the
iterator's state (`get_state` / `set_state`) resumes it exactly.

Each element carries `key`, the raw words of `jax.random.fold_in(jax.random.key(seed), j)`
computed in numpy (workers never call JAX), so synthesis on the device is reproducible:
`keys = jax.random.wrap_key_data(batch["key"])`.

Workers hand their batches to the main process through POSIX shared memory (`/dev/shm`
on Linux), which containers often keep small; see `pipeline` for how much of it is used,
how that is checked before workers start and how it is released.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
import os
import sys
import weakref
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from synthjax._src.data import keys as keys_lib
from synthjax._src.data.samplers import UniformSampler, extract_patch
from synthjax._src.data.splits import describe_element
from synthjax._src.pytypes import PatchSampler, RandomAccessSource, Size3

_STREAM_PERMUTATION = 1
_STREAM_PATCH = 2

SHM_DIR_ENV = "SYNTHJAX_SHM_DIR"
"""Environment variable naming the shared-memory folder `pipeline` checks (`/dev/shm`)."""

# Arrays smaller than this travel from the workers pickled with their batch instead of in
# a shared-memory segment of their own (index, volume, origin and key: a few bytes each).
_MIN_SHM_BYTES = 64 << 10
# Batches a worker computes ahead in its own (private) memory, on Grain's default number
# of reading threads; Grain's default (500 per worker) holds gigabytes of 64^3 patches.
_WORKER_READ_THREADS = 16
_WORKER_READ_AHEAD = 16
# Per-sample bytes of `index`, `volume`, `origin` and `key`.
_FIXED_SAMPLE_BYTES = 8 + 8 + 3 * 4 + 2 * 4

_log = logging.getLogger("synthjax.data")


def _as_size(patch_size: Size3 | None) -> tuple[int, ...] | None:
  if patch_size is None:
    return None
  size = (
    (int(patch_size),) * 3
    if isinstance(patch_size, (int, float, np.integer, np.floating))
    else tuple(int(p) for p in patch_size)
  )
  if len(size) != 3 or min(size) < 1:
    raise ValueError(f"patch_size must be a positive int or 3 ints, got {patch_size}")
  return size


@dataclasses.dataclass
class ExtractPatches(grain.transforms.Map):
  """Maps a global sample index `j` to its patch (see the module docstring).

  Holds a small per-process cache (the last volume and its full label map) so the
  `patches_per_volume` consecutive samples of a volume read it once per worker.
  """

  source: RandomAccessSource
  patch_size: tuple[int, ...] | None
  patches_per_volume: int
  seed: int
  shuffle: bool
  sampler: PatchSampler
  pad_label: int = 0

  def __post_init__(self) -> None:
    self._perm = {}
    self._last: tuple[int, dict] | None = None

  def __getstate__(self) -> dict[str, Any]:
    state = dict(self.__dict__)
    state["_perm"], state["_last"] = {}, None
    return state

  def _volume_index(self, j):
    n_vol = len(self.source)
    per_epoch = n_vol * self.patches_per_volume
    epoch, pos = divmod(int(j), per_epoch)
    pos //= self.patches_per_volume
    if not self.shuffle:
      return pos
    if epoch not in self._perm:
      rng = np.random.default_rng([self.seed, _STREAM_PERMUTATION, epoch])
      self._perm = {epoch: rng.permutation(n_vol)}
    return int(self._perm[epoch][pos])

  def _element(self, v: int) -> dict[str, Any]:
    if self._last is None or self._last[0] != v:
      element = dict(self.source[v])
      # A gzip stream cannot seek: cutting each patch from the file would decompress it
      # from the start every time, so such a volume is read once per visit instead.
      for name in ("labels", "image"):
        vol = element.get(name)
        if vol is not None and not isinstance(vol, np.ndarray) and not vol.seekable:
          element[name] = vol.read()
      if getattr(self.sampler, "needs_full_labels", False):
        if element["labels"] is None:
          raise ValueError(f"{element['path']}: {type(self.sampler).__name__} needs a label map")
        vol = element["labels"]
        element["labels_full"] = vol if isinstance(vol, np.ndarray) else vol.read()
      self._last = (v, element)
    return self._last[1]

  def map(self, j: int) -> dict[str, Any]:
    """The patch of global sample index `j`: its origin, key and the arrays cut there."""
    v = self._volume_index(j)
    element = self._element(v)
    shape = tuple(element["shape"])
    size = self.patch_size or shape
    rng = np.random.default_rng([self.seed, _STREAM_PATCH, int(j)])
    origin = (
      np.zeros(3, np.int64) if self.patch_size is None else self.sampler.origin(rng, element, size)
    )
    out = {
      "index": np.int64(j),
      "volume": np.int64(v),
      "origin": origin.astype(np.int32),
      "key": keys_lib.sample_key_data(self.seed, j),
    }
    if element.get("labels_full") is not None:
      out["labels"] = extract_patch(element["labels_full"], origin, size, pad_value=self.pad_label)
    elif element["labels"] is not None:
      out["labels"] = extract_patch(element["labels"], origin, size, pad_value=self.pad_label)
    if element["image"] is not None:
      out["image"] = extract_patch(element["image"], origin, size, pad_value=0.0)
    return out


def _contiguous(element):
  """The element with C-ordered arrays: patches cut from a NIfTI volume (Fortran-ordered)
  are not, and Grain sends such an array through a pipe, pickled, not shared memory."""
  if isinstance(element, dict):
    return {k: _contiguous(v) for k, v in element.items()}
  if isinstance(element, np.ndarray) and not element.flags.c_contiguous:
    return np.ascontiguousarray(element)
  return element


def _exit_with_parent(parent: int, period: float = 1.0):
  """Ends this worker once its parent is gone (a parent killed with SIGKILL cannot stop
  its workers, which would otherwise live on, reparented, holding their memory)."""
  import threading
  import time

  def watch():
    while os.getppid() == parent:
      time.sleep(period)
    os._exit(0)

  threading.Thread(target=watch, name="synthjax-parent-watch", daemon=True).start()


def _worker_init(worker_index: int, worker_count: int):
  # Data workers must never take the accelerator: hide it before any backend starts.
  os.environ["JAX_PLATFORMS"] = "cpu"
  os.environ["CUDA_VISIBLE_DEVICES"] = ""
  if "jax" in sys.modules:
    sys.modules["jax"].config.update("jax_platforms", "cpu")
  _exit_with_parent(os.getppid())


def _has_images(source) -> bool:
  """Whether the source's elements carry an image (`True` where it cannot tell)."""
  while source is not None:
    if hasattr(source, "image_paths"):
      return source.image_paths is not None
    source = getattr(source, "source", None)
  return True


def batch_nbytes(
  source: RandomAccessSource,
  patch_size: Size3 | None,
  batch_size: int,
  transforms: Sequence[Any] = (),
) -> int:
  """Bytes of one batch of `pipeline(source, patch_size=..., batch_size=...)`.

  Counts `labels` (int32), `image` (float32, image sources), `index`, `volume`, `origin`
  and `key`, plus `bytes_per_voxel` of each transform that declares it (`seed_patches`:
  `seeds`, `SynthesizeTransform`: the rendered `image` and `seg`).
  """
  size = _as_size(patch_size)
  if size is None:
    size = tuple(describe_element(source, 0)["shape"])
  per_voxel = 4 + (4 if _has_images(source) else 0)
  per_voxel += sum(int(getattr(t, "bytes_per_voxel", 0)) for t in transforms)
  return int(batch_size) * (math.prod(size) * per_voxel + _FIXED_SAMPLE_BYTES)


def shm_in_flight(workers: int, per_worker_buffer_size: int, batch_bytes: int) -> int:
  """Shared memory that `pipeline` holds at most for batches on their way from the workers.

  From Grain's code (0.2.18): each worker has up to `per_worker_buffer_size` batches in
  its queue and one more waiting to enter it; in the main process a thread per worker
  reads `per_worker_buffer_size` more ahead and holds one waiting for room; and one batch
  is being handed to the caller, copied out of shared memory before its segment is freed.
  (Measured peaks, 2 workers, 2 MB batches: 6 batches with a buffer of 1, 9 with 2; with
  a slow consumer every buffer fills: 12 with 2, and 13, the bound, while `synthjax train`
  stepped.)
  """
  return (int(workers) * (2 * int(per_worker_buffer_size) + 2) + 1) * int(batch_bytes)


def shm_free_bytes(folder: str | None = None) -> int | None:
  """Free bytes of the shared-memory folder (`$SYNTHJAX_SHM_DIR`, else `/dev/shm`), or
  `None` where it cannot be read (no such folder, as on macOS)."""
  folder = folder or os.environ.get(SHM_DIR_ENV) or "/dev/shm"
  try:
    st = os.statvfs(folder)
  except OSError:
    return None
  return st.f_bavail * st.f_frsize


def _copy_out(leaf):
  """A plain-memory copy of a batch array Grain opened from shared memory, whose segment
  is unlinked at once (Grain would only unlink it when the array is collected)."""
  shm = getattr(leaf, "shm", None)
  if shm is None or not isinstance(leaf, np.ndarray):
    return leaf
  out = np.array(leaf, subok=False)
  if getattr(leaf, "_unlink_on_del", False):
    leaf._unlink_on_del = False  # pyright: ignore[reportAttributeAccessIssue] (Grain's subclass)
    with contextlib.suppress(FileNotFoundError):
      shm.unlink()
  return out


def _copy_tree(x):
  if isinstance(x, dict):
    return {k: _copy_tree(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return type(x)(_copy_tree(v) for v in x)
  return _copy_out(x)


def _release(box: list) -> None:
  """Closes the Grain iterator in `box` and lets it go while the interpreter still runs:
  Grain's iterators close again when collected, which fails once modules are torn down."""
  if box:
    box.pop().close()
    gc.collect()


class BatchIterator(grain.DatasetIterator):
  """The iterator of a `pipeline`: Grain's, with its batches in ordinary memory.

  Forwards `get_state` / `set_state` (exact resume) and is a context manager; `close()`
  (or leaving the `with` block, dropping the iterator, or the interpreter's exit) stops
  the workers and frees every shared-memory segment in flight. A closed iterator cannot
  be used again (take its `get_state()` before closing it).
  """

  def __init__(self, parent: grain.DatasetIterator) -> None:
    super().__init__(parent)
    # The Grain iterator lives in `_box` only, so that closing can let it go.
    self._parents = ()
    self._box = [parent]
    self._finalizer = weakref.finalize(self, _release, self._box)

  @property
  def _grain(self) -> grain.DatasetIterator:
    if not self._box:
      raise ValueError("the pipeline's iterator is closed")
    return self._box[0]

  def __next__(self) -> Any:
    return _copy_tree(next(self._grain))

  def get_state(self) -> dict[str, Any]:
    """The position of the iterator (Grain's state), for `set_state` or a checkpoint."""
    return self._grain.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    """Moves the iterator to a position `get_state` returned: the next batch is the one that
    came after it."""
    self._grain.set_state(state)

  def close(self) -> None:
    """Stops the workers and frees the shared memory of the batches in flight."""
    self._closed = True
    self._finalizer()

  def __enter__(self) -> BatchIterator:
    return self

  def __exit__(self, *exc: object) -> bool:
    self.close()
    return False

  def __str__(self) -> str:
    return "BatchIterator"


class _BatchIterDataset(grain.IterDataset):
  """`pipeline`'s dataset: its iterators are `BatchIterator`s."""

  def __iter__(self) -> BatchIterator:
    return BatchIterator(self._parent.__iter__())

  def __str__(self) -> str:
    return "BatchIterDataset"


def pipeline(
  source: RandomAccessSource,
  *,
  patch_size: Size3 | None,
  batch_size: int,
  seed: int,
  workers: int = 0,
  patches_per_volume: int = 1,
  sampler: PatchSampler | None = None,
  shuffle: bool = True,
  num_epochs: int | None = None,
  drop_remainder: bool = True,
  shard: tuple[int, int] | None = None,
  transforms: Sequence[Any] = (),
  worker_buffer_size: int = 2,
  pad_label: int = 0,
  pad_small: bool = False,
  shm_budget: int | None = None,
  shm_dir: str | None = None,
) -> grain.IterDataset:
  """Batches of patches (labels, images where present) with per-sample JAX keys.

  Args:
    source: a random-access source of volumes (`NiftiSource`).
    patch_size: int or 3 ints; `None` takes whole volumes (all of one shape).
    batch_size: samples per batch.
    seed: seed in [0, 2**32) of the whole stream (order, patch positions, keys).
    workers: Grain worker processes (0: in the main process). Batches do not depend on it.
    patches_per_volume: consecutive samples cut from one volume (read once per worker).
    sampler: `UniformSampler()` (default), `LabelSampler(...)` or `WeightedSampler(...)`.
    shuffle: visit volumes in a new random order every epoch.
    num_epochs: passes over the source; `None` repeats forever.
    drop_remainder: drop a last incomplete batch.
    shard: `(index, count)` to keep this process's share of the samples (multi-host:
      `(jax.process_index(), jax.process_count())`); each sample goes to exactly one shard
      and keeps its global index and key.
    transforms: extra Grain transforms applied to each sample in the workers.
    worker_buffer_size: batches prefetched per worker, at most (see Shared memory).
    pad_label: label value for patch voxels outside the volume.
    pad_small: allow volumes smaller than the patch (padded with `pad_label`, like MONAI's
      `SpatialPad`); by default such a volume is an error naming its file (as TorchIO).
    shm_budget: bytes of shared memory the workers may hold; default half the free space
      of `shm_dir` when the pipeline is built.
    shm_dir: the shared-memory folder whose free space is checked; default
      `$SYNTHJAX_SHM_DIR`, else `/dev/shm`. Python's shared memory (`shm_open`) always
      lives in `/dev/shm` on Linux: this only says where to look for its space.

  Shared memory:
    With `workers > 0`, each batch travels from its worker to this process in shared
    memory, which containers often keep small (Docker: 64 MB unless
    `docker run --shm-size=...`; Kubernetes: whatever an `emptyDir` with
    `medium: Memory` mounted on `/dev/shm` allows). At most
    `(workers * (2 * per_worker_buffer_size + 2) + 1) * batch_nbytes(...)` bytes are held
    (`shm_in_flight`), where `per_worker_buffer_size` is the largest value in
    `[1, worker_buffer_size]` that fits `shm_budget`. Batches are copied into ordinary
    memory as the iterator returns them and their segments freed at once, so nothing the
    caller keeps holds shared memory, and `close()` on the iterator (it is also a context
    manager, and closes itself when dropped or at exit) stops the workers and frees the
    rest.

    If even one buffered batch per worker does not fit the budget, the pipeline runs with
    `workers=0` and logs one warning naming the cure: a job then trains (more slowly)
    instead of dying with `Worker process was terminated unexpectedly with exit code -7`
    (SIGBUS on a full `/dev/shm`), and its batches are the same as with workers. The
    choice is checked once, here: other processes filling the folder later are not seen.

  Returns:
    A `grain.IterDataset` whose iterators are `BatchIterator`s; its batches are dicts of
    stacked numpy arrays: `labels` (B, X, Y, Z) int32, `image` (B, X, Y, Z) float32
    (image sources), `index` (B,) the global sample index, `volume` (B,), `origin` (B, 3)
    and `key` (B, 2) uint32.

  Examples:
    >>> import nibabel as nib
    >>> from synthjax.data import NiftiSource
    >>> os.makedirs("labels", exist_ok=True)
    >>> for i in range(2):
    ...   nib.save(nib.Nifti1Image(np.full((24, 24, 24), i, np.int16), np.eye(4)),
    ...            f"labels/map{i}.nii.gz")
    >>> ds = pipeline(NiftiSource.from_folder("labels/"), patch_size=16, batch_size=2,
    ...               seed=0, workers=0)   # workers=2 or more for real trainings
    >>> with iter(ds) as it:
    ...   batch = next(it); state = it.get_state()
    >>> batch["labels"].shape, batch["labels"].dtype, batch["key"].shape
    ((2, 16, 16, 16), dtype('int32'), (2, 2))
  """
  if not 0 <= int(seed) < (1 << 32):
    raise ValueError(f"seed must be in [0, 2**32), got {seed}")
  if batch_size < 1 or patches_per_volume < 1 or workers < 0:
    raise ValueError(
      f"batch_size and patches_per_volume must be >= 1 and workers >= 0, got "
      f"{batch_size}, {patches_per_volume}, {workers}"
    )
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"num_epochs must be >= 1 or None, got {num_epochs}")
  size = _as_size(patch_size)
  if len(source) == 0:
    raise ValueError("the source is empty")
  described = [describe_element(source, i) for i in range(len(source))]
  if size is not None and not pad_small:
    for d in described:
      shape = tuple(d["shape"])
      if any(n < p for n, p in zip(shape, size)):
        raise ValueError(
          f"{d['path']}: volume shape {shape} is smaller than the patch "
          f"size {size}; pass pad_small=True to pad it"
        )
  if size is None:
    shapes = {tuple(d["shape"]) for d in described}
    if len(shapes) > 1:
      raise ValueError(f"patch_size=None needs volumes of one shape, got {sorted(shapes)}")
  extract = ExtractPatches(
    source=source,
    patch_size=size,
    patches_per_volume=int(patches_per_volume),
    seed=int(seed),
    shuffle=bool(shuffle),
    sampler=sampler or UniformSampler(),
    pad_label=int(pad_label),
  )
  per_epoch = len(source) * int(patches_per_volume)
  total = sys.maxsize if num_epochs is None else per_epoch * int(num_epochs)
  ds = grain.MapDataset.range(total).map(extract)
  for t in transforms:
    ds = ds.map(t) if not isinstance(t, grain.transforms.RandomMap) else ds.random_map(t, seed=seed)
  if shard is not None:
    index, count = (int(s) for s in shard)
    if not 0 <= index < count:
      raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard}")
    ds = ds[index::count]
  buffer = max(1, int(worker_buffer_size))
  if workers > 0:
    nbytes = batch_nbytes(source, size, batch_size, transforms)
    free = shm_free_bytes(shm_dir)
    budget = shm_budget if shm_budget is not None else (None if free is None else free // 2)
    if budget is not None:
      if free is not None:
        budget = min(int(budget), free)
      fits = [b for b in range(1, buffer + 1) if shm_in_flight(workers, b, nbytes) <= budget]
      if not fits:
        folder = shm_dir or os.environ.get(SHM_DIR_ENV) or "/dev/shm"
        need = shm_in_flight(workers, 1, nbytes)
        _log.warning(
          "synthjax pipeline: %d workers need %.0f MB of shared memory (budget %.0f MB of "
          "%s); running with workers=0 instead. Cure: docker run --shm-size=%dm (or a "
          "larger emptyDir medium: Memory on /dev/shm in Kubernetes), fewer workers, or "
          "workers=0.",
          workers,
          need / 2**20,
          budget / 2**20,
          folder,
          max(64, 2 ** math.ceil(math.log2(2 * need / 2**20))),
        )
        workers = 0
      else:
        buffer = fits[-1]
  if workers > 0:
    ds = ds.map(_contiguous)  # only arrays in C order go through shared memory
  ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
  if workers > 0:
    # Batches are stacked in the workers' own memory and copied into shared memory only
    # as they enter a worker's queue. (`enable_shared_memory_output` would stack them in
    # shared memory, where the worker's read-ahead holds hundreds and, when the workers
    # stop, leaves them behind until the interpreter exits.)
    it = ds.to_iter_dataset(
      grain.ReadOptions(num_threads=_WORKER_READ_THREADS, prefetch_buffer_size=_WORKER_READ_AHEAD)
    )
    it = grain.experimental.WithOptionsIterDataset(
      it, grain.experimental.DatasetOptions(min_shm_size=_MIN_SHM_BYTES)
    )
    # Grain <= 0.2.18 reads an absl flag in mp_prefetch and fails in scripts that do not
    # parse flags (google/grain#1355); the defaults are what such scripts want.
    from absl import flags

    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(
      grain.MultiprocessingOptions(num_workers=int(workers), per_worker_buffer_size=buffer),
      worker_init_fn=_worker_init,
    )
  else:
    it = ds.to_iter_dataset()
  return _BatchIterDataset(it)
