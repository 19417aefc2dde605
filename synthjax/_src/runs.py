"""A CLI run's output folder: its manifest, its lock, and exactly the files it owns.

A run records `manifest.json` before writing any sample. The manifest says which command
wrote the folder, with which seed, config, sources and output format, and how many samples
it asked for; from that, `run_files` finds exactly the files the run wrote, by their full
names. `--overwrite` removes those files and nothing else: a user's `sample_notes.txt` or
`sample_qc/` stays, with a warning. The removal is recorded in the manifest first
(`"replacing"`), so an overwrite that is interrupted finishes on the next run before any new
sample is written.

One run at a time holds a folder (an exclusive `flock` on `.synthjax-lock`); a second run is
refused with a message, and the holder may remove temporaries (`.tmp-*`) left by killed runs.

The shards of one run (`generate --shard I/N`: the samples `j` with `j % N == I`) write into
the same folder side by side. Each holds its own shard's lock (`.synthjax-lock-shard-I-of-N`)
exclusively and the folder's lock shared, so two processes of the same shard, shards of two
different splits, or a whole run and a shard never write at once. The first shard to start
sets the folder up as a whole run does; one that starts while others write only checks that
the folder holds the same run, and leaves their temporaries alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from typing import Any

from synthjax._src import nifti
from synthjax._src.data import arrayrecord

MANIFEST = "manifest.json"
LOCK = ".synthjax-lock"
# How long a starting shard waits for the folder's lock (held while a shard sets it up).
SHARD_START_WAIT_S = 30.0
# What the lock file says while a shard sets the folder up: the others wait for it.
_SETTING_UP = "a shard setting the folder up"
_SHARD_LOCK = re.compile(re.escape(LOCK) + r"-shard-(\d+)-of-(\d+)")
RUN_FORMAT = "synthjax-run/1"
# Two manifests describe the same run (which may resume) when these agree.
SAME_RUN_KEYS = ("format", "seed", "config", "sources", "output_format")

# The files of sample i are f"sample_{i:05d}{suffix}"; the params JSON is written last and
# removed first, so a sample is complete exactly when its JSON exists.
_SUFFIXES = {
  "generate": ("_image.nii.gz", "_seg.nii.gz"),
  "views": (
    "_view0_image.nii.gz",
    "_view1_image.nii.gz",
    "_seg.nii.gz",
    "_view0_seg.nii.gz",
    "_view1_seg.nii.gz",
  ),
  "ensemble": ("_labels.nii.gz",),
}
_PARAMS = "_params.json"
_SAMPLE = re.compile(r"sample_(\d{5,})(_.+)")
ARRAYRECORD_PREFIX = "samples"


class FolderError(Exception):
  """The output folder cannot be used as asked (printed as one line by the CLI)."""


def _warn(text):
  print(f"synthjax: warning: {text}", file=sys.stderr)


def run_files(folder, manifest: dict) -> list[str]:
  """The names of the files in `folder` that the run of `manifest` wrote, params JSONs first.

  Raises:
    FolderError: the manifest names a command or output format this version does not know.
  """
  command, fmt = manifest.get("command"), manifest.get("output_format")
  names = [n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n))]
  if command == "generate" and fmt == "arrayrecord":
    patterns = arrayrecord.shard_patterns(os.path.join(folder, ARRAYRECORD_PREFIX))
    return sorted(n for n in names if any(p.fullmatch(n) for p in patterns))
  if command not in _SUFFIXES:
    raise FolderError(
      f"{os.path.join(folder, MANIFEST)}: a run of an unknown command "
      f"{command!r} (output format {fmt!r}); remove its files yourself or "
      "choose another folder"
    )
  n = manifest.get("n")
  suffixes = set(_SUFFIXES[command]) | {_PARAMS}
  owned = []
  for name in names:
    m = _SAMPLE.fullmatch(name)
    if m and m.group(2) in suffixes:
      i = int(m.group(1))
      if f"sample_{i:05d}" == name[: -len(m.group(2))] and (n is None or i < int(n)):
        owned.append(name)
  return sorted(owned, key=lambda s: (not s.endswith(_PARAMS), s))


def _read_manifest(folder):
  path = os.path.join(folder, MANIFEST)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      manifest = json.load(f)
    if not isinstance(manifest, dict):
      raise ValueError(f"a JSON {type(manifest).__name__}, not an object")
  except (OSError, ValueError) as e:
    raise FolderError(f"{path}: unreadable manifest ({e})") from e
  return manifest


def _write_manifest(folder, manifest):
  nifti.write_text_atomic(
    os.path.join(folder, MANIFEST), json.dumps(manifest, indent=1), overwrite=True
  )


def _user_entries(folder):
  return [
    e
    for e in os.listdir(folder)
    if not (e.startswith(nifti.TMP_PREFIX) or e == LOCK or _SHARD_LOCK.fullmatch(e))
  ]


def _check(out, manifest, overwrite):
  """Returns the previous manifest that this run must replace, `{}` to resume or start in
  an empty folder, or raises FolderError."""
  if not os.path.isdir(out):
    if os.path.exists(out):
      raise FolderError(f"{out}: exists and is not a folder")
    return {}
  previous = _read_manifest(out)
  if previous is None:
    if _user_entries(out):
      raise FolderError(
        f"{out}: folder is not empty and holds no synthjax run ({MANIFEST}); "
        "choose an empty or new folder"
      )
    return {}
  same = {k: previous.get(k) == manifest.get(k) for k in SAME_RUN_KEYS}
  if all(same.values()):
    return {}
  if not overwrite:
    differs = ", ".join(k for k, v in same.items() if not v)
    raise FolderError(
      f"{out}: holds a run of another command ({differs} differ); pass "
      "--overwrite to replace it, or choose another folder"
    )
  return previous


def lock_folder(folder):
  """Takes the folder's run lock; returns the open lock file (keep it open for the run).

  Raises:
    FolderError: another process holds it.
  """
  import fcntl

  f = open(os.path.join(folder, LOCK), "a+")  # noqa: SIM115 - returned open: it holds the lock
  if not _try_flock(f, fcntl.LOCK_EX):
    error = _busy(folder, f)
    f.close()
    raise error
  _say(f, f"pid {os.getpid()}")
  return f


def _try_flock(f, mode):
  import fcntl

  try:
    fcntl.flock(f.fileno(), mode | fcntl.LOCK_NB)
  except BlockingIOError:
    return False
  return True


def _say(lock_file, text):
  """Writes who holds the folder's lock into its file (read by the processes refused)."""
  lock_file.seek(0)
  lock_file.truncate()
  lock_file.write(text + "\n")
  lock_file.flush()


def _holder(lock_file):
  lock_file.seek(0)
  return lock_file.read().strip() or "another process"


def _busy(folder, lock_file):
  """The refusal of a run that finds the folder's lock held, naming its holder."""
  return FolderError(
    f"{folder}: another synthjax run is writing there ({_holder(lock_file)}); wait for it "
    "to finish or choose another folder"
  )


def _remove(out, names):
  for name in names:
    path = os.path.join(out, name)
    if os.path.isfile(path):
      os.remove(path)


def _lock_shard(folder, shard):
  """Takes shard `(i, n)`'s own lock, refusing while shards of another split write."""
  import fcntl

  i, n = shard
  f = open(os.path.join(folder, f"{LOCK}-shard-{i}-of-{n}"), "a+")  # noqa: SIM115 - returned open: it holds the lock
  if not _try_flock(f, fcntl.LOCK_EX):
    f.close()
    raise FolderError(
      f"{folder}: shard {i}/{n} of this run is already being written by another process"
    )
  for name in os.listdir(folder):
    m = _SHARD_LOCK.fullmatch(name)
    if m and int(m.group(2)) != n:
      with open(os.path.join(folder, name), "a+") as other:
        if not _try_flock(other, fcntl.LOCK_SH):
          f.close()
          raise FolderError(
            f"{folder}: shards of a split into {m.group(2)} are writing there; give every "
            f"process the same --shard count (here {n}), or wait for them to finish"
          )
  return f


class _Locks:
  """Open lock files, released together by `close()`."""

  def __init__(self, *files):
    self.files = files

  def close(self):
    for f in self.files:
      f.close()


def start_run(out, manifest: dict, overwrite: bool, *, shard: tuple[int, int] | None = None):
  """Makes `out` ready for the run of `manifest` and records the manifest; returns the lock,
  held until the process exits or its `close()` is called.

  A folder is usable when it is new or empty, holds an earlier part of the same run
  (resume), or holds another run and `overwrite` is set: then exactly that run's files are
  removed (see the module docstring). Temporaries of killed runs are removed.

  Args:
    out: the run folder.
    manifest: what the run is (`SAME_RUN_KEYS` decide whether it resumes).
    overwrite: replace a run of another command, seed, config, sources or format.
    shard: `(i, n)`: this process writes shard `i` of `n` of the run, alongside the other
      shards (see the module docstring); `None`: the whole run, alone.

  Raises:
    FolderError: the folder holds something else, or another run is writing there.
  """
  import fcntl

  manifest = json.loads(json.dumps(manifest))
  _check(out, manifest, overwrite)  # refuse before creating anything
  os.makedirs(out, exist_ok=True)
  if shard is None:
    lock = lock_folder(out)
    try:
      _set_up(out, manifest, overwrite)
    except BaseException:
      lock.close()
      raise
    return lock
  shard_lock = _lock_shard(out, shard)
  folder_lock = open(os.path.join(out, LOCK), "a+")  # noqa: SIM115 - returned open: it holds the lock
  locks = _Locks(folder_lock, shard_lock)
  try:
    # Shards started together (an array job) wait while the first sets the folder up, as
    # long as it takes (an --overwrite may remove many files); a whole run's lock, or a
    # holder that says nothing, for SHARD_START_WAIT_S.
    deadline = time.monotonic() + SHARD_START_WAIT_S
    while True:
      if _try_flock(folder_lock, fcntl.LOCK_EX):  # no other shard writes: set the folder up
        _say(folder_lock, f"{_SETTING_UP} (pid {os.getpid()})")
        _set_up(out, manifest, overwrite)
        _say(folder_lock, "shards of a run (--shard)")
        # Not atomic (flock(2)): a shard waiting meanwhile may take the folder; then retry.
        if _try_flock(folder_lock, fcntl.LOCK_SH):
          return locks
        continue
      if _try_flock(folder_lock, fcntl.LOCK_SH):  # other shards write: join them
        _join(out, manifest, overwrite)
        return locks
      if time.monotonic() > deadline and not _holder(folder_lock).startswith(_SETTING_UP):
        raise _busy(out, folder_lock)
      time.sleep(0.1)
  except BaseException:
    locks.close()
    raise


def _join(out, manifest, overwrite):
  """Checks, without writing, that a folder other shards are writing holds `manifest`'s run."""
  if _check(out, manifest, overwrite):
    raise FolderError(
      f"{out}: other shards are writing there; --overwrite needs the folder to itself"
    )
  current = _read_manifest(out) or {}
  if isinstance(manifest.get("n"), int) and manifest["n"] > int(current.get("n", 0)):
    raise FolderError(
      f"{out}: its other shards write {current.get('n')} samples; give every shard the "
      f"same -n (here {manifest['n']}), or wait for them to finish"
    )


def _set_up(out, manifest, overwrite):
  """`start_run`'s work under the folder's exclusive lock."""
  previous = _check(out, manifest, overwrite)  # again, now that no one else writes
  stale = arrayrecord.shard_patterns(os.path.join(out, ARRAYRECORD_PREFIX))[2]
  _remove(out, [e for e in os.listdir(out) if e.startswith(nifti.TMP_PREFIX) or stale.fullmatch(e)])
  current = _read_manifest(out) or {}
  if not previous and isinstance(current.get("n"), int) and isinstance(manifest.get("n"), int):
    # Resuming with a smaller -n keeps the larger count: the run owns those files too.
    manifest["n"] = max(manifest["n"], current["n"])
  replacing = list(current.get("replacing", []))
  if previous:
    replacing.append({k: v for k, v in previous.items() if k != "replacing"})
  if replacing:
    _write_manifest(out, dict(manifest, replacing=replacing))
    owned = set()
    for old in replacing:
      names = run_files(out, old)
      owned.update(names)
      _remove(out, names)
    kept = sorted(set(_user_entries(out)) - owned - {MANIFEST})
    if kept:
      _warn(
        f"{out}: kept {len(kept)} entr{'y' if len(kept) == 1 else 'ies'} that the "
        f"replaced run did not write: {', '.join(kept[:5])}" + (", ..." if len(kept) > 5 else "")
      )
  _write_manifest(out, manifest)


@dataclasses.dataclass(frozen=True)
class RunStatus:
  """How complete a run folder is (`check_run`).

  Attributes:
    folder: the run folder.
    command: the command that wrote it (`generate`, `views`, `ensemble`).
    output_format: its output format.
    n: the number of samples checked for (`0..n-1`).
    complete: how many of them are complete.
    missing: the indices in `0..n-1` with no complete sample.
    duplicated: indices stored more than once (ArrayRecord only).
  """

  folder: str
  command: str
  output_format: str
  n: int
  complete: int
  missing: tuple[int, ...]
  duplicated: tuple[int, ...] = ()

  @property
  def is_complete(self) -> bool:
    return not self.missing and not self.duplicated

  def describe(self) -> str:
    """One line: the folder, the run, and what is missing."""

    def some(indices):
      shown = ", ".join(str(i) for i in indices[:10])
      return shown + (f", ... ({len(indices)} in all)" if len(indices) > 10 else "")

    head = f"{self.folder}: {self.command} run ({self.output_format}), "
    if self.is_complete:
      return head + f"all {self.n} samples complete"
    text = head + f"{self.complete} of {self.n} samples complete"
    if self.missing:
      text += f"; missing: {some(self.missing)}"
    if self.duplicated:
      text += f"; stored more than once: {some(self.duplicated)}"
    return text


def check_run(
  folder: str | os.PathLike[str], manifest: dict[str, Any] | None = None, *, n: int | None = None
) -> RunStatus:
  """Reports which samples of the run in `folder` are complete, e.g. after its shards ran.

  Args:
    folder: a run folder written by `generate`, `generate_views` or `generate_ensembles`.
    manifest: the run expected there (e.g. `datasets.generate_manifest` of the command's
      arguments); None accepts the folder's own.
    n: check samples `0..n-1`; default: the folder manifest's count.

  Returns:
    A `RunStatus`.

  Raises:
    FolderError: `folder` holds no run, another run than `manifest`, or an unfinished
      `--overwrite`.
  """
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise FolderError(f"{folder}: no such folder")
  current = _read_manifest(folder)
  if current is None:
    raise FolderError(f"{folder}: holds no synthjax run ({MANIFEST})")
  if manifest is not None:
    expected = json.loads(json.dumps(manifest))
    differs = [k for k in SAME_RUN_KEYS if current.get(k) != expected.get(k)]
    if differs:
      raise FolderError(f"{folder}: holds another run ({', '.join(differs)} differ)")
  if current.get("replacing"):
    raise FolderError(f"{folder}: an --overwrite was interrupted; run the command again")
  command, fmt = str(current.get("command")), str(current.get("output_format"))
  if command not in _SUFFIXES:
    raise FolderError(f"{os.path.join(folder, MANIFEST)}: a run of an unknown command {command!r}")
  if n is None and not isinstance(current.get("n"), int):
    raise FolderError(f"{os.path.join(folder, MANIFEST)}: records no sample count 'n'")
  total = int(current["n"]) if n is None else int(n)
  if command == "generate" and fmt == "arrayrecord":
    stored = arrayrecord.written_indices(os.path.join(folder, ARRAYRECORD_PREFIX))
  else:
    from synthjax._src.data import nifti_folder

    stored = sorted(nifti_folder.complete_samples(folder))
  seen, duplicated = set(), set()
  for i in stored:
    (duplicated if i in seen else seen).add(i)
  missing = tuple(i for i in range(total) if i not in seen)
  return RunStatus(
    folder, command, fmt, total, total - len(missing), missing, tuple(sorted(duplicated))
  )
