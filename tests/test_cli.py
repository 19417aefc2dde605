"""`synthjax generate` / `synthjax replay` driven as a user would.

A few representative runs go through a subprocess (the first dataset, replay in a new
process, Ctrl-C and resume); the other commands call `synthjax.cli.main` in this process,
which parses the same arguments and prints the same messages.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import types

import nibabel as nib
import numpy as np
import pytest

from synthjax._src.phantom import PHANTOM_LABELS, brain_phantom

DEMO = ["--demo", "--demo-shape", "32", "32", "32", "--demo-spacing", "6"]


def run(*args, check=True):
  """`synthjax ARGS...` in a new process."""
  out = subprocess.run(
    [sys.executable, "-m", "synthjax.cli", *args],
    capture_output=True,
    text=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  if check and out.returncode != 0:
    raise AssertionError(f"exit {out.returncode}\n{out.stderr}")
  return out


def cli(*args, check=True):
  """`synthjax ARGS...` in this process: exit code, stdout and stderr as `run` gives them."""
  from synthjax import cli as cli_module

  stdout, stderr = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    try:
      code = cli_module.main(list(args))
    except SystemExit as e:  # argparse: --help, bad flags
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
  out = types.SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue())
  if check and code != 0:
    raise AssertionError(f"exit {code}\n{out.stderr}")
  return out


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("gen")
  run("generate", *DEMO, "-n", "3", "-o", str(out), "--seed", "5", "--quiet")
  return out


def test_generate_writes_images_segs_and_params(demo_run):
  labels, affine = brain_phantom((32, 32, 32), 6.0)
  for i in range(3):
    img = nib.load(demo_run / f"sample_{i:05d}_image.nii.gz")
    seg = nib.load(demo_run / f"sample_{i:05d}_seg.nii.gz")
    assert img.shape == seg.shape == (32, 32, 32)
    # Same shape as the input: no crop, so the input's affine and spacing are kept.
    np.testing.assert_allclose(img.affine, affine)
    np.testing.assert_allclose(seg.affine, affine)
    np.testing.assert_allclose(img.header.get_zooms(), (6.0, 6.0, 6.0))
    data = img.get_fdata()
    assert data.min() >= 0 and data.max() <= 1 and data.std() > 0
    assert set(np.unique(seg.get_fdata()).astype(int)) <= set(PHANTOM_LABELS)
    side = json.loads((demo_run / f"sample_{i:05d}_params.json").read_text())
    assert side["seed"] == 5 and side["index"] == i and "params" in side and "config" in side
  images = [nib.load(demo_run / f"sample_{i:05d}_image.nii.gz").get_fdata() for i in range(3)]
  assert not np.array_equal(images[0], images[1])


def test_same_seed_same_files(demo_run, tmp_path):
  cli("generate", *DEMO, "-n", "2", "-o", str(tmp_path), "--seed", "5", "--quiet")
  for i in range(2):
    for kind in ("image", "seg"):
      a = nib.load(demo_run / f"sample_{i:05d}_{kind}.nii.gz").get_fdata()
      b = nib.load(tmp_path / f"sample_{i:05d}_{kind}.nii.gz").get_fdata()
      assert np.array_equal(a, b)


def test_replay_is_bitwise_in_a_new_process(demo_run, tmp_path):
  run("replay", str(demo_run / "sample_00001_params.json"), "-o", str(tmp_path))
  for kind in ("image", "seg"):
    a = np.asanyarray(nib.load(demo_run / f"sample_00001_{kind}.nii.gz").dataobj)
    b = np.asanyarray(nib.load(tmp_path / f"sample_00001_{kind}.nii.gz").dataobj)
    assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


def test_generate_from_nifti_files_crops_and_shifts_affine(tmp_path):
  labels, affine = brain_phantom((40, 36, 32), 5.0)
  affine[:3, 3] += [3.0, -7.0, 11.0]
  path = tmp_path / "sub-01_dseg.nii.gz"
  nib.save(nib.Nifti1Image(labels.astype(np.float32), affine), path)
  out = tmp_path / "out"
  cli("generate", str(path), "-o", str(out), "-n", "1", "--shape", "32", "32", "32", "--quiet")
  side = json.loads((out / "sample_00000_params.json").read_text())
  pos = np.asarray(side["params"]["crop"]["position"], np.float32)
  room = np.array([8, 4, 0])
  offset = np.minimum(np.floor(pos * (room + 1)), room)
  img = nib.load(out / "sample_00000_image.nii.gz")
  np.testing.assert_allclose(img.affine[:3, 3], affine[:3, :3] @ offset + affine[:3, 3])
  assert side["source"]["path"] == str(path)


def test_another_command_in_the_same_folder_is_refused(demo_run, tmp_path):
  before = (demo_run / "sample_00000_image.nii.gz").read_bytes()
  out = cli("generate", *DEMO, "-n", "1", "-o", str(demo_run), "--seed", "9", check=False)
  assert out.returncode == 2
  assert "another command" in out.stderr and "seed" in out.stderr and "--overwrite" in out.stderr
  assert "Traceback" not in out.stderr
  assert (demo_run / "sample_00000_image.nii.gz").read_bytes() == before
  (tmp_path / "mine.txt").write_text("a user's file")
  out = cli("generate", *DEMO, "-n", "1", "-o", str(tmp_path), check=False)
  assert out.returncode == 2 and "not empty" in out.stderr
  assert (tmp_path / "mine.txt").read_text() == "a user's file"


def test_rerun_completes_an_interrupted_run_identically(demo_run, tmp_path):
  # A run of 1 sample, then the same command with -n 3: only 1 and 2 are written, and the
  # result equals the uninterrupted run (demo_run, seed 5).
  cli("generate", *DEMO, "-n", "1", "-o", str(tmp_path), "--seed", "5", "--quiet")
  first = os.stat(tmp_path / "sample_00000_image.nii.gz")
  out = cli("generate", *DEMO, "-n", "3", "-o", str(tmp_path), "--seed", "5", "--quiet")
  assert "wrote 2 samples" in out.stdout and "1 already there" in out.stdout
  again = os.stat(tmp_path / "sample_00000_image.nii.gz")
  assert (first.st_ino, first.st_mtime_ns) == (again.st_ino, again.st_mtime_ns)
  for i in range(3):
    for kind in ("image", "seg"):
      a = np.asanyarray(nib.load(demo_run / f"sample_{i:05d}_{kind}.nii.gz").dataobj)
      b = np.asanyarray(nib.load(tmp_path / f"sample_{i:05d}_{kind}.nii.gz").dataobj)
      assert a.tobytes() == b.tobytes()


def test_killed_run_leaves_no_partial_file_and_resumes(tmp_path):
  import signal
  import time

  args = [
    sys.executable,
    "-m",
    "synthjax.cli",
    "generate",
    *DEMO,
    "-n",
    "40",
    "-o",
    str(tmp_path),
    "--seed",
    "2",
    "--quiet",
    "--workers",
    "1",
  ]
  proc = subprocess.Popen(
    args,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  deadline = time.time() + 120
  while time.time() < deadline and not (tmp_path / "sample_00002_params.json").exists():
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)  # Ctrl-C
  _, err = proc.communicate(timeout=120)
  assert proc.returncode in (130, 0), err
  if proc.returncode == 130:
    assert "interrupted" in err and "Traceback" not in err
  # Every sample with a params JSON is complete and readable; no temporary file remains.
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]
  complete = sorted(p for p in os.listdir(tmp_path) if p.endswith("_params.json"))
  assert complete
  for name in complete:
    stem = tmp_path / name.replace("_params.json", "")
    nib.load(f"{stem}_image.nii.gz").get_fdata()
    nib.load(f"{stem}_seg.nii.gz").get_fdata()
  # Resume: completes the set; sample 1 equals an uninterrupted run's.
  cli("generate", *DEMO, "-n", "40", "-o", str(tmp_path), "--seed", "2", "--quiet")
  assert len([p for p in os.listdir(tmp_path) if p.endswith("_params.json")]) == 40
  ref = tmp_path.parent / (tmp_path.name + "_ref")
  cli("generate", *DEMO, "-n", "2", "-o", str(ref), "--seed", "2", "--quiet")
  for kind in ("image", "seg"):
    a = np.asanyarray(nib.load(ref / f"sample_00001_{kind}.nii.gz").dataobj)
    b = np.asanyarray(nib.load(tmp_path / f"sample_00001_{kind}.nii.gz").dataobj)
    assert a.tobytes() == b.tobytes()


def test_arrayrecord_format_round_trips(demo_run, tmp_path):
  from synthjax import data

  cli(
    "generate",
    *DEMO,
    "-n",
    "2",
    "-o",
    str(tmp_path),
    "--seed",
    "5",
    "--quiet",
    "--format",
    "arrayrecord",
  )
  records = data.read_arrayrecord(str(tmp_path / "samples"))
  assert len(records) == 2
  for r in (records[0], records[1]):
    i = r["index"]
    ref = np.asanyarray(nib.load(demo_run / f"sample_{i:05d}_image.nii.gz").dataobj)
    assert r["image"].tobytes() == ref.tobytes()


def _read_png(path):
  from PIL import Image

  with Image.open(path) as img:
    assert img.format == "PNG" and img.mode == "RGB"
    return np.asarray(img)


def test_preview_writes_a_png_whose_panels_differ(tmp_path):
  png = tmp_path / "preview.png"
  out = cli(
    "preview",
    "demo",
    "-o",
    str(png),
    "-n",
    "3",
    "--demo-shape",
    "32",
    "32",
    "32",
    "--demo-spacing",
    "6",
  )
  rgb = _read_png(png)
  # 1 label row + 3 sample rows of 32-pixel panels with 4-pixel gaps; 3 columns.
  assert rgb.shape == (4 * 32 + 3 * 4, 3 * 32 + 2 * 4, 3)
  rows = [rgb[r * 36 : r * 36 + 32, :32] for r in range(4)]
  assert all(not np.array_equal(rows[a], rows[b]) for a in range(4) for b in range(a + 1, 4))
  assert (rgb[36:, :, 0] > rgb[36:, :, 1] + 100).any()  # the red seg outline is drawn
  again = cli("preview", "demo", "-o", str(png), "-n", "3", check=False)
  assert again.returncode == 2 and "--overwrite" in again.stderr
  assert str(png) in out.stdout


def test_info_reports_shape_labels_and_presets(tmp_path):
  labels, affine = brain_phantom((32, 30, 28), 6.0)
  path = tmp_path / "ph.nii.gz"
  nib.save(nib.Nifti1Image(labels.astype(np.int16), affine), path)
  out = cli("info", str(path)).stdout
  assert "(32, 30, 28)" in out and "RAS" in out and "(6.0, 6.0, 6.0)" in out
  values, counts = np.unique(labels, return_counts=True)
  for v, c in zip(values, counts):
    assert f"{v:>6d}  {c:>10d} voxels" in out
  assert "preset synthseg: knows every label" in out and "(2, 41)" in out
  assert "preset fetal:    does not know" in out


@pytest.mark.parametrize(
  "cmd", [[], ["generate"], ["replay"], ["preview"], ["info"], ["train"], ["segment"]]
)
def test_help(cmd):
  out = cli(*cmd, "--help")
  assert "usage: synthjax" in out.stdout
  if not cmd:
    assert "train" in out.stdout and "segment" in out.stdout


def test_train_and_segment_take_the_recipes_arguments():
  from synthjax._src.train import segment, train

  for name, driver in (("train", train), ("segment", segment)):
    own = cli(name, "--help").stdout.split("options:")[1]
    recipe = driver.build_parser().format_help().split("options:")[1]
    assert own == recipe
    assert own.count("--no-cache") == 1


EXTRA_LINE = "needs the 'train' extra"


@pytest.mark.parametrize(
  "argv", [["train", "maps/*.nii.gz", "-o", "run"], ["segment", "run", "scan.nii.gz", "-o", "out"]]
)
@pytest.mark.parametrize("module", ["flax", "optax", "orbax.checkpoint"])
def test_train_and_segment_name_the_missing_extra(tmp_path, monkeypatch, argv, module):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setitem(sys.modules, module, None)  # as if not installed: import fails
  out = cli(*argv, "--no-cache", check=False)
  assert out.returncode == 2 and "Traceback" not in out.stderr
  line = out.stderr.strip()
  assert "\n" not in line and line.startswith(f"synthjax {argv[0]}: error: {EXTRA_LINE}")
  assert module in line and "pip install 'synthjax[train]'" in line
  assert not os.listdir(tmp_path)  # nothing written


def test_train_without_the_extra_in_a_new_process(tmp_path):
  site = tmp_path / "site"
  site.mkdir()
  (site / "sitecustomize.py").write_text("import sys\nsys.modules['flax'] = None\n")
  path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "synthjax.cli",
      "train",
      str(tmp_path / "x"),
      "-o",
      str(tmp_path / "run"),
    ],
    capture_output=True,
    text=True,
    env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path},
  )
  assert out.returncode == 2
  assert out.stderr == (
    "synthjax train: error: needs the 'train' extra (flax missing): pip install 'synthjax[train]'\n"
  )


@pytest.mark.parametrize("case", ["missing", "float_labels", "not_nifti", "empty_glob"])
def test_bad_input_gives_one_clear_line(tmp_path, case):
  if case == "missing":
    arg, expect = str(tmp_path / "nope.nii.gz"), "no such file"
  elif case == "float_labels":
    arg = str(tmp_path / "soft.nii.gz")
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), 0.5, np.float32), np.eye(4)), arg)
    expect = "non-integer"
  elif case == "not_nifti":
    arg = str(tmp_path / "junk.nii.gz")
    with open(arg, "wb") as f:
      f.write(b"not a nifti file")
    expect = "cannot read"
  else:
    arg, expect = str(tmp_path / "*.nii.gz"), "matches no file"
  out = cli("generate", arg, "-o", str(tmp_path / "o"), check=False)
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and expect in lines[0] and "Traceback" not in out.stderr
  if case != "empty_glob":
    assert os.path.basename(arg) in lines[0]


@pytest.mark.parametrize(
  "flags,expect",
  [
    (["-n", "0"], "-n must be >= 1"),
    (["--shape", "1", "8", "8"], "--shape"),
    (["--workers", "0"], "--workers"),
  ],
)
def test_bad_flag_values(tmp_path, flags, expect):
  out = cli("generate", *DEMO, "-o", str(tmp_path / "o"), *flags, check=False)
  assert out.returncode == 2 and expect in out.stderr and "Traceback" not in out.stderr
  assert len(out.stderr.strip().splitlines()) == 1


def test_unknown_label_values_for_a_given_config(tmp_path):
  import synthjax

  labels, affine = brain_phantom((32, 32, 32), 6.0)
  path = tmp_path / "ph.nii.gz"
  nib.save(nib.Nifti1Image(labels.astype(np.int16), affine), path)
  cfg = synthjax.presets.synthseg((0, 2, 3, 41, 42), (32, 32, 32), (6.0, 6.0, 6.0))
  (tmp_path / "cfg.json").write_text(cfg.to_json())
  out = cli(
    "generate",
    str(path),
    "-o",
    str(tmp_path / "o"),
    "--config",
    str(tmp_path / "cfg.json"),
    check=False,
  )
  assert out.returncode == 2 and "Traceback" not in out.stderr
  line = out.stderr.strip()
  assert "ph.nii.gz" in line and "not in config.label_values" in line and "24 (" in line
