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
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Optional, Sequence

import numpy as np
import grain

from synthjax._src.data import keys as keys_lib
from synthjax._src.data.samplers import UniformSampler, extract_patch
from synthjax._src.data.splits import describe_element

_STREAM_PERMUTATION = 1
_STREAM_PATCH = 2


def _as_size(patch_size):
  if patch_size is None:
    return None
  size = (int(patch_size),) * 3 if np.isscalar(patch_size) else tuple(int(p) for p in patch_size)
  if len(size) != 3 or min(size) < 1:
    raise ValueError(f"patch_size must be a positive int or 3 ints, got {patch_size}")
  return size


@dataclasses.dataclass
class ExtractPatches(grain.transforms.Map):
  """Maps a global sample index `j` to its patch (see the module docstring).

  Holds a small per-process cache (the last volume and its full label map) so the
  `patches_per_volume` consecutive samples of a volume read it once per worker.
  """
  source: object
  patch_size: Optional[tuple]
  patches_per_volume: int
  seed: int
  shuffle: bool
  sampler: object
  pad_label: int = 0

  def __post_init__(self):
    self._perm = {}
    self._last = (None, None)

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_perm"], state["_last"] = {}, (None, None)
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

  def _element(self, v):
    if self._last[0] != v:
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

  def map(self, j):
    v = self._volume_index(j)
    element = self._element(v)
    shape = tuple(element["shape"])
    size = self.patch_size or shape
    rng = np.random.default_rng([self.seed, _STREAM_PATCH, int(j)])
    origin = (np.zeros(3, np.int64) if self.patch_size is None
              else self.sampler.origin(rng, element, size))
    out = {"index": np.int64(j), "volume": np.int64(v), "origin": origin.astype(np.int32),
           "key": keys_lib.sample_key_data(self.seed, j)}
    if element.get("labels_full") is not None:
      out["labels"] = extract_patch(element["labels_full"], origin, size, pad_value=self.pad_label)
    elif element["labels"] is not None:
      out["labels"] = extract_patch(element["labels"], origin, size, pad_value=self.pad_label)
    if element["image"] is not None:
      out["image"] = extract_patch(element["image"], origin, size, pad_value=0.0)
    return out


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


def pipeline(source, *, patch_size, batch_size: int, seed: int, workers: int = 0,
             patches_per_volume: int = 1, sampler=None, shuffle: bool = True,
             num_epochs: Optional[int] = None, drop_remainder: bool = True,
             shard: Optional[tuple] = None, transforms: Sequence = (),
             worker_buffer_size: int = 2, pad_label: int = 0,
             pad_small: bool = False) -> grain.IterDataset:
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
    worker_buffer_size: batches prefetched per worker.
    pad_label: label value for patch voxels outside the volume.
    pad_small: allow volumes smaller than the patch (padded with `pad_label`, like MONAI's
      `SpatialPad`); by default such a volume is an error naming its file (as TorchIO).

  Returns:
    A `grain.IterDataset`; its batches are dicts of stacked numpy arrays: `labels`
    (B, X, Y, Z) int32, `image` (B, X, Y, Z) float32 (image sources), `index` (B,) the
    global sample index, `volume` (B,), `origin` (B, 3) and `key` (B, 2) uint32.

  Examples:
    >>> ds = pipeline(NiftiSource.from_folder("labels/"), patch_size=64, batch_size=4,
    ...               seed=0, workers=2)  # doctest: +SKIP
    >>> it = iter(ds); batch = next(it); state = it.get_state()  # doctest: +SKIP
  """
  if not 0 <= int(seed) < (1 << 32):
    raise ValueError(f"seed must be in [0, 2**32), got {seed}")
  if batch_size < 1 or patches_per_volume < 1 or workers < 0:
    raise ValueError(f"batch_size and patches_per_volume must be >= 1 and workers >= 0, got "
                     f"{batch_size}, {patches_per_volume}, {workers}")
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
        raise ValueError(f"{d['path']}: volume shape {shape} is smaller than the patch "
                         f"size {size}; pass pad_small=True to pad it")
  if size is None:
    shapes = {tuple(d["shape"]) for d in described}
    if len(shapes) > 1:
      raise ValueError(f"patch_size=None needs volumes of one shape, got {sorted(shapes)}")
  extract = ExtractPatches(source=source, patch_size=size,
                           patches_per_volume=int(patches_per_volume), seed=int(seed),
                           shuffle=bool(shuffle), sampler=sampler or UniformSampler(),
                           pad_label=int(pad_label))
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
  ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
  if workers > 0 and hasattr(ds, "enable_shared_memory_output"):
    # Grain sends worker outputs through shared memory only when the dataset given to
    # mp_prefetch says so, and `to_iter_dataset` hides it: without this every batch is
    # pickled through a pipe (tens of MB/s).
    ds.enable_shared_memory_output()
  it = ds.to_iter_dataset()
  if workers > 0:
    # Grain <= 0.2.18 reads an absl flag in mp_prefetch and fails in scripts that do not
    # parse flags (google/grain#1355); the defaults are what such scripts want.
    from absl import flags
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    it = it.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=int(workers),
                                     per_worker_buffer_size=int(worker_buffer_size)),
        worker_init_fn=_worker_init)
  return it
