"""`synthjax generate` / `synthjax replay` driven as a user would (subprocess)."""

import json
import os
import subprocess
import sys

import numpy as np
import nibabel as nib
import pytest

from synthjax._src.phantom import PHANTOM_LABELS, brain_phantom

DEMO = ["--demo", "--demo-shape", "32", "32", "32", "--demo-spacing", "6"]


def run(*args, check=True):
  out = subprocess.run([sys.executable, "-m", "synthjax.cli", *args], capture_output=True,
                       text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  if check and out.returncode != 0:
    raise AssertionError(f"exit {out.returncode}\n{out.stderr}")
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
  run("generate", *DEMO, "-n", "2", "-o", str(tmp_path), "--seed", "5", "--quiet")
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
  run("generate", str(path), "-o", str(out), "-n", "1", "--shape", "32", "32", "32", "--quiet")
  side = json.loads((out / "sample_00000_params.json").read_text())
  pos = np.asarray(side["params"]["crop"]["position"], np.float32)
  room = np.array([8, 4, 0])
  offset = np.minimum(np.floor(pos * (room + 1)), room)
  img = nib.load(out / "sample_00000_image.nii.gz")
  np.testing.assert_allclose(img.affine[:3, 3], affine[:3, :3] @ offset + affine[:3, 3])
  assert side["source"]["path"] == str(path)


def test_existing_files_are_not_overwritten(demo_run):
  before = (demo_run / "sample_00000_image.nii.gz").read_bytes()
  out = run("generate", *DEMO, "-n", "1", "-o", str(demo_run), "--seed", "9", check=False)
  assert out.returncode == 2
  assert "exists" in out.stderr and "--overwrite" in out.stderr
  assert "Traceback" not in out.stderr
  assert (demo_run / "sample_00000_image.nii.gz").read_bytes() == before


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
    open(arg, "wb").write(b"not a nifti file")
    expect = "cannot read"
  else:
    arg, expect = str(tmp_path / "*.nii.gz"), "matches no file"
  out = run("generate", arg, "-o", str(tmp_path / "o"), check=False)
  assert out.returncode == 2
  lines = out.stderr.strip().splitlines()
  assert len(lines) == 1 and expect in lines[0] and "Traceback" not in out.stderr
  if case != "empty_glob":
    assert os.path.basename(arg) in lines[0]
