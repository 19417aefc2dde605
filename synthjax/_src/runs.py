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
"""

from __future__ import annotations

import json
import os
import re
import sys

from synthjax._src import nifti
from synthjax._src.data import arrayrecord

MANIFEST = "manifest.json"
LOCK = ".synthjax-lock"
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
  return [e for e in os.listdir(folder) if not (e.startswith(nifti.TMP_PREFIX) or e == LOCK)]


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
  try:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    holder = f.read().strip() or "another process"
    f.close()
    raise FolderError(
      f"{folder}: another synthjax run is writing there ({holder}); wait for "
      "it to finish or choose another folder"
    ) from None
  f.seek(0)
  f.truncate()
  f.write(f"pid {os.getpid()}\n")
  f.flush()
  return f


def _remove(out, names):
  for name in names:
    path = os.path.join(out, name)
    if os.path.isfile(path):
      os.remove(path)


def start_run(out, manifest: dict, overwrite: bool):
  """Makes `out` ready for the run of `manifest` and records the manifest; returns the lock
  file, held until the process exits or it is closed.

  A folder is usable when it is new or empty, holds an earlier part of the same run
  (resume), or holds another run and `overwrite` is set: then exactly that run's files are
  removed (see the module docstring). Temporaries of killed runs are removed.

  Raises:
    FolderError: the folder holds something else, or another run is writing there.
  """
  manifest = json.loads(json.dumps(manifest))
  _check(out, manifest, overwrite)  # refuse before creating anything
  os.makedirs(out, exist_ok=True)
  lock = lock_folder(out)
  try:
    previous = _check(out, manifest, overwrite)  # again, now that no one else writes
    _remove(out, [e for e in os.listdir(out) if e.startswith(nifti.TMP_PREFIX)])
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
  except BaseException:
    lock.close()
    raise
  return lock
