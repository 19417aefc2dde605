"""One run written as shards (`generate --shard I/N`) by several processes into one folder.

The reference is the same run written whole by one process: every sample's files must be
the same bytes, whatever the split. The folder locks are checked by holding them in this
process (an `flock` is per open file, so a second open here conflicts as another process
would).
"""

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from synthjax import cli, data, datasets
from synthjax._src import runs

SHAPE, SPACING = (16, 16, 16), 8.0
DEMO = ["--demo", "--demo-shape", "16", "16", "16", "--demo-spacing", "8", "--quiet"]
N = 5


@pytest.fixture(scope="module")
def demo():
  sources, spacing = datasets.demo_sources(SHAPE, SPACING)
  config = datasets.preset_config("synthseg", datasets.label_values(sources), SHAPE, spacing)
  return sources, config


@pytest.fixture(scope="module")
def whole(demo, tmp_path_factory):
  """The run of N samples, seed 4, written by one process."""
  out = tmp_path_factory.mktemp("whole")
  sources, config = demo
  assert datasets.generate(out, sources, config, n=N, seed=4) == list(range(N))
  return out


def _sample_files(folder):
  return sorted(n for n in os.listdir(folder) if n.startswith("sample_"))


def _same_bytes(a, b):
  names = _sample_files(a)
  assert names == _sample_files(b)
  for name in names:
    assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _cli(*args):
  return cli.main(list(args))


def test_two_shard_processes_write_the_bytes_of_one_run(whole, tmp_path):
  out = tmp_path / "split"
  procs = [
    subprocess.Popen(
      [sys.executable, "-m", "synthjax.cli", "generate", *DEMO, "-n", str(N), "-o", str(out)]
      + ["--seed", "4", "--shard", f"{i}/2"],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=300) for p in procs]
  for p, (_, stderr) in zip(procs, outputs, strict=True):
    assert p.returncode == 0, stderr
  assert sorted(o.strip() for o, _ in outputs) == [
    f"wrote 2 samples to {out}",
    f"wrote 3 samples to {out}",
  ]
  _same_bytes(whole, out)
  assert (whole / "manifest.json").read_text() == (out / "manifest.json").read_text()
  assert runs.check_run(out).is_complete


def test_each_shard_resumes_on_its_own(demo, whole, tmp_path):
  sources, config = demo
  assert datasets.generate(tmp_path, sources, config, n=N, seed=4, shard=(1, 3)) == [1, 4]
  # A killed shard 1 lost sample 4: it rewrites that one only, and shard 0 its own.
  (tmp_path / "sample_00004_params.json").unlink()
  assert datasets.generate(tmp_path, sources, config, n=N, seed=4, shard=(1, 3)) == [4]
  assert datasets.generate(tmp_path, sources, config, n=N, seed=4, shard=(0, 3)) == [0, 3]
  status = runs.check_run(tmp_path)
  assert status.missing == (2,) and not status.is_complete and status.complete == N - 1
  assert datasets.generate(tmp_path, sources, config, n=N, seed=4, shard=(2, 3)) == [2]
  assert runs.check_run(tmp_path).is_complete
  _same_bytes(whole, tmp_path)


def test_arrayrecord_shards_number_their_files_apart_and_read_as_one(demo, whole, tmp_path):
  sources, config = demo
  for i in (1, 0):
    datasets.generate(
      tmp_path, sources, config, n=N, seed=4, output_format="arrayrecord", shard=(i, 2)
    )
  files = sorted(n for n in os.listdir(tmp_path) if n.endswith(".array_record"))
  # Shard 1 numbered its file 1 (odd), shard 0 after it in its own residue: 2.
  assert files == ["samples.00001.array_record", "samples.00002.array_record"]
  records = data.read_arrayrecord(tmp_path / "samples")
  assert sorted(r["index"] for r in records) == list(range(N))
  for r in records:
    ref = nib.load(whole / f"sample_{r['index']:05d}_image.nii.gz")
    assert r["image"].tobytes() == np.asanyarray(ref.dataobj).tobytes()
  status = runs.check_run(tmp_path)
  assert status.is_complete and status.output_format == "arrayrecord"


def test_check_names_what_is_missing_and_the_run_it_expects(whole, tmp_path, capsys):
  args = ["generate", *DEMO, "-o", str(tmp_path), "--seed", "4"]
  assert _cli(*args, "-n", "3", "--shard", "0/2") == 0
  capsys.readouterr()
  assert _cli(*args, "-n", "3", "--check") == 1
  assert capsys.readouterr().out.strip() == (
    f"{tmp_path}: generate run (nifti), 2 of 3 samples complete; missing: 1"
  )
  assert _cli("info", str(tmp_path)) == 0
  assert "2 of 3 samples complete; missing: 1" in capsys.readouterr().out
  assert _cli(*args, "-n", "3", "--shard", "1/2") == 0
  assert _cli(*args, "-n", "3", "--check") == 0
  assert "all 3 samples complete" in capsys.readouterr().out
  # Another seed is another run: an error, not a count.
  assert _cli("generate", *DEMO, "-o", str(tmp_path), "--seed", "5", "-n", "3", "--check") == 2
  assert "holds another run (seed differ)" in capsys.readouterr().err
  assert _cli(*args, "-n", "3", "--check", "--shard", "0/2") == 2
  assert "--check checks the whole run" in capsys.readouterr().err
  (tmp_path / "empty").mkdir()
  with pytest.raises(runs.FolderError, match="holds no synthjax run"):
    runs.check_run(tmp_path / "empty")
  assert _cli("info", str(tmp_path / "empty")) == 2
  assert "empty: holds no synthjax run" in capsys.readouterr().err


def test_check_counts_only_whole_samples_and_needs_a_count(demo, tmp_path):
  sources, config = demo
  datasets.generate(tmp_path, sources, config, n=2, seed=4)
  # A params JSON under another name than the writer's is no sample of the run.
  (tmp_path / "sample_000003_params.json").write_text("{}")
  assert runs.check_run(tmp_path, n=4).missing == (2, 3)
  manifest = (tmp_path / "manifest.json").read_text()
  (tmp_path / "manifest.json").write_text(manifest.replace('"n": 2', '"n": "two"'))
  with pytest.raises(runs.FolderError, match="records no sample count 'n'"):
    runs.check_run(tmp_path)


def test_arrayrecord_duplicates_are_reported(demo, tmp_path):
  sources, config = demo
  datasets.generate(tmp_path, sources, config, n=2, seed=4, output_format="arrayrecord")
  first = tmp_path / "samples.00000.array_record"
  index = tmp_path / "samples.00000.indices.json"
  os.link(first, tmp_path / "samples.00007.array_record")
  os.link(index, tmp_path / "samples.00007.indices.json")
  status = runs.check_run(tmp_path)
  assert status.duplicated == (0, 1) and not status.is_complete and not status.missing
  assert "stored more than once: 0, 1" in status.describe()


@pytest.mark.parametrize(
  "flag", ["2/2", "-1/2", "1", "a/b", "0/0"], ids=["i=n", "negative", "no-n", "words", "n=0"]
)
def test_bad_shard_is_one_line(flag, tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    _cli("generate", *DEMO, "-o", str(tmp_path), "--shard", flag)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert "--shard" in err and "I/N" in err and "Traceback" not in err
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("shard", [(3, 3), (0, 0), ("a", 2)])
def test_bad_shard_in_python_names_it(demo, tmp_path, shard):
  sources, config = demo
  with pytest.raises(ValueError, match=r"shard"):
    datasets.generate(tmp_path / "out", sources, config, n=2, shard=shard)
  assert not (tmp_path / "out").exists()


def _manifest(n=N, seed=4):
  return {"format": runs.RUN_FORMAT, "command": "generate", "seed": seed, "n": n,
          "output_format": "nifti"}  # fmt: skip


def test_folder_locks_let_shards_of_one_split_write_together(tmp_path, monkeypatch):
  out = tmp_path / "run"
  first = runs.start_run(out, _manifest(), False, shard=(0, 2))
  try:
    with pytest.raises(runs.FolderError, match="shard 0/2 of this run is already being written"):
      runs.start_run(out, _manifest(), False, shard=(0, 2))
    with pytest.raises(runs.FolderError, match="shards of a split into 2 are writing there"):
      runs.start_run(out, _manifest(), False, shard=(1, 3))
    with pytest.raises(runs.FolderError, match=r"another synthjax run is writing there \(shards"):
      runs.start_run(out, _manifest(), False)
    with pytest.raises(runs.FolderError, match="give every shard the same -n"):
      runs.start_run(out, _manifest(n=N + 1), False, shard=(1, 2))
    with pytest.raises(runs.FolderError, match="--overwrite needs the folder to itself"):
      runs.start_run(out, _manifest(seed=9), True, shard=(1, 2))
    # A temporary of the running shard is not removed by the shard that joins.
    (out / ".tmp-abc.nii.gz").write_bytes(b"in flight")
    second = runs.start_run(out, _manifest(), False, shard=(1, 2))
    second.close()
    assert (out / ".tmp-abc.nii.gz").exists()
  finally:
    first.close()
  # A whole run holds the folder: a shard waits for it, then gives up with one line.
  monkeypatch.setattr(runs, "SHARD_START_WAIT_S", 0.3)
  whole = runs.start_run(out, _manifest(), False)
  try:
    with pytest.raises(runs.FolderError, match=r"another synthjax run is writing there \(pid"):
      runs.start_run(out, _manifest(), False, shard=(1, 2))
  finally:
    whole.close()
  # A shard that sets the folder up (an --overwrite may take long) is waited for past the
  # deadline, and the waiting shard joins once it is done.
  import fcntl
  import threading

  setting_up = open(out / runs.LOCK, "a+")  # noqa: SIM115
  fcntl.flock(setting_up.fileno(), fcntl.LOCK_EX)
  setting_up.truncate(0)
  setting_up.write("a shard setting the folder up (pid 1)\n")
  setting_up.flush()
  joined = []
  waiter = threading.Thread(
    target=lambda: joined.append(runs.start_run(out, _manifest(), False, shard=(1, 2)))
  )
  waiter.start()
  waiter.join(1.0)  # past the 0.3 s deadline
  assert waiter.is_alive() and not joined
  setting_up.close()
  waiter.join(10)
  assert len(joined) == 1
  joined[0].close()
  # With the folder free, a later split may differ; the lock files are not user entries.
  runs.start_run(out, _manifest(), False, shard=(2, 3)).close()
  assert not (out / ".tmp-abc.nii.gz").exists()  # the first to start cleans up
  assert runs.check_run(out, _manifest()).missing == tuple(range(N))
