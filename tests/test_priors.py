"""Intensity priors measured on real scans (`synthjax.priors`) and the presets that use them.

References: closed forms on synthetic Gaussian images (medians, `1.4826 * MAD`), the
round trip estimate -> render -> estimate, and two real pairs: the MNI152 T1 (nilearn) and
a real fetal T2w volume of the spina-bifida atlas (skipped without `../shared`).
"""

import functools
import pathlib

import jax
import numpy as np
import pytest
from _configs import ALL_OFF

import synthjax
from synthjax import priors as priors_lib
from synthjax._src.stages import gmm as gmm_stage
from synthjax._src.stages import subclusters

ATLAS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fetal-sb-atlas"


def gaussian_image(means, stds, n=24, seed=0):
  """Labels 0..len(means)-1 in slabs along x, each a Gaussian of its mean and std."""
  labels = np.repeat(np.arange(len(means)), n // len(means) + 1)[:n]
  labels = np.broadcast_to(labels[:, None, None], (n, n, n)).copy()
  rng = np.random.default_rng(seed)
  image = np.asarray(means, float)[labels] + np.asarray(stds, float)[labels] * rng.normal(
    size=labels.shape
  )
  return image, labels


def ranges(priors):
  return ({v: (lo, hi) for v, lo, hi in priors.mean}, {v: (lo, hi) for v, lo, hi in priors.std})


def test_medians_and_mads_recover_the_gaussians_up_to_one_scale():
  image, labels = gaussian_image([0.0, 400.0, 800.0, 1200.0], [0.0, 20.0, 40.0, 10.0])
  p = priors_lib.estimate([image], [labels], spacing=2.0, mean_margin=0.0, std_factor=1.0)
  mean, std = ranges(p)
  assert p.labels == (1, 2, 3) and p.spacing == (2.0, 2.0, 2.0) and p.num_images == 1
  # One image, no margin: each range is a point; the scale maps the top of label 3 to 255.
  s = mean[3][0] / 1200.0
  assert 255.0 / (1200 + 3 * 10) < s < 255.0 / 1200
  for v, (m, sd) in {1: (400, 20), 2: (800, 40), 3: (1200, 10)}.items():
    assert mean[v][0] == mean[v][1] and std[v][0] == std[v][1]
    assert mean[v][0] == pytest.approx(m * s, rel=0.01)
    assert std[v][0] == pytest.approx(sd * s, rel=0.05)


def test_ranges_span_the_images_with_margin_and_factor():
  images, maps = [], []
  for i, m in enumerate([300.0, 500.0, 400.0]):
    image, labels = gaussian_image([0.0, m, 1000.0], [0.0, 10.0 * (i + 1), 10.0], seed=i)
    images.append(image)
    maps.append(labels)
  tight = priors_lib.estimate(images, maps, spacing=1.0, mean_margin=0.0, std_factor=1.0)
  wide = priors_lib.estimate(images, maps, spacing=1.0, mean_margin=0.1, std_factor=1.5)
  (tm, ts), (wm, ws) = ranges(tight), ranges(wide)
  s = tm[2][1] / 1000.0  # label 2 is the top of every image, at the same intensity
  assert tm[1] == pytest.approx((300 * s, 500 * s), rel=0.01)
  assert ts[1] == pytest.approx((10 * s, 30 * s), rel=0.06)
  assert wm[1] == pytest.approx((tm[1][0] - 25.5, tm[1][1] + 25.5))
  assert ws[1] == pytest.approx((ts[1][0] / 1.5, ts[1][1] * 1.5))


def test_estimate_is_robust_and_scale_free():
  image, labels = gaussian_image([0.0, 100.0, 200.0], [0.0, 5.0, 5.0])
  base = priors_lib.estimate([image], [labels], spacing=1.0)
  scaled = priors_lib.estimate([image * 7.0], [labels], spacing=1.0)
  for a, b in zip(ranges(scaled), ranges(base)):
    assert a.keys() == b.keys()
    for v in a:
      assert a[v] == pytest.approx(b[v], rel=1e-9)
  spoilt = image.copy()
  rng = np.random.default_rng(1)
  hit = (labels == 1) & (rng.random(labels.shape) < 0.01)
  spoilt[hit] = 150.0  # 1 % of label 1 far off: a mean and std would move, not the median
  (m0, s0), (m1, s1) = ranges(base), ranges(priors_lib.estimate([spoilt], [labels], spacing=1.0))
  assert m1[1] == pytest.approx(m0[1], abs=0.5)
  assert s1[1] == pytest.approx(s0[1], rel=0.05)


def test_classes_pool_their_labels():
  image, labels = gaussian_image([0.0, 100.0, 120.0, 300.0], [0.0, 5.0, 5.0, 5.0])
  pooled = priors_lib.estimate([image], [labels], spacing=1.0, classes=[(1, 2)])
  merged = priors_lib.estimate([image], [np.where(labels == 2, 1, labels)], spacing=1.0)
  mean, std = ranges(pooled)
  assert mean[1] == mean[2] == ranges(merged)[0][1]
  assert std[1] == std[2] == ranges(merged)[1][1]
  assert mean[3] == ranges(merged)[0][3]


def test_bad_input_is_named():
  image, labels = gaussian_image([0.0, 100.0, 200.0], [0.0, 5.0, 5.0])
  with pytest.raises(ValueError, match="scan-b.*shape"):
    priors_lib.estimate(
      [image, image], [labels, labels[1:]], spacing=1.0, names=["scan-a", "scan-b"]
    )
  bad = image.copy()
  bad[0, 0, 0] = np.nan
  with pytest.raises(ValueError, match="image 0.*non-finite"):
    priors_lib.estimate([bad], [labels], spacing=1.0)
  with pytest.raises(ValueError, match="label 1 is in more than one class"):
    priors_lib.estimate([image], [labels], spacing=1.0, classes=[(1, 2), (1,)])
  with pytest.raises(ValueError, match=r"label\(s\) \[1\] have fewer than"):
    priors_lib.estimate([image], [labels], spacing=1.0, min_voxels=10**6)
  with pytest.raises(ValueError, match="one label map"):
    priors_lib.estimate([image], [], spacing=1.0)
  with pytest.raises(ValueError, match="same labels"):
    priors_lib.IntensityPriors(mean=((1, 0.0, 1.0),), std=((2, 0.0, 1.0),))
  with pytest.raises(ValueError, match="label more than once"):
    synthjax.GMMConfig(label_mean=((1, 0.0, 1.0), (1, 2.0, 3.0)))
  with pytest.raises(ValueError, match=r"label_std\[label 1\] must be non-negative"):
    synthjax.GMMConfig(label_std=((1, -1.0, 1.0),))


PRIORS = priors_lib.IntensityPriors(
  mean=((1, 40.0, 60.0), (2, 150.0, 160.0)),
  std=((1, 2.0, 4.0), (2, 1.0, 2.0)),
  spacing=(2.0,) * 3,
  num_images=3,
)


@pytest.fixture(scope="module")
def synthseg_with_priors():
  return synthjax.presets.synthseg((0, 1, 2, 3), (8, 8, 8), (2.0,) * 3, priors=PRIORS)


def test_preset_draws_the_labels_of_the_priors_from_their_ranges(synthseg_with_priors):
  cfg = synthseg_with_priors
  keys = jax.random.split(jax.random.key(0), 400)
  draw = lambda k: gmm_stage.sample_gmm(k, cfg.gmm, cfg.label_values)  # noqa: E731
  batched = jax.vmap(draw)(keys)
  eager = draw(keys[3])
  jitted = jax.jit(draw)(keys[3])
  for p in (eager, jitted):
    np.testing.assert_array_equal(p["means"], batched["means"][3])
  # The full sampler draws the stage's params from its own key: the same ranges.
  full = synthjax.sample_params(keys[3], cfg)["gmm"]["means"]
  assert 40.0 <= full[1] <= 60.0 and 150.0 <= full[2] <= 160.0
  means = np.asarray(batched["means"])
  stds = np.asarray(batched["stds"])
  assert means[:, 1].min() >= 40.0 and means[:, 1].max() <= 60.0
  assert means[:, 2].min() >= 150.0 and means[:, 2].max() <= 160.0
  # No noise_spacing in synthseg: stds hold at its 2 mm voxel, as measured.
  assert stds[:, 1].min() >= 2.0 and stds[:, 1].max() <= 4.0
  # Labels without priors keep the preset's ranges, drawn as without priors.
  plain = synthjax.presets.synthseg((0, 1, 2, 3), (8, 8, 8), (2.0,) * 3)
  assert means[:, 3].min() < 30.0 and means[:, 3].max() > 220.0
  ref = jax.vmap(lambda k: gmm_stage.sample_gmm(k, plain.gmm, plain.label_values))(keys)
  np.testing.assert_array_equal(means[:, [0, 3]], np.asarray(ref["means"])[:, [0, 3]])


def test_stds_are_converted_to_the_noise_voxel():
  cfg = synthjax.presets.fetal(tuple(range(8)), (8, 8, 8), (2.0,) * 3, priors=PRIORS)
  rows = {v: (lo, hi) for v, lo, hi in cfg.gmm.label_std}
  # Measured on 2 mm voxels, given for the 0.5 mm noise voxel: sqrt(64) = 8 times the spread.
  assert rows[1] == pytest.approx((16.0, 32.0)) and rows[2] == pytest.approx((8.0, 16.0))
  assert PRIORS.stds_at((1.0, 1.0, 8.0)) == PRIORS.std


def test_fetal_subclusters_draw_from_the_hull_of_their_labels():
  p = priors_lib.IntensityPriors(
    mean=((1, 150.0, 200.0), (4, 180.0, 250.0), (2, 90.0, 120.0)),
    std=((1, 1.0, 2.0), (4, 2.0, 3.0), (2, 1.0, 1.5)),
    spacing=(0.5,) * 3,
  )
  for seeds in (False, True):
    cfg = synthjax.presets.fetal(tuple(range(8)), (8, 8, 8), (0.5,) * 3, seeds=seeds, priors=p)
    # FeTA meta-labels: (1, 4) CSF, (2, 6) GM, (3, 5, 7) WM: WM has no priors.
    assert cfg.subclusters.meta_mean == ((1, 150.0, 250.0), (2, 90.0, 120.0))
    assert cfg.subclusters.meta_std == ((1, 1.0, 3.0), (2, 1.0, 1.5))
    keys = jax.random.split(jax.random.key(1), 300)
    sub = jax.vmap(
      functools.partial(
        subclusters.sample_subclusters,
        cfg=cfg.subclusters,
        gmm=cfg.gmm,
        n_meta=subclusters.num_meta(cfg),
      )
    )(keys)
    m, s = np.asarray(sub["means"]), np.asarray(sub["stds"])
    assert m[:, 0].min() >= 150.0 and m[:, 0].max() <= 250.0
    assert m[:, 1].min() >= 90.0 and m[:, 1].max() <= 120.0
    assert s[:, 0].min() >= 1.0 and s[:, 0].max() <= 3.0
    assert m[:, 2].min() < 60.0 and m[:, 2].max() > 190.0  # WM keeps FetalSynthGen's 25..225


def test_priors_for_unknown_labels_are_refused():
  p = priors_lib.IntensityPriors(mean=((9, 1.0, 2.0),), std=((9, 1.0, 2.0),))
  with pytest.raises(ValueError, match=r"label\(s\) \[9\]"):
    synthjax.presets.synthseg((0, 1), (8, 8, 8), priors=p)
  with pytest.raises(ValueError, match=r"gmm.label_mean names label\(s\) \[9\]"):
    synthjax.presets.synthseg((0, 1), (8, 8, 8), gmm={"label_mean": ((9, 1.0, 2.0),)})
  with pytest.raises(TypeError, match="IntensityPriors"):
    synthjax.presets.synthseg((0, 1), (8, 8, 8), priors={"mean": ()})
  cfg = synthjax.presets.fetal((0, 1, 2), (8, 8, 8), subclusters={"meta_mean": ((5, 0, 1),)})
  with pytest.raises(ValueError, match=r"meta_mean names meta-label\(s\) \[5\]"):
    synthjax.sample_params(jax.random.key(0), cfg)


def test_priors_and_configs_round_trip_through_json(synthseg_with_priors):
  again = priors_lib.IntensityPriors.from_json(PRIORS.to_json())
  assert again == PRIORS
  cfg = synthseg_with_priors
  assert synthjax.SynthConfig.from_json(cfg.to_json()) == cfg


def test_sample_gmm_without_label_ranges_draws_as_the_shared_range():
  cfg = synthjax.GMMConfig(mean=(10.0, 90.0), std=(1.0, 5.0))
  key = jax.random.key(3)
  out = gmm_stage.sample_gmm(key, cfg, (0, 1, 2, 5))
  k = jax.random.split(key, 3)
  ref = jax.random.uniform(k[0], (4,), minval=10.0, maxval=90.0)
  np.testing.assert_array_equal(out["means"], ref)
  np.testing.assert_array_equal(gmm_stage.sample_gmm(key, cfg, 4)["means"], ref)


def test_rendered_images_show_the_estimated_intensities():
  """estimate -> render -> estimate: a GMM-only rendering of one image's priors (point
  ranges) has that image's intensities again."""
  image, labels = gaussian_image([0.0, 300.0, 700.0, 1000.0], [0.0, 30.0, 20.0, 40.0], n=32)
  p = priors_lib.estimate([image], [labels], spacing=1.0, mean_margin=0.0, std_factor=1.0)
  cfg = synthjax.presets.synthseg(
    (0, 1, 2, 3), (32, 32, 32), (1.0,) * 3, priors=p, gmm={"prob_background_zero": 1.0}, **ALL_OFF
  )
  params = synthjax.sample_params(jax.random.key(0), cfg)
  rendered, _ = synthjax.synthesize(jax.random.key(1), params, labels, cfg)
  again = priors_lib.estimate(
    [np.asarray(rendered, np.float64)], [labels], spacing=1.0, mean_margin=0.0, std_factor=1.0
  )
  (m0, s0), (m1, s1) = ranges(p), ranges(again)
  for v in (1, 2, 3):
    assert m1[v][0] == pytest.approx(m0[v][0], rel=0.02)
    assert s1[v][0] == pytest.approx(s0[v][0], rel=0.1)


def test_mni152_t1_white_matter_is_brighter_than_grey_matter_and_csf():
  pytest.importorskip("nilearn")
  from synthjax._src import mni152

  t1, labels, _ = mni152.t1_and_tissues()
  t1, labels = t1[::2, ::2, ::2], labels[::2, ::2, ::2]  # 2 mm: the same tissues, faster
  p = priors_lib.estimate([t1], [labels], spacing=2.0, mean_margin=0.0, std_factor=1.0)
  mean, std = ranges(p)
  assert p.labels == (1, 2, 3)
  assert mean[3][0] > mean[2][0] + 30.0 > mean[1][0] + 30.0  # T1: WM > GM > CSF
  assert all(0.0 < std[v][0] < 60.0 for v in (1, 2, 3))


@pytest.mark.skipif(not ATLAS.exists(), reason=f"{ATLAS} not present")
def test_fetal_t2w_csf_and_ventricles_are_brighter_than_white_matter_and_cortex():
  from synthjax._src import scans

  name = "sub-ga30op"
  scan, grid = scans.load_pair(
    ATLAS / name / "anat" / f"{name}_T2w.nii.gz",
    ATLAS / name / "anat" / f"{name}_dseg.nii.gz",
    (2.0,) * 3,
    normalize=False,
  )
  p = priors_lib.estimate(
    [scan.image], [grid], spacing=2.0, mean_margin=0.0, std_factor=1.0, names=[name]
  )
  mean, _ = ranges(p)
  assert p.labels == tuple(range(1, 8))
  # T2w: fluid is bright, the cortical ribbon dark (FeTA: 1 eCSF, 2 cortex, 3 WM, 4
  # ventricles).
  assert mean[4][0] > mean[3][0] + 20.0 and mean[1][0] > mean[3][0] + 20.0
  assert mean[3][0] > mean[2][0]


def test_priors_files_load_and_bad_files_are_named(tmp_path):
  path = tmp_path / "p.json"
  path.write_text(PRIORS.to_json())
  assert priors_lib.load(path) == PRIORS
  (tmp_path / "bad.json").write_text('{"mean": 3}')
  with pytest.raises(ValueError, match="bad.json: not an intensity priors JSON"):
    priors_lib.load(tmp_path / "bad.json")
  with pytest.raises(ValueError, match="missing.json"):
    priors_lib.load(tmp_path / "missing.json")


def test_estimate_priors_command_reads_a_folder_of_pairs(tmp_path):
  import subprocess
  import sys

  import nibabel as nib

  script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "estimate_priors.py"
  for i, (sub, m) in enumerate((("sub-a", 300.0), ("sub-b", 500.0), ("sub-c", 900.0))):
    image, labels = gaussian_image([0.0, m, 1000.0], [0.0, 10.0, 10.0], n=16, seed=i)
    folder = tmp_path / sub / "anat"
    folder.mkdir(parents=True)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(image.astype(np.float32), affine), str(folder / f"{sub}_T2w.nii.gz"))
    nib.save(nib.Nifti1Image(labels.astype(np.int16), affine), str(folder / f"{sub}_dseg.nii.gz"))
  out = tmp_path / "priors.json"

  def estimate(*argv):
    return subprocess.run(
      [sys.executable, str(script), "--real-dir", str(tmp_path), *argv, "--out", str(out)],
      capture_output=True,
      text=True,
      timeout=300,
    )

  proc = estimate(
    "--match", "sub-(a|b)", "--spacing", "2", "--mean-margin", "0", "--std-factor", "1"
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  p = priors_lib.load(out)
  mean, _ = ranges(p)
  assert p.num_images == 2 and p.spacing == (2.0, 2.0, 2.0)
  assert mean[1][1] / mean[1][0] == pytest.approx(500.0 / 300.0, rel=0.02)  # sub-c left out
  proc = estimate("--match", "sub-z")
  assert proc.returncode == 1 and "matches 'sub-z'" in proc.stderr


def test_fetal_preset_draws_feta_tissues_from_the_fetal_t2w_priors():
  t2w = priors_lib.FETAL_T2W
  cfg = synthjax.presets.fetal(tuple(range(8)), (8, 8, 8), (2.0,) * 3)
  assert cfg.gmm.label_mean == t2w.mean and cfg.subclusters.meta_mean  # classes too
  # Means alone: the stds keep FetalSynthGen's ranges for 0.5 mm voxels.
  assert t2w.std == () and cfg.gmm.label_std == () and cfg.subclusters.meta_std == ()
  # T2w: fluid brightest, the cortex darkest of the cerebrum.
  low = {v: lo for v, lo, _ in t2w.mean}
  high = {v: hi for v, _, hi in t2w.mean}
  assert low[4] > low[3] > low[2] and high[4] > high[3] > high[2]
  wide = synthjax.presets.fetal(tuple(range(8)), (8, 8, 8), (2.0,) * 3, priors=None)
  assert wide.gmm.label_mean == () and wide.subclusters.meta_mean == ()
  assert wide == cfg.replace(
    gmm={"label_mean": (), "label_std": ()}, subclusters={"meta_mean": (), "meta_std": ()}
  )
  other = synthjax.presets.fetal((0, 1, 2), (8, 8, 8))  # not FeTA's labels: no priors
  assert other.gmm.label_mean == ()
  with pytest.raises(ValueError, match="'fetal_t1w'"):
    synthjax.presets.fetal(tuple(range(8)), (8, 8, 8), priors="fetal_t1w")
