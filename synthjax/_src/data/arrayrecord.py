"""Sharded ArrayRecord files of sample records: the writer and the Grain data source."""

from __future__ import annotations

import dataclasses
import glob
import json
import operator
import os
import re
from collections.abc import Sequence
from typing import Any

from synthjax._src import nifti
from synthjax._src.data.records import decode_record, encode_record, read_header
from synthjax._src.data.writers import Writer
from synthjax._src.pytypes import PathLike


def shard_patterns(path: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
  base = re.escape(os.path.basename(path))
  return (
    re.compile(base + r"\.(\d{5,})\.array_record"),
    re.compile(base + r"\.(\d{5,})\.indices\.json"),
    re.compile(base + r"\.partial-(\d{5,})"),
  )


def _complete_shards(path) -> dict[int, str]:
  folder = os.path.dirname(os.path.abspath(path))
  pattern = shard_patterns(path)[0]
  if not os.path.isdir(folder):
    return {}
  return {
    int(m.group(1)): os.path.join(folder, name)
    for name in os.listdir(folder)
    if (m := pattern.fullmatch(name))
  }


def _index_path(shard_path):
  return shard_path[: -len(".array_record")] + ".indices.json"


def _shard_indices(shard_path) -> list[int]:
  """The sample indices of a complete shard, in record order."""
  from array_record.python import array_record_module  # pyright: ignore[reportAttributeAccessIssue]

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
    return [read_header(rec)[0]["index"] for rec in reader.read_all()]
  finally:
    reader.close()


def written_indices(path: PathLike) -> list[int]:
  """The sample indices in the complete shards of prefix `path`, in shard then record order
  (an index written twice appears twice)."""
  shards = _complete_shards(os.fspath(path))
  return [i for k in sorted(shards) for i in _shard_indices(shards[k])]


class ArrayRecordWriter(Writer):
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
    file_numbers: `(i, n)`: number this writer's shards `k` with `k % n == i`, after the
      existing ones, so that `n` writers with distinct `i` can fill one prefix side by side
      (the processes of `synthjax generate --shard`).

  Examples:
    >>> import grain, numpy as np
    >>> from synthjax.data import write_dataset
    >>> def make_sample(i):
    ...   return {"image": np.full((4, 4, 4), i, np.float32), "seg": np.zeros((4, 4, 4), np.int16),
    ...           "affine": np.eye(4), "index": i, "sidecar": {}}
    >>> write_dataset(ArrayRecordWriter("out/train", shard_size=4), range(6), make_sample)
    [0, 1, 2, 3, 4, 5]
    >>> ds = grain.MapDataset.source(read_arrayrecord("out/train"))
    >>> len(ds), float(ds[5]["image"][0, 0, 0])
    (6, 5.0)
  """

  def __init__(
    self,
    path: PathLike,
    *,
    overwrite: bool = False,
    group_size: int = 1,
    shard_size: int = 64,
    file_numbers: tuple[int, int] = (0, 1),
  ) -> None:
    if group_size < 1 or shard_size < 1:
      raise ValueError(f"group_size and shard_size must be >= 1, got {group_size}, {shard_size}")
    offset, step = (operator.index(v) for v in file_numbers)
    if not 0 <= offset < step:
      raise ValueError(f"file_numbers must be (i, n) with 0 <= i < n, got {file_numbers}")
    self.file_numbers: tuple[int, int] = (offset, step)
    self.path: str = os.fspath(path)
    self.overwrite: bool = bool(overwrite)
    self.group_size: int = int(group_size)
    self.shard_size: int = int(shard_size)
    self._folder = os.path.dirname(os.path.abspath(self.path))
    os.makedirs(self._folder, exist_ok=True)
    if self.overwrite:
      patterns = shard_patterns(self.path)
      for name in os.listdir(self._folder):
        if any(p.fullmatch(name) for p in patterns):
          os.remove(os.path.join(self._folder, name))
    self._done: dict[int, str] = {}  # index -> complete shard holding it
    self.done()
    first = max(_complete_shards(self.path), default=-1) + 1
    self._next_shard = first + (offset - first) % step
    self._writer = None
    self._partial = None
    self._open: list[int] = []
    self._closed = False

  def done(self) -> set[int]:
    """Returns the indices of the samples in complete shards (not those of the open shard)."""
    self._done = {
      i: p for _, p in sorted(_complete_shards(self.path).items()) for i in _shard_indices(p)
    }
    return set(self._done)

  def write(self, sample: dict[str, Any]) -> None:
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
      raise FileExistsError(
        f"{self._done[index]}: already holds sample {index} (pass "
        "overwrite=True to the writer to start a new dataset)"
      )
    if index in self._open:
      raise FileExistsError(f"{self._partial}: sample {index} was already written to this shard")
    writer = self._writer if self._writer is not None else self._open_shard()
    writer.write(record)
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
    if self._writer is not None and self._partial is not None:
      self._writer.close()
      self._writer = None
      os.remove(self._partial)
      self._open = []
    self._closed = True

  def cleanup(self) -> list[str]:
    """Removes partial shards and orphan index files left by interrupted runs.

    Call it only while no other writer fills the same prefix: their open shards are partial.

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
        m and int(m.group(1)) not in shards
      ):
        os.remove(path)
        removed.append(path)
    return removed

  def _open_shard(self) -> Any:
    from array_record.python import array_record_module  # pyright: ignore[reportAttributeAccessIssue]

    self._partial = f"{self.path}.partial-{self._next_shard:05d}"
    if os.path.exists(self._partial):
      os.remove(self._partial)  # left by a killed run
    self._writer = array_record_module.ArrayRecordWriter(
      self._partial, f"group_size:{self.group_size}"
    )
    if not self._writer.ok():
      raise OSError(f"{self._partial}: cannot open for writing")
    return self._writer

  def _close_shard(self):
    # Called with a shard open: both are set together by _open_shard.
    assert self._writer is not None and self._partial is not None
    self._writer.close()
    self._writer = None
    final = f"{self.path}.{self._next_shard:05d}.array_record"
    # Index file first: a shard with its final name then always has one.
    nifti.write_text_atomic(_index_path(final), json.dumps({"indices": self._open}), overwrite=True)
    os.replace(self._partial, final)
    self._done.update((i, final) for i in self._open)
    self._open, self._partial = [], None
    self._next_shard += self.file_numbers[1]

  def _close_after_error(self) -> None:
    self.abort()

  def __repr__(self) -> str:
    return (
      f"ArrayRecordWriter({self.path!r}, overwrite={self.overwrite}, "
      f"group_size={self.group_size}, shard_size={self.shard_size}, "
      f"file_numbers={self.file_numbers})"
    )


def _resolve_shards(path_or_glob: PathLike | Sequence[PathLike]) -> list[str]:
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
    raise FileNotFoundError(
      f"{pattern}: no such file and no complete shard {pattern}.NNNNN.array_record"
    )
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

  # Any: type checkers see neither the length nor `__getitems__` of Grain's class.
  source: Any

  @property
  def paths(self) -> list[str]:
    return list(self.source.paths)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, j: int) -> dict[str, Any]:
    j = operator.index(j)
    if j < 0:
      j += len(self)
    if not 0 <= j < len(self):  # IndexError, as a sequence gives: `for r in samples` ends
      raise IndexError(f"sample {j} out of range for {self!r}")
    return decode_record(self.source[j])

  def __getitems__(self, js: Sequence[int]) -> list[dict[str, Any]]:
    return [decode_record(r) for r in self.source.__getitems__(list(js))]

  def __repr__(self) -> str:
    return f"ArrayRecordSamples({len(self)} samples in {len(self.source.paths)} shard(s))"


def read_arrayrecord(
  path_or_glob: PathLike | Sequence[PathLike], *, reader_options: dict[str, Any] | None = None
) -> ArrayRecordSamples:
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
    >>> import grain, numpy as np
    >>> from synthjax.data import write_dataset
    >>> def make_sample(i):
    ...   return {"image": np.zeros((8, 8, 8), np.float32), "seg": np.zeros((8, 8, 8), np.int16),
    ...           "affine": np.eye(4), "index": i, "sidecar": {}}
    >>> write_dataset(ArrayRecordWriter("out/val"), range(3), make_sample)
    [0, 1, 2]
    >>> src = read_arrayrecord("out/val")
    >>> ds = grain.MapDataset.source(src).shuffle(seed=0)
    >>> ds[0]["image"].shape
    (8, 8, 8)
  """
  import grain  # only readers pay for importing Grain

  paths = _resolve_shards(path_or_glob)
  return ArrayRecordSamples(grain.sources.ArrayRecordDataSource(paths, reader_options))
