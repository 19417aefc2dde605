"""A folder of NIfTI samples: `sample_{index:05d}_{image,seg}.nii.gz` and `_params.json`."""

from __future__ import annotations

import concurrent.futures
import os
import re
import warnings
from typing import Any

import numpy as np

from synthjax._src import nifti
from synthjax._src.data.records import check_sample, sidecar_json
from synthjax._src.data.writers import Writer
from synthjax._src.pytypes import PathLike

# Only the names the writers give (`f"sample_{i:05d}"`): five digits, or more without a
# leading zero.
_NIFTI_DONE = re.compile(r"sample_(\d{5}|[1-9]\d{5,})_params\.json")
_NIFTI_VOLUME = re.compile(r"sample_(\d{5,})_(?:image|seg)\.nii\.gz")


def complete_samples(folder: PathLike) -> set[int]:
  """Indices of the samples in `folder` whose params JSON exists under the name the writers
  give it (it is written last, so those samples are complete)."""
  return {int(m.group(1)) for name in os.listdir(folder) if (m := _NIFTI_DONE.fullmatch(name))}


class NiftiWriter(Writer):
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
    >>> def make_sample(i):
    ...   return {"image": np.zeros((4, 4, 4), np.float32), "seg": np.zeros((4, 4, 4), np.int16),
    ...           "affine": np.eye(4), "index": i, "sidecar": {"index": i}}
    >>> with NiftiWriter("out") as w:
    ...   for i in sorted(set(range(3)) - w.done()):
    ...     w.write(make_sample(i))
    >>> sorted(os.listdir("out"))[:3]
    ['sample_00000_image.nii.gz', 'sample_00000_params.json', 'sample_00000_seg.nii.gz']
    >>> sorted(NiftiWriter("out").done())   # a second run would write nothing
    [0, 1, 2]
  """

  def __init__(self, folder: PathLike, *, overwrite: bool = False, max_pending: int = 4):
    if max_pending < 0:
      raise ValueError(f"max_pending must be >= 0, got {max_pending}")
    self.folder: str = os.fspath(folder)
    self.overwrite: bool = bool(overwrite)
    self.max_pending: int = int(max_pending)
    os.makedirs(self.folder, exist_ok=True)
    self._pool = (
      concurrent.futures.ThreadPoolExecutor(self.max_pending, thread_name_prefix="synthjax-nifti")
      if self.max_pending
      else None
    )
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

  def write(self, sample: dict[str, Any]) -> None:
    """Queues `sample` for writing (see the class docstring).

    Raises:
      FileExistsError: the sample is already complete (or queued) and `overwrite` is False.
      ValueError, TypeError: a malformed sample (wrong keys, shapes or dtypes).
      OSError: an earlier queued write failed.
    """
    if self._closed:
      raise ValueError(f"NiftiWriter({self.folder!r}) is closed")
    self._raise_errors()
    index, image, seg, affine, sidecar = check_sample(sample)
    text = sidecar_json(index, sidecar, indent=1)
    seg = _nifti_seg(index, seg)
    json_path = self.paths(index)[2]
    if index in self._pending:
      if not self.overwrite:
        raise FileExistsError(
          f"{json_path}: sample {index} is already queued for writing "
          "(pass overwrite=True to replace it)"
        )
      # The later write must land last.
      concurrent.futures.wait([self._pending[index]])
      self._reap()
      self._raise_errors()
    replace = os.path.exists(json_path)
    if replace and not self.overwrite:
      raise FileExistsError(
        f"{json_path}: sample {index} exists (pass overwrite=True to replace it)"
      )
    if self._pool is None:
      self._write_files(index, image, seg, affine, text, replace)
      return
    while len(self._pending) >= self.max_pending:
      concurrent.futures.wait(
        self._pending.values(), return_when=concurrent.futures.FIRST_COMPLETED
      )
      self._reap()
    self._raise_errors()
    # Copies, so that the caller may reuse or mutate its buffers while the write is queued.
    self._pending[index] = self._pool.submit(
      self._write_files, index, np.array(image), np.array(seg), affine.copy(), text, replace
    )

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
      if name.startswith(nifti.TMP_PREFIX) or (m and int(m.group(1)) not in complete):
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
    nifti.save_nifti(img_path, nifti.nifti_layout(image), affine, overwrite=True)
    nifti.save_nifti(seg_path, seg, affine, overwrite=True)
    nifti.write_text_atomic(json_path, text, overwrite=self.overwrite)

  def _reap(self):
    for index, fut in list(self._pending.items()):
      if fut.done():
        del self._pending[index]
        exc = fut.exception()
        if exc is not None:
          self._errors.append(exc)

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
      warnings.warn(
        f"NiftiWriter({self.folder!r}): a queued write also failed: {e!r}", stacklevel=2
      )

  def __repr__(self) -> str:
    return (
      f"NiftiWriter({self.folder!r}, overwrite={self.overwrite}, max_pending={self.max_pending})"
    )


class NiftiFilesWriter(Writer):
  """A `write_dataset` writer for samples made of any set of NIfTI files (view pairs, label
  ensembles), with the same completeness rule as `NiftiWriter`: each sample's files are
  written first (each atomically) and its `sample_{index:05d}_params.json` last, so a sample
  is complete iff its JSON exists.

  A sample is `{"index": i, "files": {path: (array, affine)}, "sidecar": dict}`. Writes are
  synchronous; files of a complete sample are not written again by `write_dataset`.

  Examples:
    >>> from synthjax.data import write_dataset
    >>> def make_sample(i):
    ...   views = {f"pairs/sample_{i:05d}_view{v}_image.nii.gz": (np.zeros((4, 4, 4)), np.eye(4))
    ...            for v in (0, 1)}
    ...   return {"index": i, "files": views, "sidecar": {"index": i}}
    >>> os.makedirs("pairs", exist_ok=True)
    >>> w = NiftiFilesWriter("pairs")
    >>> write_dataset(w, range(2), make_sample)
    [0, 1]
    >>> write_dataset(w, range(3), make_sample)   # only the missing sample
    [2]
  """

  def __init__(self, folder: PathLike):
    self.folder: str = os.fspath(folder)

  def done(self) -> set[int]:
    """Returns the indices of the complete samples in the folder."""
    return complete_samples(self.folder)

  def write(self, sample: dict[str, Any]) -> None:
    """Writes the sample's files, then its params JSON (replacing existing ones)."""
    import json

    for path, (array, affine) in sample["files"].items():
      nifti.save_nifti(path, array, affine, overwrite=True)
    stem = os.path.join(self.folder, f"sample_{int(sample['index']):05d}")
    nifti.write_text_atomic(stem + "_params.json", json.dumps(sample["sidecar"]), overwrite=True)

  def close(self) -> None:
    """Nothing to flush: every write is finished when `write` returns."""

  def _close_after_error(self) -> None:
    pass

  def __repr__(self) -> str:
    return f"NiftiFilesWriter({self.folder!r})"


def _nifti_seg(index, seg):
  if seg.dtype.itemsize < 8:
    return seg
  info = np.iinfo(np.int32)
  if seg.size and (seg.min() < info.min or seg.max() > info.max):
    raise ValueError(
      f"sample {index}: seg values [{seg.min()}, {seg.max()}] do not fit "
      "int32, the widest integer NIfTI readers accept"
    )
  return seg.astype(np.int32)
