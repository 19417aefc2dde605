"""`synthjax.datasets`: what each `synthjax` command writes, from Python.

The commands call these functions, so comparing with what a command writes checks that the
command passes its arguments through; the references of the library calls themselves are
`synthjax.replay` of what they wrote, NumPy or nibabel on the same file, or the preset built
directly.
"""

import contextlib
import io
import json
import os

import nibabel as nib
import numpy as np
import pytest

import synthjax
from synthjax import cli, datasets
from synthjax._src import phantom, presets, samples

SHAPE, SPACING = (16, 16, 16), 8.0
DEMO = ["--demo", "--demo-shape", "16", "16", "16", "--demo-spacing", "8"]


def _read(path):
  return np.asanyarray(nib.load(path).dataobj)


def _same_folder(a, b):
  """The two run folders hold the same files with the same content (volumes as data)."""
  names = sorted(n for n in os.listdir(a) if not n.startswith("."))
  assert names == sorted(n for n in os.listdir(b) if not n.startswith("."))
  for name in names:
    if name.endswith(".nii.gz"):
      x, y = nib.load(os.path.join(a, name)), nib.load(os.path.join(b, name))
      assert np.asanyarray(x.dataobj).tobytes() == np.asanyarray(y.dataobj).tobytes(), name
      np.testing.assert_array_equal(x.affine, y.affine)
    else:
      with open(os.path.join(a, name)) as f, open(os.path.join(b, name)) as g:
        assert json.load(f) == json.load(g), name


def _label_file(path, values, zoom=2.0):
  labels = np.zeros((12, 12, 12), np.int16)
  for i, v in enumerate(values):
    labels[2 + i : 10 - i, 2 + i : 10 - i, 2 + i : 10 - i] = v
  nib.save(nib.Nifti1Image(labels, np.diag([zoom, zoom, zoom, 1.0])), path)
  return labels


@pytest.fixture(scope="module")
def demo():
  sources, spacing = datasets.demo_sources(SHAPE, SPACING)
  config = datasets.preset_config("synthseg", datasets.label_values(sources), SHAPE, spacing)
  return sources, config


def test_demo_sources_are_the_phantom(demo):
  sources, _ = demo
  labels, affine = phantom.brain_phantom(SHAPE, SPACING)
  (source,) = sources
  np.testing.assert_array_equal(source.labels, labels)
  np.testing.assert_array_equal(source.affine, affine)
  assert source.record == {
    "demo": {"shape": list(SHAPE), "spacing": SPACING},
    "labels_sha256": samples.content_digest(labels),
  }
  assert source.seeds is None


def test_generate_writes_what_the_command_writes(tmp_path, demo):
  sources, config = demo
  datasets.check_sources(sources, config)
  written = datasets.generate(tmp_path / "lib", sources, config, n=2, seed=7)
  assert written == [0, 1]
  assert (
    cli.main(["generate", *DEMO, "-n", "2", "-o", str(tmp_path / "cli"), "--seed", "7", "--quiet"])
    == 0
  )
  _same_folder(tmp_path / "lib", tmp_path / "cli")
  # The samples are `synthesize` with the keys of (seed, index), as replay reads them back.
  image, seg, _ = synthjax.replay(tmp_path / "lib" / "sample_00001_params.json")
  assert _read(tmp_path / "lib" / "sample_00001_image.nii.gz").tobytes() == image.tobytes()
  assert _read(tmp_path / "lib" / "sample_00001_seg.nii.gz").tobytes() == seg.tobytes()
  # Run again with more: only the missing sample is written.
  assert datasets.generate(tmp_path / "lib", sources, config, n=3, seed=7) == [2]


def test_replay_to_writes_what_replay_returns(tmp_path, demo):
  sources, config = demo
  datasets.generate(tmp_path / "gen", sources, config, n=1, seed=2)
  params = tmp_path / "gen" / "sample_00000_params.json"
  image_path, seg_path = datasets.replay_to(params, tmp_path / "again")
  image, seg, affine = synthjax.replay(params)
  assert _read(image_path).tobytes() == image.tobytes()
  assert _read(seg_path).tobytes() == seg.tobytes()
  np.testing.assert_array_equal(nib.load(image_path).affine, affine)
  assert cli.main(["replay", str(params), "-o", str(tmp_path / "cli")]) == 0
  _same_folder(tmp_path / "again", tmp_path / "cli")
  with pytest.raises(FileExistsError, match="sample_00000_image.nii.gz"):
    datasets.replay_to(params, tmp_path / "again")


def test_generate_views_writes_what_the_command_writes(tmp_path):
  sources, spacing = datasets.demo_sources(SHAPE, SPACING)
  config = datasets.preset_config("anatomix_views", datasets.label_values(sources), SHAPE, spacing)
  assert datasets.generate_views(tmp_path / "lib", sources, config, n=1, seed=3) == [0]
  assert cli.main(["views", *DEMO, "-n", "1", "-o", str(tmp_path / "cli"), "--seed", "3"]) == 0
  _same_folder(tmp_path / "lib", tmp_path / "cli")


def test_generate_ensembles_writes_what_the_command_writes(tmp_path):
  cfg = synthjax.ensembles.EnsembleConfig(shape=SHAPE, num_templates=(2, 3))
  assert datasets.generate_ensembles(tmp_path / "lib", cfg, n=2, seed=4) == [0, 1]
  assert (
    cli.main(
      [
        "ensemble",
        "-o",
        str(tmp_path / "cli"),
        "-n",
        "2",
        "--seed",
        "4",
        "--shape",
        *map(str, SHAPE),
        "--num-templates",
        "2",
        "3",
      ]
    )
    == 0
  )
  _same_folder(tmp_path / "lib", tmp_path / "cli")
  with pytest.raises(FileNotFoundError, match="pattern matches no file"):
    datasets.generate_ensembles(tmp_path / "t", cfg, n=1, templates=[str(tmp_path / "no*")])
  nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), np.eye(4)), tmp_path / "empty.nii.gz")
  with pytest.raises(datasets.InputError, match="empty.nii.gz"):
    datasets.generate_ensembles(tmp_path / "t", cfg, n=1, templates=[tmp_path / "empty.nii.gz"])
  assert not (tmp_path / "t").exists()  # refused before the run folder is made


def test_load_sources_reads_the_files_and_records_them(tmp_path):
  a = _label_file(tmp_path / "a.nii.gz", (2, 3))
  b = _label_file(tmp_path / "b.nii.gz", (2, 41, 3))
  sources, spacing = datasets.load_sources([str(tmp_path / "*.nii.gz")])
  assert spacing == (2.0, 2.0, 2.0)
  for source, labels, name in zip(sources, (a, b), ("a", "b")):
    np.testing.assert_array_equal(source.labels, labels)
    assert source.labels.dtype == np.int32
    np.testing.assert_array_equal(source.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert source.record == {
      "path": str(tmp_path / f"{name}.nii.gz"),
      "labels_sha256": samples.content_digest(labels),
    }
  assert datasets.label_values(sources) == sorted(set(np.unique(a)) | set(np.unique(b)))


def test_load_sources_refuses_naming_the_file(tmp_path):
  _label_file(tmp_path / "a.nii.gz", (2,))
  _label_file(tmp_path / "b.nii.gz", (2,), zoom=3.0)
  with pytest.raises(datasets.InputError, match=f"{tmp_path / 'b.nii.gz'}: spacing"):
    datasets.load_sources([tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"])
  with pytest.raises(ValueError, match="pattern matches no file"):
    datasets.load_sources([str(tmp_path / "none*")])
  with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
    datasets.load_sources([tmp_path / "missing.nii.gz"])


@pytest.mark.parametrize("preset", datasets.PRESETS)
def test_preset_config_is_the_preset(preset):
  values, shape, spacing = (0, 2, 3, 41, 42), (24, 24, 24), (1.0, 1.0, 1.0)
  expected = getattr(presets, preset)(values, shape, spacing)
  assert datasets.preset_config(preset, values, shape, spacing) == expected


def test_preset_config_with_seed_maps_needs_the_fetal_preset():
  args = ((0, 1, 2), (24, 24, 24), (0.5, 0.5, 0.5))
  config = datasets.preset_config("fetal", *args, seeds=True)
  assert config == presets.fetal(*args, seeds=True) and datasets.uses_seed_maps(config)
  assert not datasets.uses_seed_maps(datasets.preset_config("fetal", *args))
  with pytest.raises(datasets.InputError, match="fetal preset"):
    datasets.preset_config("synthseg", *args, seeds=True)


def test_load_config_round_trips_and_names_a_bad_file(tmp_path):
  config = presets.synthseg((0, 2, 3), (24, 24, 24))
  (tmp_path / "cfg.json").write_text(config.to_json())
  assert datasets.load_config(tmp_path / "cfg.json") == config
  (tmp_path / "bad.json").write_text("{not json")
  with pytest.raises(datasets.InputError, match=f"{tmp_path / 'bad.json'}: not a valid config"):
    datasets.load_config(tmp_path / "bad.json")


def test_check_sources_refuses_unknown_labels_and_warns_of_one_label(tmp_path):
  _label_file(tmp_path / "a.nii.gz", (2, 77))
  nib.save(nib.Nifti1Image(np.full((12, 12, 12), 2, np.int16), np.eye(4)), tmp_path / "one.nii.gz")
  config = presets.synthseg((0, 2), (12, 12, 12))
  sources, _ = datasets.load_sources([tmp_path / "a.nii.gz"])
  with pytest.raises(datasets.InputError, match=r"a\.nii\.gz: label value.*77"):
    datasets.check_sources(sources, config)
  sources, _ = datasets.load_sources([tmp_path / "one.nii.gz"])
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    datasets.check_sources(sources, config)
  assert err.getvalue() == (
    f"synthjax: warning: {tmp_path / 'one.nii.gz'}: holds a single "
    "label value (2); every sample will show one class\n"
  )


def test_with_seed_maps_refuses_what_cannot_have_them(demo):
  sources, config = demo
  with pytest.raises(datasets.InputError, match="do not use seed maps"):
    datasets.with_seed_maps(sources, config, "seeds")
  fetal = presets.fetal((0, 1, 2), SHAPE, (SPACING,) * 3, seeds=True)
  with pytest.raises(datasets.InputError, match="not the demo phantom"):
    datasets.with_seed_maps(sources, fetal, "seeds")


def test_check_fits_refuses_a_shape_that_cannot_fit(demo):
  sources, config = demo
  datasets.check_fits(config, sources)
  huge = presets.synthseg(config.label_values, (4000, 4000, 4000))
  with pytest.raises(datasets.InputError, match=r"shape \(4000, 4000, 4000\) needs about"):
    datasets.check_fits(huge, sources)


def test_label_map_info_against_numpy_and_the_info_command(tmp_path):
  labels = _label_file(tmp_path / "a.nii.gz", (2, 41, 3, 1234))
  info = datasets.label_map_info(str(tmp_path / "a.nii.gz"))
  values, counts = np.unique(labels, return_counts=True)
  assert info["counts"] == dict(zip(values.tolist(), counts.tolist()))
  assert info["shape"] == labels.shape and info["spacing"] == (2.0, 2.0, 2.0)
  assert info["orientation"] == "".join(nib.aff2axcodes(np.diag([2.0, 2.0, 2.0, 1.0])))
  assert info["unknown"] == {"synthseg": [1234], "fetal": [41, 1234]}
  assert info["flip_pairs"] == ((2, 41),)
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert cli.main(["info", str(tmp_path / "a.nii.gz")]) == 0
  assert out.getvalue() == datasets.format_label_map_info(info) + "\n"
  (tmp_path / "notes.nii.gz").write_text("not a volume")
  with pytest.raises(datasets.InputError, match=f"{tmp_path / 'notes.nii.gz'}: cannot read"):
    datasets.label_map_info(tmp_path / "notes.nii.gz")
