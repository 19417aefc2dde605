"""CLI commands for the generation breadth: views pairs, seed subclusters (generate/replay)."""

import json
import os

import nibabel as nib
import numpy as np

import synthjax
from synthjax import cli

DEMO = ["--demo", "--demo-shape", "24", "24", "24", "--demo-spacing", "8"]


def _read(path):
  return np.asanyarray(nib.load(path).dataobj)


def test_views_pairs_are_aligned_replayable_and_resumable(tmp_path, capsys):
  out = tmp_path / "views"
  assert cli.main(["views", *DEMO, "-n", "2", "-o", str(out), "--seed", "3"]) == 0
  side = json.loads((out / "sample_00001_params.json").read_text())
  assert side["shared_spatial"] is True
  cfg = synthjax.SynthConfig.from_dict(side["config"])
  params = synthjax.params_from_json(side["params"], cfg)
  from synthjax._src import phantom

  labels, _ = phantom.brain_phantom((24, 24, 24), 8.0)
  images, segs = synthjax.synthesize_views(synthjax.key_from_json(side["key"]), params, labels, cfg)
  for v in range(2):
    np.testing.assert_array_equal(_read(out / f"sample_00001_view{v}_image.nii.gz"), images[v])
  np.testing.assert_array_equal(_read(out / "sample_00001_seg.nii.gz"), segs[0])
  assert not np.array_equal(np.asarray(images[0]), np.asarray(images[1]))
  # A re-run with more pairs keeps the finished ones and adds the rest.
  before = (out / "sample_00000_view0_image.nii.gz").stat().st_mtime_ns
  assert cli.main(["views", *DEMO, "-n", "3", "-o", str(out), "--seed", "3"]) == 0
  assert (out / "sample_00002_params.json").exists()
  assert (out / "sample_00000_view0_image.nii.gz").stat().st_mtime_ns == before
  assert "2 already there" in capsys.readouterr().out


def _write(path, arr):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  nib.save(nib.Nifti1Image(arr, np.diag([1.0, 1.0, 1.0, 1.0])), path)


def test_generate_with_seed_maps_and_replay(tmp_path, capsys):
  lab = np.zeros((20, 20, 20), np.int16)
  lab[4:16, 4:16, 4:16] = 1
  lab[8:12, 8:12, 8:12] = 2
  label_path = str(tmp_path / "data" / "sub-01" / "anat" / "sub-01_dseg.nii.gz")
  _write(label_path, lab)
  rng = np.random.default_rng(0)
  for k in range(1, 7):
    for m in range(1, 5):
      layer = np.zeros(lab.shape, np.int8)
      where = lab == m
      layer[where] = 10 * m + rng.integers(0, k, where.sum())
      _write(
        str(
          tmp_path
          / "seeds"
          / f"subclasses_{k}"
          / "sub-01"
          / "anat"
          / f"sub-01_dseg_mlabel_{m}.nii.gz"
        ),
        layer,
      )
  out = tmp_path / "gen"
  assert (
    cli.main(
      [
        "generate",
        label_path,
        "--preset",
        "fetal",
        "--seeds",
        str(tmp_path / "seeds"),
        "-n",
        "1",
        "-o",
        str(out),
        "--quiet",
      ]
    )
    == 0
  )
  side = json.loads((out / "sample_00000_params.json").read_text())
  assert side["config"]["subclusters"]["source"] == "seeds"
  assert side["source"]["seeds"] == str(tmp_path / "seeds")
  again = tmp_path / "again"
  assert cli.main(["replay", str(out / "sample_00000_params.json"), "-o", str(again)]) == 0
  a = _read(out / "sample_00000_image.nii.gz")
  b = _read(again / "sample_00000_image.nii.gz")
  assert a.tobytes() == b.tobytes()
  # Without --seeds the fetal preset's procedural split needs no files; with a demo, a
  # clear error.
  assert (
    cli.main(
      [
        "generate",
        *DEMO,
        "--seeds",
        str(tmp_path / "seeds"),
        "--preset",
        "fetal",
        "-o",
        str(tmp_path / "x"),
      ]
    )
    == 2
  )
  assert "seed maps need label map files" in capsys.readouterr().err


def test_ensemble_command_writes_replayable_label_maps(tmp_path, capsys):
  from synthjax import ensembles

  out = tmp_path / "ens"
  assert (
    cli.main(
      [
        "ensemble",
        "-o",
        str(out),
        "-n",
        "2",
        "--shape",
        "24",
        "24",
        "24",
        "--num-templates",
        "3",
        "6",
        "--seed",
        "4",
      ]
    )
    == 0
  )
  side = json.loads((out / "sample_00001_params.json").read_text())
  cfg = ensembles.EnsembleConfig.from_dict(side["config"])
  assert cfg.num_templates == (3, 6) and cfg.shape == (24, 24, 24)
  lab = ensembles.render_ensemble(synthjax.key_from_json(side["key"]), side["params"], None, cfg)
  stored = _read(out / "sample_00001_labels.nii.gz")
  np.testing.assert_array_equal(stored, np.asarray(lab))
  assert len(np.unique(stored)) > 2
  assert (
    cli.main(["ensemble", "-o", str(out), "-n", "2", "--shape", "24", "24", "24", "--seed", "5"])
    == 2
  )
  assert "holds a run of another command" in capsys.readouterr().err
