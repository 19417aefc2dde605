"""Writing generated samples: the writers' shared plumbing and the resumable driver.

Two writers store samples (see `records` for what a sample holds): `nifti_folder.NiftiWriter`
(a NIfTI folder) and `arrayrecord.ArrayRecordWriter` (sharded ArrayRecord files). Both are
atomic and resumable. A NIfTI sample is complete iff its params JSON exists (written last,
by rename); an ArrayRecord shard is complete iff it has its final name (given by rename once
the shard is closed). `done()` returns the complete indices, so

    write_dataset(NiftiWriter(folder), range(n), make_sample)

run again after an interruption writes only the missing samples.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Collection, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from synthjax._src import stops

if TYPE_CHECKING:
  from typing import Self


class SampleWriter(Protocol):
  """What `write_dataset` needs of a writer: a context manager with `done()` and `write()`."""

  def done(self) -> Collection[int]:
    """The indices of the samples already complete."""
    ...

  def write(self, sample: dict[str, Any]) -> None:
    """Stores one sample."""
    ...

  def __enter__(self) -> Any: ...

  def __exit__(
    self,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
  ) -> bool | None: ...


class Writer:
  """Context-manager plumbing shared by the writers.

  A subclass defines `close()` (finish and keep every write) and `_close_after_error()` (keep
  what is safely written, discard the rest); leaving the `with` block calls one of them.
  """

  def __enter__(self) -> Self:
    return self

  def __exit__(
    self,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
  ) -> bool:
    if exc_type is None:
      self.close()
    else:
      self._close_after_error()
    return False

  def close(self) -> None:
    """Finishes every write and keeps it (called on leaving the `with` block normally)."""
    raise NotImplementedError

  def _close_after_error(self) -> None:
    raise NotImplementedError


def write_dataset(
  writer: SampleWriter,
  indices: Iterable[int],
  make_sample: Callable[[int], dict[str, Any]],
  *,
  progress: bool = False,
) -> list[int]:
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
    >>> import numpy as np
    >>> from synthjax.data import NiftiWriter
    >>> def make_sample(i):
    ...   return {"image": np.zeros((4, 4, 4), np.float32), "seg": np.zeros((4, 4, 4), np.int16),
    ...           "affine": np.eye(4), "index": i, "sidecar": {}}
    >>> write_dataset(NiftiWriter("out"), range(3), make_sample)
    [0, 1, 2]
    >>> write_dataset(NiftiWriter("out"), range(4), make_sample)   # after an interruption
    [3]
  """
  from tqdm import tqdm

  complete = writer.done()
  todo = [i for i in dict.fromkeys(operator.index(i) for i in indices) if i not in complete]
  with (
    writer,
    tqdm(
      total=len(todo), unit="sample", file=sys.stderr, disable=not progress, dynamic_ncols=True
    ) as bar,
  ):
    for i in todo:
      stops.check()
      sample = make_sample(i)
      if operator.index(sample["index"]) != i:
        raise ValueError(f"make_sample({i}) returned a sample with index {sample['index']!r}")
      writer.write(sample)
      bar.update(1)
  return todo
