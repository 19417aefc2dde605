"""`synthjax.load_sample` / `synthjax.replay`: a sample written by `synthjax generate`,
replayed from Python."""

import json

import nibabel as nib
import numpy as np
import pytest

import synthjax
from synthjax import cli

DEMO = ["--demo", "--demo-shape", "24", "24", "24", "--demo-spacing", "8"]


def _written(path):
  return np.asanyarray(nib.load(path).dataobj)


def test_replay_equals_the_written_files_bitwise(tmp_path):
  out = tmp_path / "gen"
  assert cli.main(["generate", *DEMO, "-n", "2", "-o", str(out), "--seed", "3", "--quiet"]) == 0
  image, seg, affine = synthjax.replay(out / "sample_00001_params.json")
  a, b = _written(out / "sample_00001_image.nii.gz"), _written(out / "sample_00001_seg.nii.gz")
  assert image.dtype == a.dtype and image.shape == a.shape and image.tobytes() == a.tobytes()
  assert seg.dtype == b.dtype == np.int32 and seg.tobytes() == b.tobytes()
  np.testing.assert_array_equal(affine, nib.load(out / "sample_00001_image.nii.gz").affine)
  sample = synthjax.load_sample(str(out / "sample_00001_params.json"))
  assert sample.index == 1 and sample.seeds is None and "demo" in sample.source
  assert sample.labels.shape == (24, 24, 24)


@pytest.fixture
def file_sample(tmp_path):
  labels = np.zeros((16, 16, 16), np.int16)
  labels[4:12, 4:12, 4:12] = 2
  labels[6:10, 6:10, 6:10] = 41
  path = tmp_path / "map.nii.gz"
  nib.save(nib.Nifti1Image(labels, np.eye(4)), path)
  out = tmp_path / "gen"
  assert cli.main(["generate", str(path), "-n", "1", "-o", str(out), "--quiet"]) == 0
  return path, out / "sample_00000_params.json"


def test_a_changed_label_map_is_refused_unless_forced(file_sample):
  path, sidecar = file_sample
  img = nib.load(path)
  data = np.asanyarray(img.dataobj).copy()
  data[0, 0, 0] = 2
  nib.save(nib.Nifti1Image(data, img.affine), path)
  with pytest.raises(ValueError, match="changed since") as e:
    synthjax.replay(sidecar)
  assert str(path) in str(e.value) and "force=True" in str(e.value)
  assert isinstance(e.value, synthjax.InputChangedError)
  with pytest.warns(synthjax.InputChangedWarning, match=f"{path} changed since"):
    image, seg, _ = synthjax.replay(sidecar, force=True)
  assert image.shape == seg.shape == (16, 16, 16)


@pytest.mark.parametrize(
  "content,message",
  [
    ("{not json", "cannot read params JSON"),
    (json.dumps({"format": "something/1"}), "not a synthjax sample file"),
    (json.dumps([1, 2]), "not a synthjax sample file"),
    (json.dumps({"format": "synthjax-sample/1", "index": 0}), "sample file lacks"),
  ],
)
def test_load_sample_refuses_a_bad_file_naming_it(tmp_path, content, message):
  bad = tmp_path / "bad_params.json"
  bad.write_text(content)
  with pytest.raises(ValueError, match=message) as e:
    synthjax.load_sample(bad)
  text = str(e.value)
  assert text.startswith(f"{bad}: ") and "\n" not in text


def test_load_sample_of_a_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="cannot read params JSON") as e:
    synthjax.load_sample(tmp_path / "nope_params.json")
  assert str(tmp_path / "nope_params.json") in str(e.value)
