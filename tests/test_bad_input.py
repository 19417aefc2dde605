"""Bad input and faults, as a user meets them: each case checks the message, the exit status,
and that nothing is lost or left half written.

Covers: the output folder (overwrite owns only its run's files, interrupted overwrites,
foreign files, two runs at once, stale temporaries, file modes), signals (SIGTERM), label
maps whose values do not fit, and configs with nonsense values.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pytest

from synthjax._src import runs
from tests.test_cli import cli

SMALL = ["--demo", "--demo-shape", "16", "16", "16", "--demo-spacing", "12", "--quiet"]


def generate(out, *extra, n=2, seed=0, check=True):
  return cli("generate", *SMALL, "-n", str(n), "-o", str(out), "--seed", str(seed), *extra,
             check=check)


def files(folder):
  return sorted(os.listdir(folder))


def assert_no_partial(folder):
  """Every sample with a params JSON has readable volumes; no temporary remains."""
  names = files(folder)
  assert not [n for n in names if n.startswith(".tmp-")], names
  for n in names:
    if n.endswith("_params.json"):
      stem = os.path.join(folder, n[:-len("_params.json")])
      nib.load(stem + "_image.nii.gz").get_fdata()
      nib.load(stem + "_seg.nii.gz").get_fdata()


# ---------------------------------------------------------------------------------------
# The output folder


def test_overwrite_removes_only_the_replaced_runs_files(tmp_path):
  out = tmp_path / "run"
  generate(out, n=3, seed=0)
  (out / "sample_notes.txt").write_text("mine")
  (out / "sample_qc").mkdir()
  (out / "sample_qc" / "a.txt").write_text("mine too")
  (out / "sample_00099_image.nii.gz").write_text("not written by the run (index >= n)")
  (out / "sample_00000_image.nii.gz.bak").write_text("a user's backup")
  res = generate(out, "--overwrite", n=1, seed=1)
  assert "kept 4 entries that the replaced run did not write" in res.stderr
  assert (out / "sample_notes.txt").read_text() == "mine"
  assert (out / "sample_qc" / "a.txt").read_text() == "mine too"
  assert (out / "sample_00099_image.nii.gz").exists()
  assert (out / "sample_00000_image.nii.gz.bak").exists()
  # The old run's samples 1 and 2 are gone; sample 0 is the new run's.
  assert not (out / "sample_00001_params.json").exists()
  assert not (out / "sample_00002_image.nii.gz").exists()
  side = json.loads((out / "sample_00000_params.json").read_text())
  assert side["seed"] == 1
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["seed"] == 1 and "replacing" not in manifest
  assert_no_partial(out)


def test_interrupted_overwrite_finishes_before_new_samples(tmp_path):
  out = tmp_path / "run"
  generate(out, n=3, seed=0)
  old = json.loads((out / "manifest.json").read_text())
  # The state an overwrite leaves when killed halfway through its removal: the new
  # manifest recording what it replaces, and some of the old run's files still there.
  new = dict(old, seed=1, replacing=[old])
  (out / "manifest.json").write_text(json.dumps(new))
  os.remove(out / "sample_00000_params.json")
  res = generate(out, n=2, seed=1)  # the same command again, without --overwrite
  assert res.returncode == 0
  names = files(out)
  assert "sample_00002_image.nii.gz" not in names and "sample_00002_params.json" not in names
  for i in (0, 1):
    assert json.loads((out / f"sample_{i:05d}_params.json").read_text())["seed"] == 1
  assert "replacing" not in json.loads((out / "manifest.json").read_text())


def test_another_run_without_overwrite_is_refused_and_nothing_changes(tmp_path):
  out = tmp_path / "run"
  generate(out, n=1, seed=0)
  before = {n: os.stat(out / n).st_mtime_ns for n in files(out)}
  res = generate(out, n=1, seed=7, check=False)
  assert res.returncode == 2
  assert "holds a run of another command (seed differ); pass --overwrite" in res.stderr
  assert {n: os.stat(out / n).st_mtime_ns for n in files(out)} == before


def test_folder_of_other_files_is_refused_and_not_touched(tmp_path):
  out = tmp_path / "mine"
  out.mkdir()
  (out / "sample_notes.txt").write_text("x")
  for extra in ((), ("--overwrite",)):
    res = generate(out, *extra, check=False)
    assert res.returncode == 2 and "holds no synthjax run" in res.stderr
    assert files(out) == ["sample_notes.txt"]


def test_output_path_that_is_a_file_is_refused(tmp_path):
  (tmp_path / "f").write_text("x")
  res = generate(tmp_path / "f", check=False)
  assert res.returncode == 2 and "exists and is not a folder" in res.stderr
  assert (tmp_path / "f").read_text() == "x"


def test_unreadable_manifest_is_named(tmp_path):
  out = tmp_path / "run"
  out.mkdir()
  (out / "manifest.json").write_text("{not json")
  res = generate(out, check=False)
  assert res.returncode == 2 and "manifest.json: unreadable manifest" in res.stderr
  (out / "manifest.json").write_text("[1, 2]")
  res = generate(out, check=False)
  assert res.returncode == 2 and "not an object" in res.stderr


def test_manifest_of_an_unknown_command_is_not_overwritten_blindly(tmp_path):
  out = tmp_path / "run"
  out.mkdir()
  (out / "manifest.json").write_text(json.dumps({"format": "x", "command": "future"}))
  (out / "sample_00000_image.nii.gz").write_text("?")
  res = generate(out, "--overwrite", check=False)
  assert res.returncode == 2 and "unknown command 'future'" in res.stderr
  assert (out / "sample_00000_image.nii.gz").read_text() == "?"


def test_second_run_into_a_held_folder_is_refused(tmp_path):
  out = tmp_path / "run"
  generate(out, n=1)
  lock = runs.lock_folder(str(out))  # as another process writing there holds it
  try:
    res = generate(out, n=2, check=False)
    assert res.returncode == 2
    assert "another synthjax run is writing there" in res.stderr and f"pid {os.getpid()}" in res.stderr
    assert not (out / "sample_00001_params.json").exists()
  finally:
    lock.close()
  generate(out, n=2)  # released: the run resumes
  assert (out / "sample_00001_params.json").exists()


def test_stale_temporaries_of_killed_runs_are_removed(tmp_path):
  out = tmp_path / "run"
  generate(out, n=1)
  (out / ".tmp-abc123.nii.gz").write_bytes(b"half a file")
  (out / ".tmp-xyz").write_text("{")
  generate(out, n=2)
  assert not [n for n in files(out) if n.startswith(".tmp-")]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_mode_open_would_give(tmp_path, umask):
  from synthjax._src import nifti
  old = os.umask(umask)
  nifti._umask_value = None  # read again (it is read once per process)
  try:
    out = tmp_path / "run"
    generate(out, n=1)
    plain = tmp_path / "plain"
    plain.write_text("x")
    want = stat.S_IMODE(os.stat(plain).st_mode)
    assert want == 0o666 & ~umask
    for name in ("manifest.json", "sample_00000_image.nii.gz", "sample_00000_seg.nii.gz",
                 "sample_00000_params.json"):
      assert stat.S_IMODE(os.stat(out / name).st_mode) == want, name
  finally:
    os.umask(old)
    nifti._umask_value = None


def test_arrayrecord_overwrite_keeps_foreign_files(tmp_path):
  out = tmp_path / "run"
  generate(out, "--format", "arrayrecord", n=2)
  (out / "samples.notes").write_text("mine")
  generate(out, "--format", "arrayrecord", "--overwrite", n=1, seed=3)
  assert (out / "samples.notes").read_text() == "mine"
  from synthjax import data
  records = data.read_arrayrecord(str(out / "samples"))
  assert len(records) == 1 and records[0]["sidecar"]["seed"] == 3


# ---------------------------------------------------------------------------------------
# Signals


def test_sigterm_is_a_clean_stop_and_the_run_resumes(tmp_path):
  out = tmp_path / "run"
  args = [sys.executable, "-m", "synthjax.cli", "generate", *SMALL, "-n", "200", "-o",
          str(out), "--seed", "4", "--workers", "1"]
  proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
  deadline = time.time() + 120
  while time.time() < deadline and not (out / "sample_00001_params.json").exists():
    time.sleep(0.02)
  proc.send_signal(signal.SIGTERM)  # how SLURM, Docker and Kubernetes stop a job
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 143, err
  assert "terminated (SIGTERM)" in err and "Traceback" not in err
  assert_no_partial(out)
  done = len([n for n in files(out) if n.endswith("_params.json")])
  assert 2 <= done < 200
  res = generate(out, n=done + 2, seed=4)
  assert "wrote 2 samples" in res.stdout


# ---------------------------------------------------------------------------------------
# Label maps and configs


def _save(path, data):
  nib.save(nib.Nifti1Image(data, np.eye(4), dtype=data.dtype), str(path))
  return str(path)


@pytest.mark.parametrize("dtype,value", [(np.int64, 2 ** 32 + 1), (np.uint32, 2 ** 31),
                                         (np.float64, 3e9), (np.int64, -(2 ** 31) - 1)])
def test_label_values_beyond_int32_are_refused_not_wrapped(tmp_path, dtype, value):
  from synthjax._src import nifti
  data = np.zeros((8, 8, 8), dtype)
  data[2:4, 2:4, 2:4] = 1
  data[5, 5, 5] = value
  path = _save(tmp_path / "big.nii.gz", data)
  with pytest.raises(ValueError, match=r"big\.nii\.gz: label value\(s\) outside the int32 range"):
    nifti.load_label_map(path)
  res = cli("generate", path, "-n", "1", "-o", str(tmp_path / "out"), "--quiet", check=False)
  assert res.returncode == 2 and "int32 range" in res.stderr
  assert not (tmp_path / "out").exists()


def test_label_values_at_the_int32_limits_load_exactly(tmp_path):
  from synthjax._src import nifti
  data = np.zeros((4, 4, 4), np.int64)
  data[0, 0, 0], data[1, 1, 1] = 2 ** 31 - 1, -(2 ** 31)
  labels, _, _ = nifti.load_label_map(_save(tmp_path / "edge.nii.gz", data))
  assert labels[0, 0, 0] == 2 ** 31 - 1 and labels[1, 1, 1] == -(2 ** 31)
