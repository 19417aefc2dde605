"""Writers for generated samples: a NIfTI folder or sharded ArrayRecord files.

A sample is a dict with

* `"image"`: a 3-D float array (X, Y, Z),
* `"seg"`: an integer array of the same shape,
* `"affine"`: the (4, 4) voxel-to-world matrix,
* `"index"`: the sample's index (an int >= 0),
* `"sidecar"`: a JSON-serialisable dict (params, key, config..., see `samples.make_sidecar`).

Both writers are atomic and resumable. A NIfTI sample is complete iff its params JSON exists
(written last, by rename); an ArrayRecord shard is complete iff it has its final name (given by
rename once the shard is closed). `done()` returns the complete indices, so

    write_dataset(NiftiWriter(folder), range(n), make_sample)

run again after an interruption writes only the missing samples.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import json
import operator
import os
import re
import sys
import time
import warnings
from typing import Callable, Iterable

import numpy as np

from synthjax._src import nifti

# ------------------------------------------------------------------------------------------
# Samples


def _check_sample(sample) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, dict]:
  """Validates a sample; returns `(index, image, seg, affine float64, sidecar)`."""
  missing = [k for k in ("image", "seg", "affine", "index", "sidecar") if k not in sample]
  if missing:
    raise ValueError(f"sample lacks key(s) {missing}; has {sorted(sample)}")
  try:
    index = operator.index(sample["index"])
  except TypeError as e:
    raise TypeError(f"sample index must be an integer, got {sample['index']!r}") from e
  if index < 0:
    raise ValueError(f"sample index must be >= 0, got {index}")
  image, seg = np.asarray(sample["image"]), np.asarray(sample["seg"])
  affine = np.asarray(sample["affine"], np.float64)
  if image.ndim != 3:
    raise ValueError(f"sample {index}: image must be 3-D, got shape {image.shape}")
  if seg.shape != image.shape:
    raise ValueError(f"sample {index}: seg shape {seg.shape} != image shape {image.shape}")
  if not np.issubdtype(seg.dtype, np.integer):
    raise ValueError(f"sample {index}: seg must have an integer dtype, got {seg.dtype}")
  if affine.shape != (4, 4):
    raise ValueError(f"sample {index}: affine must be 4x4, got shape {affine.shape}")
  sidecar = sample["sidecar"]
  if not isinstance(sidecar, dict):
    raise TypeError(f"sample {index}: sidecar must be a dict, got {type(sidecar).__name__}")
  # A sidecar naming another index would make replay regenerate the wrong sample.
  if "index" in sidecar and sidecar["index"] != index:
    raise ValueError(f"sample {index}: sidecar says index {sidecar['index']!r}")
  return index, image, seg, affine, sidecar


def _sidecar_json(index, sidecar, **kw) -> str:
  try:
    return json.dumps(sidecar, **kw)
  except (TypeError, ValueError) as e:
    raise TypeError(f"sample {index}: sidecar is not JSON-serialisable ({e})") from e


class _Writer:
  """Context-manager plumbing shared by the writers."""

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb):
    if exc_type is None:
      self.close()
    else:
      self._close_after_error()
    return False


# ------------------------------------------------------------------------------------------
# NIfTI folder

_NIFTI_DONE = re.compile(r"sample_(\d{5,})_params\.json")
_NIFTI_VOLUME = re.compile(r"sample_(\d{5,})_(?:image|seg)\.nii\.gz")


def complete_samples(folder) -> set[int]:
  """Indices of the samples in `folder` whose params JSON exists (it is written last, so
  those samples are complete)."""
  return {int(m.group(1)) for name in os.listdir(folder) if (m := _NIFTI_DONE.fullmatch(name))}
_TMP_PREFIX = nifti.TMP_PREFIX


class NiftiWriter(_Writer):
  """Writes samples as `sample_{index:05d}_{image,seg}.nii.gz` + `_params.json` in a folder.

  Each file is written under a temporary name and renamed, and the params JSON goes last, so
  a sample is complete iff its JSON exists and no file with a final name is ever half-written.
  Writes run on a small thread pool so that gzip compression overlaps with generating the next
  sample; `close()` (or leaving the `with` block) waits for them and re-raises a write error.

  A seg with a 64-bit dtype is stored as int32 (NIfTI readers reject 64-bit integers);
  other dtypes are stored as given.

  Args:
    folder: output folder, created if missing.
    overwrite: replace samples that are already complete (else `write` raises
      FileExistsError).
    max_pending: samples queued or being written at once (each held in memory until
      written); 0 writes synchronously in `write`.

  Examples:
    >>> with NiftiWriter("out") as w:                                  # doctest: +SKIP
    ...   for i in sorted(set(range(100)) - w.done()):
    ...     w.write(make_sample(i))
  """

  def __init__(self, folder, *, overwrite: bool = False, max_pending: int = 4):
    if max_pending < 0:
      raise ValueError(f"max_pending must be >= 0, got {max_pending}")
    self.folder = os.fspath(folder)
    self.overwrite = bool(overwrite)
    self.max_pending = int(max_pending)
    os.makedirs(self.folder, exist_ok=True)
    self._pool = (concurrent.futures.ThreadPoolExecutor(self.max_pending,
                                                        thread_name_prefix="synthjax-nifti")
                  if self.max_pending else None)
    self._pending: dict[int, concurrent.futures.Future] = {}
    self._errors: list[BaseException] = []
    self._closed = False

  def paths(self, index: int) -> tuple[str, str, str]:
    """Returns the `(image, seg, params JSON)` paths of sample `index`."""
    stem = os.path.join(self.folder, f"sample_{int(index):05d}")
    return stem + "_image.nii.gz", stem + "_seg.nii.gz", stem + "_params.json"

  def done(self) -> set[int]:
    """Returns the indices of the complete samples in the folder.

    Waits for this writer's pending writes first (a failed one is re-raised by the next
    `write`, `flush` or `close`).
    """
    self._wait()
    return complete_samples(self.folder)

  def write(self, sample: dict) -> None:
    """Queues `sample` for writing (see the class docstring).

    Raises:
      FileExistsError: the sample is already complete (or queued) and `overwrite` is False.
      ValueError, TypeError: a malformed sample (wrong keys, shapes or dtypes).
      OSError: an earlier queued write failed.
    """
    if self._closed:
      raise ValueError(f"NiftiWriter({self.folder!r}) is closed")
    self._raise_errors()
    index, image, seg, affine, sidecar = _check_sample(sample)
    text = _sidecar_json(index, sidecar, indent=1)
    seg = _nifti_seg(index, seg)
    json_path = self.paths(index)[2]
    if index in self._pending:
      if not self.overwrite:
        raise FileExistsError(f"{json_path}: sample {index} is already queued for writing "
                              "(pass overwrite=True to replace it)")
      # The later write must land last.
      concurrent.futures.wait([self._pending[index]])
      self._reap()
      self._raise_errors()
    replace = os.path.exists(json_path)
    if replace and not self.overwrite:
      raise FileExistsError(f"{json_path}: sample {index} exists "
                            "(pass overwrite=True to replace it)")
    if self._pool is None:
      self._write_files(index, image, seg, affine, text, replace)
      return
    while len(self._pending) >= self.max_pending:
      concurrent.futures.wait(self._pending.values(),
                              return_when=concurrent.futures.FIRST_COMPLETED)
      self._reap()
    self._raise_errors()
    # Copies, so that the caller may reuse or mutate its buffers while the write is queued.
    self._pending[index] = self._pool.submit(self._write_files, index, np.array(image),
                                             np.array(seg), affine.copy(), text, replace)

  def flush(self) -> None:
    """Waits for all queued writes; re-raises the first write error."""
    self._wait()
    self._raise_errors()

  def close(self) -> None:
    """Flushes and stops the thread pool; idempotent. Re-raises the first write error."""
    if self._closed:
      return
    try:
      self.flush()
    finally:
      self._closed = True
      if self._pool is not None:
        self._pool.shutdown(wait=True)

  def cleanup(self) -> list[str]:
    """Removes what an interrupted run left: temporary files and files of incomplete samples.

    Only call it while no other process writes into the folder: their in-progress
    temporaries look the same as stray ones.

    Returns:
      The removed paths, sorted.
    """
    complete = self.done()
    removed = []
    for name in sorted(os.listdir(self.folder)):
      m = _NIFTI_VOLUME.fullmatch(name)
      if name.startswith(_TMP_PREFIX) or (m and int(m.group(1)) not in complete):
        path = os.path.join(self.folder, name)
        if os.path.isfile(path):
          os.remove(path)
          removed.append(path)
    return removed

  def _write_files(self, index, image, seg, affine, text, replace):
    img_path, seg_path, json_path = self.paths(index)
    if replace:
      # The sample stops being complete before any of its files change.
      os.remove(json_path)
    # Without a JSON, existing image/seg files are leftovers of an interrupted write.
    nifti.save_nifti(img_path, image, affine, overwrite=True)
    nifti.save_nifti(seg_path, seg, affine, overwrite=True)
    nifti.write_text_atomic(json_path, text, overwrite=self.overwrite)

  def _reap(self):
    for index, fut in list(self._pending.items()):
      if fut.done():
        del self._pending[index]
        if fut.exception() is not None:
          self._errors.append(fut.exception())

  def _wait(self):
    concurrent.futures.wait(self._pending.values())
    self._reap()

  def _raise_errors(self):
    if self._errors:
      first, self._errors = self._errors[0], []
      raise first

  def _close_after_error(self):
    # The body's exception is the one to see; a write error on top of it is only reported.
    try:
      self.close()
    except Exception as e:  # noqa: BLE001
      warnings.warn(f"NiftiWriter({self.folder!r}): a queued write also failed: {e!r}")

  def __repr__(self):
    return (f"NiftiWriter({self.folder!r}, overwrite={self.overwrite}, "
            f"max_pending={self.max_pending})")


def _nifti_seg(index, seg):
  if seg.dtype.itemsize < 8:
    return seg
  info = np.iinfo(np.int32)
  if seg.size and (seg.min() < info.min or seg.max() > info.max):
    raise ValueError(f"sample {index}: seg values [{seg.min()}, {seg.max()}] do not fit "
                     "int32, the widest integer NIfTI readers accept")
  return seg.astype(np.int32)


# ------------------------------------------------------------------------------------------
# Records

_MAGIC = b"SJXREC1\n"
_RECORD_FORMAT = "synthjax-record/1"
_ARRAYS = ("image", "seg", "affine")


def encode_record(sample: dict) -> bytes:
  """Serialises a sample to bytes: a JSON header, then the raw arrays.

  Layout: 8 magic bytes, the header length (8 bytes, little-endian), a JSON header (format,
  index, sidecar, and each array's dtype and shape), then the arrays' bytes in C order. Unlike
  `np.savez` (a zip with timestamps) the bytes depend on the sample alone, so equal samples
  give equal records.

  Args:
    sample: a sample dict (see the module docstring); dtypes are kept exactly.

  Returns:
    The record bytes; `decode_record` inverts it.

  Examples:
    >>> rec = encode_record(sample)                                    # doctest: +SKIP
    >>> decode_record(rec)["image"].dtype
    dtype('float32')
  """
  index, image, seg, affine, sidecar = _check_sample(sample)
  arrays = [np.ascontiguousarray(a) for a in (image, seg, affine)]
  header = {
      "format": _RECORD_FORMAT,
      "index": index,
      "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in zip(_ARRAYS, arrays)],
      "sidecar": sidecar,
  }
  head = _sidecar_json(index, header, separators=(",", ":")).encode()
  return b"".join([_MAGIC, len(head).to_bytes(8, "little"), head, *(a.tobytes() for a in arrays)])


def _read_header(record) -> tuple[dict, int]:
  record = memoryview(record)
  if bytes(record[:8]) != _MAGIC:
    raise ValueError(f"not a synthjax record (starts with {bytes(record[:8])!r})")
  n = int.from_bytes(record[8:16], "little")
  header = json.loads(bytes(record[16:16 + n]))
  if header.get("format") != _RECORD_FORMAT:
    raise ValueError(f"unsupported record format {header.get('format')!r}")
  return header, 16 + n


def decode_record(record: bytes) -> dict:
  """Inverse of `encode_record`.

  Args:
    record: bytes written by `encode_record`.

  Returns:
    `{"image", "seg", "affine", "index", "sidecar"}` with writable arrays of the written
    dtypes and shapes, `index` an int and `sidecar` a dict.

  Raises:
    ValueError: the bytes are not a (complete) synthjax record.

  Examples:
    >>> sample = decode_record(ArrayRecordDataSource(path)[0])         # doctest: +SKIP
  """
  header, offset = _read_header(record)
  out = {}
  for name, dtype, shape in header["arrays"]:
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    if offset + count * dtype.itemsize > len(record):
      raise ValueError(f"truncated record: {name} needs bytes up to "
                       f"{offset + count * dtype.itemsize}, record has {len(record)}")
    # The copy makes the array writable and aligned (a view of bytes is neither).
    out[name] = np.frombuffer(record, dtype, count, offset).reshape(shape).copy()
    offset += count * dtype.itemsize
  out["index"] = int(header["index"])
  out["sidecar"] = header["sidecar"]
  return out


# ------------------------------------------------------------------------------------------
# ArrayRecord shards

def shard_patterns(path):
  base = re.escape(os.path.basename(path))
  return (re.compile(base + r"\.(\d{5,})\.array_record"),
          re.compile(base + r"\.(\d{5,})\.indices\.json"),
          re.compile(base + r"\.partial-(\d{5,})"))


def _complete_shards(path) -> dict[int, str]:
  folder = os.path.dirname(os.path.abspath(path))
  pattern = shard_patterns(path)[0]
  if not os.path.isdir(folder):
    return {}
  return {int(m.group(1)): os.path.join(folder, name) for name in os.listdir(folder)
          if (m := pattern.fullmatch(name))}


def _index_path(shard_path):
  return shard_path[:-len(".array_record")] + ".indices.json"


def _shard_indices(shard_path) -> list[int]:
  """The sample indices of a complete shard, in record order."""
  from array_record.python import array_record_module
  reader = array_record_module.ArrayRecordReader(shard_path)
  try:
    n = reader.num_records()
    try:
      with open(_index_path(shard_path)) as f:
        indices = json.load(f)["indices"]
      if len(indices) == n:
        return [int(i) for i in indices]
    except (OSError, ValueError, KeyError, TypeError):
      pass
    # Slow path (index file lost or stale): read every record's header.
    return [_read_header(rec)[0]["index"] for rec in reader.read_all()]
  finally:
    reader.close()


class ArrayRecordWriter(_Writer):
  """Writes samples as records (see `encode_record`) of sharded ArrayRecord files.

  Records go to `{path}.partial-{k:05d}`; every `shard_size` samples (and on `close()`) the
  shard is closed, its sample indices saved to `{path}.{k:05d}.indices.json`, and it is
  renamed to `{path}.{k:05d}.array_record`. An interrupted run leaves its complete shards
  intact; if the `with` block (or `write_dataset`) exits with an exception, the open shard is
  discarded, so at most `shard_size - 1` samples must be regenerated. A resumed run numbers its
  shards after the existing ones. One writer per `path` at a time.

  Args:
    path: path prefix of the shards; its folder is created if missing.
    overwrite: start a new dataset: remove every shard, index and partial file of `path`
      now. Else existing shards are kept, and writing an index they hold raises
      FileExistsError.
    group_size: records per ArrayRecord chunk; 1 (Grain's preference) for fast random
      access.
    shard_size: samples per shard.

  Examples:
    >>> write_dataset(ArrayRecordWriter("out/train"), range(1000), make_sample)  # doctest: +SKIP
    >>> ds = grain.MapDataset.source(read_arrayrecord("out/train"))
  """

  def __init__(self, path, *, overwrite: bool = False, group_size: int = 1,
               shard_size: int = 64):
    if group_size < 1 or shard_size < 1:
      raise ValueError(f"group_size and shard_size must be >= 1, got {group_size}, {shard_size}")
    self.path = os.fspath(path)
    self.overwrite = bool(overwrite)
    self.group_size = int(group_size)
    self.shard_size = int(shard_size)
    self._folder = os.path.dirname(os.path.abspath(self.path))
    os.makedirs(self._folder, exist_ok=True)
    if self.overwrite:
      patterns = shard_patterns(self.path)
      for name in os.listdir(self._folder):
        if any(p.fullmatch(name) for p in patterns):
          os.remove(os.path.join(self._folder, name))
    self._done: dict[int, str] = {}  # index -> complete shard holding it
    self.done()
    shards = _complete_shards(self.path)
    self._next_shard = max(shards) + 1 if shards else 0
    self._writer = None
    self._partial = None
    self._open: list[int] = []
    self._closed = False

  def done(self) -> set[int]:
    """Returns the indices of the samples in complete shards (not those of the open shard)."""
    self._done = {i: p for _, p in sorted(_complete_shards(self.path).items())
                  for i in _shard_indices(p)}
    return set(self._done)

  def write(self, sample: dict) -> None:
    """Appends `sample` to the open shard, closing the shard when it is full.

    Raises:
      FileExistsError: the index is in a complete shard or already in the open one.
      ValueError, TypeError: a malformed sample.
    """
    if self._closed:
      raise ValueError(f"ArrayRecordWriter({self.path!r}) is closed")
    record = encode_record(sample)
    index = operator.index(sample["index"])
    if index in self._done:
      raise FileExistsError(f"{self._done[index]}: already holds sample {index} (pass "
                            "overwrite=True to the writer to start a new dataset)")
    if index in self._open:
      raise FileExistsError(f"{self._partial}: sample {index} was already written to this shard")
    if self._writer is None:
      self._open_shard()
    self._writer.write(record)
    self._open.append(index)
    if len(self._open) >= self.shard_size:
      self._close_shard()

  def close(self) -> None:
    """Completes the open shard (if any); idempotent."""
    if self._closed:
      return
    if self._writer is not None:
      self._close_shard()
    self._closed = True

  def abort(self) -> None:
    """Discards the open shard (its samples count as not written); idempotent."""
    if self._writer is not None:
      self._writer.close()
      self._writer = None
      os.remove(self._partial)
      self._open = []
    self._closed = True

  def cleanup(self) -> list[str]:
    """Removes partial shards and orphan index files left by interrupted runs.

    Returns:
      The removed paths, sorted.
    """
    _, index_re, partial_re = shard_patterns(self.path)
    shards = _complete_shards(self.path)
    removed = []
    for name in sorted(os.listdir(self._folder)):
      path = os.path.join(self._folder, name)
      m = index_re.fullmatch(name)
      if (partial_re.fullmatch(name) and path != self._partial) or (
          m and int(m.group(1)) not in shards):
        os.remove(path)
        removed.append(path)
    return removed

  def _open_shard(self):
    from array_record.python import array_record_module
    self._partial = f"{self.path}.partial-{self._next_shard:05d}"
    if os.path.exists(self._partial):
      os.remove(self._partial)  # left by a killed run
    self._writer = array_record_module.ArrayRecordWriter(self._partial,
                                                         f"group_size:{self.group_size}")
    if not self._writer.ok():
      raise OSError(f"{self._partial}: cannot open for writing")

  def _close_shard(self):
    self._writer.close()
    self._writer = None
    final = f"{self.path}.{self._next_shard:05d}.array_record"
    # Index file first: a shard with its final name then always has one.
    nifti.write_text_atomic(_index_path(final), json.dumps({"indices": self._open}),
                            overwrite=True)
    os.replace(self._partial, final)
    self._done.update((i, final) for i in self._open)
    self._open, self._partial = [], None
    self._next_shard += 1

  def _close_after_error(self):
    self.abort()

  def __repr__(self):
    return (f"ArrayRecordWriter({self.path!r}, overwrite={self.overwrite}, "
            f"group_size={self.group_size}, shard_size={self.shard_size})")


def _resolve_shards(path_or_glob) -> list[str]:
  if not isinstance(path_or_glob, (str, os.PathLike)):
    paths = [os.fspath(p) for p in path_or_glob]
    if not paths:
      raise ValueError("no ArrayRecord files given")
    return paths
  pattern = os.fspath(path_or_glob)
  if any(c in pattern for c in "*?["):
    # Partial shards and index files match broad globs but are no complete shards.
    paths = sorted(p for p in glob.glob(pattern) if p.endswith(".array_record"))
    if not paths:
      raise FileNotFoundError(f"{pattern}: matches no .array_record file")
    return paths
  if os.path.isfile(pattern):
    return [pattern]
  shards = _complete_shards(pattern)
  if not shards:
    raise FileNotFoundError(f"{pattern}: no such file and no complete shard "
                            f"{pattern}.NNNNN.array_record")
  return [shards[k] for k in sorted(shards)]


@dataclasses.dataclass(frozen=True, repr=False)
class ArrayRecordSamples:
  """A Grain random-access data source of decoded samples (see `read_arrayrecord`).

  Element `j` is the `j`-th record across the shards, in shard then write order; its
  `"index"` is the sample index it was written with. Pickles (readers reopen lazily), so it
  can be handed to Grain's worker processes.

  Attributes:
    source: the underlying `grain.sources.ArrayRecordDataSource` of raw records.
  """
  source: object

  @property
  def paths(self) -> list[str]:
    return list(self.source.paths)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, j) -> dict:
    j = operator.index(j)
    if j < 0:
      j += len(self)
    return decode_record(self.source[j])

  def __getitems__(self, js) -> list[dict]:
    return [decode_record(r) for r in self.source.__getitems__(list(js))]

  def __repr__(self):
    return f"ArrayRecordSamples({len(self)} samples in {len(self.source.paths)} shard(s))"


def read_arrayrecord(path_or_glob, *, reader_options: dict | None = None) -> ArrayRecordSamples:
  """Opens written samples as a Grain data source of decoded dicts.

  Args:
    path_or_glob: the writer's `path` prefix (all its complete shards, in shard order), a
      glob (its `.array_record` matches, sorted), one file, or a sequence of files.
    reader_options: passed to `grain.sources.ArrayRecordDataSource`.

  Returns:
    An `ArrayRecordSamples`: `len()`, `[j]` -> the sample dict of `decode_record`.

  Raises:
    FileNotFoundError: nothing matches (partial shards do not count).

  Examples:
    >>> src = read_arrayrecord("out/train")                           # doctest: +SKIP
    >>> ds = grain.MapDataset.source(src).shuffle(seed=0)
    >>> ds[0]["image"].shape
    (160, 160, 160)
  """
  import grain  # only readers pay for importing Grain
  paths = _resolve_shards(path_or_glob)
  return ArrayRecordSamples(grain.sources.ArrayRecordDataSource(paths, reader_options))


# ------------------------------------------------------------------------------------------
# Driver

def write_dataset(writer, indices: Iterable[int], make_sample: Callable[[int], dict], *,
                  progress: bool = False) -> list[int]:
  """Writes `make_sample(i)` for every `i` in `indices` that `writer.done()` lacks.

  Run it again after an interruption and it writes only the missing samples. Indices already
  complete are skipped whatever the writer's `overwrite`. Closes `writer` at the end; on an
  exception it first keeps what is safely written (queued NIfTI writes are finished, an open
  ArrayRecord shard is discarded), then re-raises.

  Args:
    writer: a `NiftiWriter`, `ArrayRecordWriter`, or any context manager with `done()` and
      `write(sample)`.
    indices: sample indices (duplicates are written once).
    make_sample: `i -> sample dict` with `sample["index"] == i`.
    progress: print a progress line to stderr.

  Returns:
    The indices written by this call, in order.

  Examples:
    >>> write_dataset(NiftiWriter("out"), range(100), make_sample)    # doctest: +SKIP
  """
  complete = writer.done()
  todo = [i for i in dict.fromkeys(operator.index(i) for i in indices) if i not in complete]
  start = time.time()
  with writer:
    for n, i in enumerate(todo):
      sample = make_sample(i)
      if operator.index(sample["index"]) != i:
        raise ValueError(f"make_sample({i}) returned a sample with index {sample['index']!r}")
      writer.write(sample)
      if progress:
        rate = (n + 1) / max(time.time() - start, 1e-9)
        eta = (len(todo) - n - 1) / rate
        print(f"\r{n + 1}/{len(todo)} samples  {rate:.2f}/s  ETA {eta:.0f}s", end="",
              file=sys.stderr, flush=True)
  if progress:
    print(file=sys.stderr)
  return todo
