"""The sim-to-real benchmark's data (the MNI152 pair, test scans on the training grid,
generator specs) and its command line end to end at a tiny size."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from _requires import requires

import synthjax
from synthjax._src import mni152, scans, specs
from synthjax._src.train import metrics

# The imports above need neither flax nor nilearn; the tests below do (skipped without them).
pytestmark = requires("flax", "nilearn")

SIM2REAL = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "sim2real.py"
)


@pytest.fixture(scope="module")
def mni(tmp_path_factory):
  folder = str(tmp_path_factory.mktemp("mni"))
  train, pair = mni152.build_mni152(folder, 1, seed=0)
  return folder, train, pair


def test_mni152_label_map_follows_the_tissue_maps(mni):
  from nilearn import datasets

  _, train, (image_path, label_path) = mni
  labels = np.asarray(nib.load(label_path).dataobj)
  mask = datasets.load_mni152_brain_mask(resolution=1).get_fdata() > 0.5
  gm = datasets.load_mni152_gm_template(resolution=1).get_fdata()
  wm = datasets.load_mni152_wm_template(resolution=1).get_fdata()
  assert set(np.unique(labels).tolist()) == {0, 1, 2, 3}
  assert np.all(labels[~mask] == 0) and np.all(labels[mask] > 0)
  # Each tissue label sits where its probability is highest (1 mm voxels: volumes in ml).
  assert gm[labels == 2].mean() > 0.6 and wm[labels == 3].mean() > 0.7
  assert (1 - gm - wm)[labels == 1].mean() > 0.5
  # Volumes agree with the probability maps' sums (MNI space is larger than a brain: about
  # 1.0 l of GM and 0.67 l of WM in probability).
  for value, prob in ((2, gm), (3, wm)):
    assert abs((labels == value).sum() - prob[mask].sum()) < 0.2 * prob[mask].sum()
  t1 = nib.load(image_path)
  np.testing.assert_allclose(t1.affine, nib.load(label_path).affine)
  # The image is the real template: WM brighter than GM brighter than CSF (T1 contrast).
  data = t1.get_fdata()
  assert data[labels == 3].mean() > data[labels == 2].mean() > data[labels == 1].mean()
  # Training maps are deformed copies: similar, never identical.
  for path in train:
    deformed = np.asarray(nib.load(path).dataobj)
    d = metrics.dice_per_label(deformed, labels, [1, 2, 3])
    assert 0.2 < metrics.mean_score(d) < 0.95


def test_test_pair_lands_on_the_training_grid(mni):
  _, _, pair = mni
  name, image, truth = scans.load_test(pair, (2.0, 2.0, 2.0))
  assert name == "mni152_T1w" and image.shape == truth.shape
  full = np.asarray(nib.load(pair[1]).dataobj)
  # 197 x 233 x 189 voxels do not split into 2-voxel blocks, so image and labels are
  # resampled at voxels 0, 2, 4... (the template is already RAS): nearest neighbour there.
  assert image.shape == (98, 116, 94)
  np.testing.assert_array_equal(truth, full[::2, ::2, ::2][:98, :116, :94])
  assert image.min() >= 0.0 and image.max() <= 1.0


def test_pad_to_and_common_shape():
  a = np.arange(24).reshape(2, 3, 4)
  out = scans.pad_to(a, (4, 3, 2))
  np.testing.assert_array_equal(out[1:3, :, :], a[:, :, 1:3])
  assert out[0].sum() == 0 and out[3].sum() == 0
  maps = [np.zeros((10, 7, 5)), np.zeros((9, 12, 6))]
  assert scans.common_shape(maps, 8, 3) == (16, 16, 8)
  assert scans.common_shape(maps, 8, 2) == (16, 16, 6)


def test_tiny_benchmark_run_writes_curves_table_and_png(mni, tmp_path, compilation_cache):
  """Two generators, every other step a real one: the curves are evaluated on the real
  steps too, and the JSON, the table and the PNG are written."""
  folder, train, pair = mni
  cfg_path = str(tmp_path / "nobias.json")
  # The config's program is that of `synthseg~bias` (a disabled stage's ranges are not in
  # it), so the second generator reuses the first one's compiled train step.
  cfg = synthjax.presets.synthseg(
    (0, 1, 2, 3), (8, 8, 8), bias={"enabled": False, "std": (0.0, 0.25)}
  )
  with open(cfg_path, "w") as f:
    f.write(cfg.to_json())
  # A BIDS-like test folder of two scans: the pair, and the pair mirrored along x.
  for sub, flip in (("sub-a", False), ("sub-b", True)):
    os.makedirs(tmp_path / "test" / sub / "anat")
    for src, kind in ((pair[0], "T1w"), (pair[1], "dseg")):
      img = nib.load(src)
      data = np.asarray(img.dataobj)
      nib.save(
        nib.Nifti1Image(data[::-1] if flip else data, img.affine),
        str(tmp_path / "test" / sub / "anat" / f"{sub}_{kind}.nii.gz"),
      )
  out = str(tmp_path / "s2r.json")
  argv = [
    "--train",
    *train,
    "--test-dir",
    str(tmp_path / "test"),
    "--image-suffix",
    "_T1w",
    "--real",
    f"{pair[0]}:{pair[1]}",
    "--real-every",
    "2",
    "--down",
    "8",
    "--generators",
    "synthjax:synthseg~bias",
    "config:nobias",
    "--config",
    f"nobias={cfg_path}",
    "--steps",
    "4",
    "--eval-every",
    "2",
    "--features",
    "4",
    "8",
    "--slices",
    "4",
    "--json",
    out,
    "--table",
    str(tmp_path / "t.md"),
  ]
  proc = subprocess.run(
    [sys.executable, SIM2REAL, *argv],
    capture_output=True,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out) as f:
    result = json.load(f)
  assert result["meta"]["trainer"] == "jax" and result["meta"]["spacing"] == [8.0] * 3
  assert [os.path.basename(p[0]) for p in result["meta"]["test_pairs"]] == [
    "sub-a_T1w.nii.gz",
    "sub-b_T1w.nii.gz",
  ]
  for gen in ("synthjax:synthseg~bias", "config:nobias"):
    curves = result["results"][gen]["curves"]
    assert set(curves) == {"sub-a_T1w", "sub-b_T1w"}
    for curve in curves.values():
      # Steps 2 and 4 are real ones (`--real-every 2`): they are evaluated all the same.
      assert [e["step"] for e in curve] == [2, 4]
      assert all(0.0 <= e["mean_dice"] <= 1.0 for e in curve)
    # The mean over scans, of each scan's mean Dice and of each label's Dice.
    for k, mean in enumerate(result["results"][gen]["mean_curve"]):
      scans = [c[k] for c in curves.values()]
      assert mean["step"] == scans[0]["step"]
      assert mean["mean_dice"] == pytest.approx(np.mean([e["mean_dice"] for e in scans]))
      assert mean["min_dice"] == pytest.approx(min(e["mean_dice"] for e in scans))
      for label in ("1", "2", "3"):
        assert mean["per_label"][label] == pytest.approx(
          np.mean([e["per_label"][label] for e in scans])
        )
    assert len(result["results"][gen]["losses"]) == 4
    final = result["results"][gen]["final"]["sub-b_T1w"]
    assert final["mean_dice"] >= 0.0 and set(final["hd95"]) == {"1", "2", "3"}
  assert result["generators"]["synthjax:synthseg~bias"]["bias"]["enabled"] is False
  assert result["generators"]["config:nobias"]["bias"]["std"] == [0.0, 0.25]
  table = (tmp_path / "t.md").read_text()
  assert "Mean over 2 test scan(s)" in table and "| sub-b_T1w |" in table
  # A row of the mean table, a column head of the per-scan table, a row per scan table.
  assert table.count("| config:nobias |") == 4
  for png in ("s2r_sub-a_T1w.png", "s2r_sub-b_T1w.png", "s2r_curves.png"):
    assert os.path.getsize(tmp_path / png) > 1000


def test_mni152_split_keeps_test_voxels_out_of_fine_tuning(mni, tmp_path):
  folder, train, (image_path, label_path) = mni
  superior, inferior = mni152.split_mni152(image_path, label_path, str(tmp_path))
  full = nib.load(label_path)
  sup, inf = nib.load(superior[1]), nib.load(inferior[1])
  assert sup.shape[2] + inf.shape[2] == full.shape[2]
  data = np.asarray(full.dataobj)
  np.testing.assert_array_equal(
    np.concatenate([np.asarray(inf.dataobj), np.asarray(sup.dataobj)], axis=2), data
  )
  # World coordinates are kept: the first superior slice sits where it was.
  k = inf.shape[2]
  np.testing.assert_allclose(sup.affine @ [0, 0, 0, 1], full.affine @ [0, 0, k, 1])
  assert np.asarray(sup.dataobj).any() and np.asarray(inf.dataobj).any()


def test_generator_specs_switch_stages_off_and_set_fields():
  cfg = specs.config_from_spec(
    "synthjax:synthseg~bias+gmm.prob_background_zero=1+affine.object_size=[0.5, 1.1]",
    [0, 1, 2],
    (16, 16, 16),
    (2.0, 2.0, 2.0),
    {},
  )
  assert not cfg.bias.enabled and cfg.gmm.prob_background_zero == 1.0
  assert cfg.affine.object_size == (0.5, 1.1) and cfg.spacing == (2.0, 2.0, 2.0)
  cfg = specs.config_from_spec(
    "synthjax:fetal@seeds+noise_spacing=[0.5, 0.5, 0.5]",
    list(range(8)),
    (16, 16, 16),
    (2.0, 2.0, 2.0),
    {},
  )
  assert cfg.subclusters.source == "seeds" and cfg.noise_spacing == (0.5, 0.5, 0.5)
  priors = synthjax.priors.IntensityPriors(
    mean=((1, 100.0, 120.0),), std=((1, 2.0, 3.0),), spacing=(2.0, 2.0, 2.0)
  )
  cfg = specs.config_from_spec(
    "synthjax:synthseg@priors", [0, 1, 2], (16, 16, 16), (2.0, 2.0, 2.0), {}, priors
  )
  assert cfg.gmm.label_mean == priors.mean and cfg.gmm.label_std == priors.std
  fetal = [
    specs.config_from_spec(spec, list(range(8)), (16, 16, 16), (2.0, 2.0, 2.0), {})
    for spec in ("synthjax:fetal", "synthjax:fetal@nopriors")
  ]
  assert fetal[0].gmm.label_mean == synthjax.priors.FETAL_T2W.mean
  assert fetal[1].gmm.label_mean == () and fetal[1].subclusters.meta_mean == ()
  with pytest.raises(ValueError, match="needs --priors"):
    specs.config_from_spec("synthjax:synthseg@priors", [0, 1, 2], (16, 16, 16), (2.0, 2.0, 2.0), {})
  for bad, message in (
    ("synthjax:synthseg~nope", "no stage 'nope'"),
    ("synthjax:synthseg+gmm.nope=1", "nope"),
    ("synthjax:synthseg+gmm.prob_background_zero=x", "JSON"),
    ("synthjax:other", "unknown preset"),
    ("peer", "unknown generator"),
    ("synthjax:synthseg@seeds", "fetal preset"),
    ("synthjax:fetal+nope=1", "nope"),
  ):
    with pytest.raises(ValueError, match=message):
      specs.config_from_spec(bad, [0, 1, 2], (16, 16, 16), (2.0, 2.0, 2.0), {})


def test_cubic_zoom_is_scipys_cubic_zoom():
  from scipy import ndimage

  grid = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
  shape = (17, 23, 9)
  want = ndimage.zoom(grid, [n / k for n, k in zip(shape, grid.shape)], order=3)
  got = mni152._cubic_zoom(grid, shape)
  assert got.dtype == np.float32 and got.shape == want.shape == shape
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
