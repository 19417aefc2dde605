"""What `RUN/run.json` records about where a run came from, and the checks that read it.

`provenance(label_paths)` gives the versions of the stack, the git commit of the synthjax
source and the SHA-256 of every label map; `check_labels` refuses a resume whose maps
changed; `check_record` refuses a run folder that `synthjax segment` cannot use.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from typing import Any

from synthjax._src.train.cli import UserError

# Distributions whose versions a run records (besides synthjax and jax).
PACKAGES = ("flax", "optax", "orbax-checkpoint", "grain", "numpy", "nibabel")
# The keys of run.json that `synthjax segment` reads, and the training arguments among them.
REQUIRED = ("args", "synth_config", "model", "classes", "spacing", "versions")
REQUIRED_ARGS = ("dim", "lr", "steps", "schedule", "warmup")


def sha256(path, chunk=1 << 20) -> str:
  """The hex SHA-256 of a file's bytes."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(chunk), b""):
      h.update(block)
  return h.hexdigest()


def versions() -> dict[str, Any]:
  """Versions of synthjax, jax, the `train` extra's stack, numpy, nibabel and Python
  (None for a distribution that is not installed)."""
  from importlib import metadata

  import jax

  import synthjax

  out: dict[str, str | None] = {"synthjax": synthjax.__version__, "jax": jax.__version__}
  for name in PACKAGES:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = None
  out["python"] = platform.python_version()
  return out


def _git(folder, *args):
  out = subprocess.run(
    ["git", "-C", folder, *args], capture_output=True, text=True, timeout=20, check=True
  )
  return out.stdout


def git_source():
  """`{"commit": sha, "dirty": bool}` of the synthjax source when it is a git checkout's
  `synthjax/` folder, else None (an installed wheel; no git; a site-packages that merely
  lies inside some other repository)."""
  import synthjax

  package = os.path.dirname(os.path.realpath(synthjax.__file__))
  try:
    top = _git(package, "rev-parse", "--show-toplevel").strip()
    # Only when the package is the checkout's own `synthjax/`: an installed copy inside an
    # unrelated repository would record that repository's commit.
    if os.path.realpath(os.path.join(top, "synthjax")) != package:
      return None
    commit = _git(package, "rev-parse", "HEAD").strip()
    dirty = bool(_git(top, "status", "--porcelain").strip())
  except (OSError, subprocess.SubprocessError):
    return None
  return {"commit": commit, "dirty": dirty}


def provenance(label_paths) -> dict[str, Any]:
  """The `versions`, `git` and `label_sha256` entries of run.json."""
  return {
    "versions": versions(),
    "git": git_source(),
    "label_sha256": {p: sha256(p) for p in label_paths},
  }


def check_labels(record, run_json):
  """Refuses a resume whose label maps are gone or changed since run.json was written (the
  resumed run would silently train on other maps than the checkpoint's)."""
  for path, digest in (record.get("label_sha256") or {}).items():
    if not os.path.exists(path):
      raise UserError(
        f"{path}: label map of the run is missing ({run_json}); restore it or start a new run"
      )
    if sha256(path) != digest:
      raise UserError(
        f"{path}: label map changed since the run started (its SHA-256 "
        f"differs from {run_json}); restore it or start a new run"
      )


def _major(version):
  return str(version).split(".")[0]


def check_record(record, run_json):
  """Refuses a run.json that `synthjax segment` cannot use: not an object, a missing key,
  or one written by another major version of synthjax."""
  import synthjax

  if not isinstance(record, dict):
    raise UserError(f"{run_json}: not a run record (a JSON object)")
  for key in REQUIRED:
    if key not in record:
      raise UserError(f"{run_json}: missing required key {key!r}")
  for key in REQUIRED_ARGS:
    if key not in record["args"]:
      raise UserError(f"{run_json}: missing required key 'args.{key}'")
  written = (record["versions"] or {}).get("synthjax")
  if written is None:
    raise UserError(f"{run_json}: missing required key 'versions.synthjax'")
  if _major(written) != _major(synthjax.__version__):
    raise UserError(
      f"{run_json}: written by synthjax {written}, which this synthjax "
      f"{synthjax.__version__} cannot read (another major version)"
    )


def summary(record, run_dir) -> str:
  """A run's provenance in three lines: its folder, what trained it, its classes and spacing;
  the generator (preset or config file, the config's SHA-256) and the package versions; the
  label maps it trained on, each with its SHA-256 (run.json holds them in full)."""
  git = record.get("git")
  commit = ""
  if git:
    commit = f", commit {git['commit'][:10]}{' (dirty)' if git.get('dirty') else ''}"
  spacing = " x ".join(f"{s:g}" for s in record["spacing"])
  args = record.get("args") or {}
  source = f"config {args['config']}" if args.get("config") else f"preset {args.get('preset')}"
  config = json.dumps(record["synth_config"], sort_keys=True).encode()
  versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items() if k != "synthjax")
  maps = ", ".join(
    f"{os.path.basename(p)} ({d[:12]})" for p, d in (record.get("label_sha256") or {}).items()
  )
  return (
    f"run {run_dir}: trained with synthjax {record['versions'].get('synthjax')}"
    f"{commit}; classes {record['classes']}; spacing {spacing} mm\n"
    f"  generator: {source}, config sha256 {hashlib.sha256(config).hexdigest()[:12]}; "
    f"{versions}\n"
    f"  label maps (sha256): {maps or 'not recorded'}"
  )
