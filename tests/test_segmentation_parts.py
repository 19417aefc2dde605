"""The segmentation recipe's parts against references: convolutions, upsampling, norms,
the DiceCE loss, metrics, slice sampling, scan geometry (orientation, spacing, blocks)."""

import itertools
import os

import chex
import numpy as np
import pytest
from absl.testing import parameterized

pytest.importorskip("flax")
pytest.importorskip("optax")

import jax
import jax.numpy as jnp
import nibabel as nib
from _maps import nested_balls
from flax import nnx
from scipy import ndimage
from scipy.spatial.distance import cdist

from synthjax._src import scans
from synthjax._src.train import losses, metrics, model, steps


class ConvolutionTest(chex.TestCase):
  """Both convolution implementations are scipy's 'same' cross-correlation, eagerly and
  under jit."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(2, 3)
  def test_im2col_and_xla_convolutions_match_scipy(self, dim):
    rng = np.random.default_rng(dim)
    size = (9, 8, 7)[:dim]
    x = rng.normal(size=(2,) + size + (3,)).astype(np.float32)
    convs = {
      impl: model.Conv(3, 4, dim=dim, impl=impl, rngs=nnx.Rngs(1)) for impl in model.CONV_IMPLS
    }
    w = np.asarray(convs["im2col"].kernel[...])
    # scipy: 'same' cross-correlation with zero padding, summed over input channels.
    ref = np.zeros((2,) + size + (4,), np.float64)
    for b, ci, co in itertools.product(range(2), range(3), range(4)):
      ref[(b,) + (Ellipsis,) + (co,)] += ndimage.correlate(
        x[(b,) + (Ellipsis,) + (ci,)].astype(np.float64), w[..., ci, co], mode="constant"
      )
    for impl, conv in convs.items():
      out = self.variant(lambda a, c=conv: c(a))(jnp.asarray(x))
      np.testing.assert_allclose(np.asarray(out), ref, atol=2e-5, err_msg=impl)


@pytest.mark.parametrize("dim", [2, 3])
def test_transposed_upsampling_is_a_stride2_kernel2_transposed_conv(dim):
  rng = np.random.default_rng(0)
  size = (3, 4, 2)[:dim]
  up = model.Upsample(3, 2, dim=dim, mode="transpose", rngs=nnx.Rngs(0))
  x = rng.normal(size=(1,) + size + (3,)).astype(np.float32)
  k = np.asarray(up.kernel[...]).reshape((3,) + (2,) * dim + (2,))
  ref = np.zeros((1,) + tuple(2 * n for n in size) + (2,), np.float64)
  for idx in itertools.product(*(range(n) for n in size)):
    for off in itertools.product(range(2), repeat=dim):
      out_idx = tuple(2 * i + o for i, o in zip(idx, off))
      ref[(0,) + out_idx] += x[(0,) + idx] @ k[(slice(None),) + off]
  out = np.asarray(jax.jit(lambda a: up(a))(jnp.asarray(x)))
  np.testing.assert_allclose(out, ref, atol=1e-5)


def test_group_and_instance_norm_match_numpy():
  rng = np.random.default_rng(0)
  x = (3 + 2 * rng.normal(size=(2, 5, 6, 4, 8))).astype(np.float32)
  for groups in (8, 2):
    norm = model.GroupNorm(8, groups)
    g = x.reshape(2, 5, 6, 4, groups, 8 // groups)
    mean = g.mean(axis=(1, 2, 3, 5), keepdims=True)
    var = g.var(axis=(1, 2, 3, 5), keepdims=True)
    ref = ((g - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(np.asarray(norm(jnp.asarray(x))), ref, atol=1e-4)


@pytest.mark.parametrize(
  "options",
  [
    dict(dim=3, features=(4, 8, 16)),
    dict(dim=2, features=(4, 8), norm="group", activation="elu", upsample="resize"),
    dict(dim=3, features=(4, 8), norm="none", conv_impl="xla", convs_per_level=1),
  ],
)
def test_unet_shapes_vmap_and_shape_errors(options):
  net = model.UNet(5, rngs=nnx.Rngs(0), **options)
  # Jitted as the train step runs it (eagerly, each layer's ops would compile one by one).
  apply = nnx.jit(lambda m, v: m(v))
  size = (8, 8, 8)[: options["dim"]]
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3,) + size + (1,)), jnp.float32)
  y = apply(net, x)
  assert y.shape == (3,) + size + (5,)
  # Per-sample maps: a batch equals its samples one by one (norms are per sample).
  one = jnp.concatenate([apply(net, x[i : i + 1]) for i in range(3)])
  np.testing.assert_allclose(np.asarray(y), np.asarray(one), atol=1e-5)
  bad = (3,) + tuple(n + 1 for n in size) + (1,)
  with pytest.raises(ValueError, match="divisible by"):
    apply(net, jnp.zeros(bad))


def test_dice_ce_loss_matches_monai_formula():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
  targets = rng.integers(0, 3, size=(2, 4, 5))
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  onehot = np.eye(3)[targets]
  ce = -np.mean(np.sum(onehot * np.log(p), -1))
  inter = (p * onehot).sum((1, 2))
  denom = p.sum((1, 2)) + onehot.sum((1, 2))
  dice = np.mean((2 * inter + 1e-5) / (denom + 1e-5))
  loss, d = jax.jit(losses.dice_ce_loss)(jnp.asarray(logits), jnp.asarray(targets))
  np.testing.assert_allclose(float(loss), ce + 1 - dice, rtol=1e-5)
  np.testing.assert_allclose(float(d), dice, rtol=1e-5)
  # A perfect, confident prediction has loss near 0.
  perfect = 50.0 * (2 * onehot - 1)
  assert float(losses.dice_ce_loss(jnp.asarray(perfect), jnp.asarray(targets))[0]) < 1e-4


def _brute_surface(mask):
  """Voxels of `mask` with a face neighbour outside it, the array padded with background."""
  padded = np.pad(mask, 1)
  inner = np.ones_like(mask)
  for axis in range(mask.ndim):
    for shift in (-1, 1):
      inner &= np.roll(padded, shift, axis)[1:-1, 1:-1, 1:-1]
  return mask & ~inner


def _brute_metrics(pred, truth, label, spacing):
  """Dice (MONAI's `ignore_empty`) and HD95 (the larger directed 95th percentile of the
  distances between surface voxels, from all pairs), for one label."""
  p, t = pred == label, truth == label
  dice = 2 * np.sum(p & t) / (p.sum() + t.sum()) if t.any() else np.nan
  if not p.any() or not t.any():
    return dice, np.nan
  dist = cdist(np.argwhere(_brute_surface(p)) * spacing, np.argwhere(_brute_surface(t)) * spacing)
  return dice, max(np.percentile(dist.min(1), 95), np.percentile(dist.min(0), 95))


def _metric_cases():
  """(pred, truth, spacing): shifted cubes (one touching the border), random blobs, a label
  only in the prediction, one only in the truth, scattered voxels."""
  cases = []
  truth = np.zeros((20, 20, 20), np.int32)
  truth[4:12, 4:12, 4:12] = 1
  truth[0:5, 15:20, 10:20] = 2  # touches the array's border
  pred = np.zeros_like(truth)
  pred[6:14, 4:12, 4:12] = 1
  pred[0:4, 14:20, 12:20] = 2
  pred[0, 0, 0] = 3  # only in the prediction
  truth[18, 0, 0] = 4  # only in the truth
  cases.append((pred, truth, (1.0, 2.0, 0.5)))
  rng = np.random.default_rng(0)
  for spacing in ((1.0, 1.0, 1.0), (0.8, 1.2, 3.0)):
    smooth = lambda: ndimage.gaussian_filter(rng.normal(size=(14, 16, 12)), 2.0)
    a, b = smooth(), smooth() * 0.5
    t = np.digitize(a, np.quantile(a, [0.5, 0.8])).astype(np.int32)
    p = np.digitize(a + b, np.quantile(a + b, [0.55, 0.85])).astype(np.int32)
    p[rng.random(p.shape) < 0.01] = 1  # scattered false positives
    cases.append((p, t, spacing))
  return cases


def test_metrics_against_brute_force():
  for pred, truth, spacing in _metric_cases():
    labels = [1, 2, 3, 4]
    dice = metrics.dice_per_label(pred, truth, labels)
    for v in labels:
      ref_dice, ref_hd = _brute_metrics(pred, truth, v, np.asarray(spacing))
      np.testing.assert_allclose(dice[v], ref_dice, rtol=1e-12)
      np.testing.assert_allclose(metrics.hausdorff95(pred, truth, v, spacing), ref_hd, rtol=1e-9)
  pred, truth, _ = _metric_cases()[0]
  d = metrics.dice_per_label(pred, truth, [1, 2, 3, 4, 5])
  assert d[1] == pytest.approx(2 * 6 * 64 / (512 + 512))
  # A label the truth lacks has no score (MONAI's default), predicted or not; one the
  # prediction misses scores 0.
  assert np.isnan(d[3]) and np.isnan(d[5]) and d[4] == 0.0
  assert metrics.mean_score(d) == pytest.approx((d[1] + d[2] + 0.0) / 3)
  other = metrics.dice_per_label(pred, truth, [3, 5], ignore_empty=False)
  assert other == {3: 0.0, 5: 1.0}
  assert np.isnan(metrics.hausdorff95(pred, truth, 3))
  assert np.isnan(metrics.hausdorff95(pred, truth, 4))
  assert metrics.hausdorff95(truth, truth, 1, (2.0, 1.0, 1.0)) == 0.0
  # Volumes: voxel counts times |det| of the affine's 3x3 part, in mL.
  affine = np.array([[0, 1.5, 0, 3], [-2.0, 0, 0, 1], [0, 0, 0.5, 0], [0, 0, 0, 1]])
  vol = metrics.label_volumes(truth, affine, [0, 1, 2, 7])
  assert vol["voxel_volume_mm3"] == pytest.approx(1.5)
  assert set(vol["labels"]) == {"1", "2", "4", "7"}
  assert vol["labels"]["1"] == {"voxels": 512, "mL": pytest.approx(512 * 1.5 / 1000)}
  assert vol["labels"]["7"] == {"voxels": 0, "mL": 0.0}


def test_scan_records_and_their_mean_over_scans():
  """A scan's record is its Dice per label (brute force), their mean, and HD95 when given a
  spacing; the mean over scans averages each label over the scans whose truth has it."""
  labels = [1, 2, 3, 4]
  cases = _metric_cases()
  records = [metrics.score_scan(p, t, labels, spacing=sp) for p, t, sp in cases]
  for (pred, truth, spacing), rec in zip(cases, records, strict=True):
    for v in labels:
      ref_dice, ref_hd = _brute_metrics(pred, truth, v, np.asarray(spacing))
      np.testing.assert_allclose(rec["per_label"][str(v)], ref_dice, rtol=1e-12)
      np.testing.assert_allclose(rec["hd95"][str(v)], ref_hd, rtol=1e-9)
    finite = [d for d in rec["per_label"].values() if np.isfinite(d)]
    assert rec["mean_dice"] == pytest.approx(np.mean(finite))
  assert "hd95" not in metrics.score_scan(*cases[0][:2], labels)
  mean = metrics.mean_over_scans(records)
  table = np.array([[r["per_label"][str(v)] for v in labels] for r in records])
  for j, v in enumerate(labels):
    column = table[:, j][np.isfinite(table[:, j])]
    expect = column.mean() if column.size else np.nan
    np.testing.assert_allclose(mean["per_label"][str(v)], expect, equal_nan=True)
  assert mean["mean_dice"] == pytest.approx(np.mean([r["mean_dice"] for r in records]))
  assert mean["min_dice"] == min(r["mean_dice"] for r in records)
  with pytest.raises(ValueError, match="no scan records"):
    metrics.mean_over_scans([])


def test_metrics_match_monai():
  """Dice per label as `DiceMetric(include_background=True)` on one-hot maps (with and
  without `ignore_empty`) and HD95 as `compute_hausdorff_distance(percentile=95, spacing)`,
  NaN included, on the cases above."""
  pytest.importorskip("monai")
  import warnings

  import torch
  from monai.metrics import DiceMetric, compute_hausdorff_distance

  labels = [1, 2, 3, 4]
  for pred, truth, spacing in _metric_cases():
    one_hot = lambda a: torch.as_tensor(np.stack([a == v for v in labels])[None]).float()
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # MONAI warns of the empty labels
      hd = compute_hausdorff_distance(
        one_hot(pred),
        one_hot(truth),
        include_background=True,
        percentile=95,
        spacing=[float(s) for s in spacing],
      )
    for ignore_empty in (True, False):
      dice = DiceMetric(include_background=True, reduction="none", ignore_empty=ignore_empty)(
        one_hot(pred), one_hot(truth)
      )
      ours = metrics.dice_per_label(pred, truth, labels, ignore_empty=ignore_empty)
      np.testing.assert_allclose([ours[v] for v in labels], dice[0].numpy(), rtol=1e-6)
    ours = [metrics.hausdorff95(pred, truth, v, spacing) for v in labels]
    np.testing.assert_allclose(ours, hd[0].numpy(), rtol=1e-5)


def test_take_slices_draws_distinct_slices_that_follow_the_key():
  b, x, y, z = 2, 4, 3, 10
  images = jnp.broadcast_to(jnp.arange(z, dtype=jnp.float32), (b, x, y, z))
  images = images + 100 * jnp.arange(b, dtype=jnp.float32)[:, None, None, None]
  targets = images.astype(jnp.int32)
  keys = jax.random.split(jax.random.key(0), b)
  fn = jax.jit(lambda k, i, t: steps.take_slices(k, i, t, 6))
  im, tg = fn(keys, images, targets)
  assert im.shape == (b * 6, x, y) and tg.shape == (b * 6, x, y)
  picked = np.asarray(im[:, 0, 0]).reshape(b, 6)
  for i in range(b):
    assert len(set(picked[i] - 100 * i)) == 6 and set(picked[i] - 100 * i) <= set(range(z))
  np.testing.assert_array_equal(np.asarray(tg[:, 0, 0]), picked.reshape(-1).astype(int))
  again, _ = fn(keys, images, targets)
  np.testing.assert_array_equal(np.asarray(again), np.asarray(im))
  other, _ = fn(jax.random.split(jax.random.key(1), b), images, targets)
  assert not np.array_equal(np.asarray(other), np.asarray(im))


def test_optimizer_schedules_follow_their_closed_forms():
  lr, n = 1e-2, 100
  cos = steps.make_optimizer(lr, n, schedule="cosine")
  params = {"w": jnp.zeros(())}
  state = cos.init(params)
  # Adam's first update has magnitude lr (bias-corrected, sign of the gradient).
  upd, _ = cos.update({"w": jnp.ones(())}, state, params)
  assert float(upd["w"]) == pytest.approx(-lr, rel=1e-3)
  with pytest.raises(ValueError, match="schedule"):
    steps.make_optimizer(lr, n, schedule="linear")


@pytest.mark.parametrize("codes", ["LPS", "ASR", "IPL"])
def test_canonical_orientation_round_trips(codes):
  rng = np.random.default_rng(0)
  data = rng.normal(size=(4, 5, 6)).astype(np.float32)
  ornt = nib.orientations.axcodes2ornt(codes)
  affine = nib.orientations.inv_ornt_aff(ornt, data.shape)
  affine = np.diag([1.5, 2.0, 2.5, 1.0]) @ np.linalg.inv(affine)
  img = nib.Nifti1Image(data, affine)
  can, can_affine, o = scans.canonical(img)
  assert nib.aff2axcodes(can_affine) == ("R", "A", "S")
  # Every voxel keeps its world position.
  for idx in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
    world = affine @ np.append(idx, 1)
    can_idx = np.round(np.linalg.solve(can_affine, world)[:3]).astype(int)
    assert can[tuple(can_idx)] == data[idx]
  np.testing.assert_array_equal(scans.from_canonical(can, o), data)


def test_block_downsampling_majority_mean_and_affine():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, size=(8, 6, 4)).astype(np.int32)
  f = (2, 3, 2)
  out = scans.downsample_labels(labels, f)
  for i, j, k in itertools.product(*(range(n) for n in out.shape)):
    block = labels[2 * i : 2 * i + 2, 3 * j : 3 * j + 3, 2 * k : 2 * k + 2].ravel()
    counts = np.bincount(block, minlength=4)
    assert out[i, j, k] == np.argmax(counts)  # ties: smallest value, as argmax
  image = rng.normal(size=(8, 6, 4)).astype(np.float32)
  mean = scans.downsample_image(image, f)
  np.testing.assert_allclose(mean[1, 1, 0], image[2:4, 3:6, 0:2].mean(), rtol=1e-6)
  # Coarse voxel (i, j, k) sits at the centre of its block.
  m = scans.block_affine(f)
  np.testing.assert_allclose(m @ [1, 1, 1, 1], [2 + 0.5, 3 + 1.0, 2 + 0.5, 1])


@pytest.mark.parametrize(
  "spacing,target", [((1.0, 1.0, 1.0), (2.0, 2.0, 2.0)), ((0.9, 1.3, 2.0), (1.5, 1.5, 1.5))]
)
def test_scan_to_training_grid_and_back_keeps_a_smooth_image(tmp_path, spacing, target):
  shape = (40, 36, 30)
  g = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"), -1)
  smooth = np.sin(g[..., 0] / 9.0) + np.cos(g[..., 1] / 11.0) + 0.02 * g[..., 2]
  affine = np.diag(list(spacing) + [1.0])
  affine[:3, 3] = [-10, 5, 3]
  path = str(tmp_path / "scan.nii.gz")
  nib.save(nib.Nifti1Image(smooth.astype(np.float32), affine), path)
  scan = scans.load_scan(path, target)
  expected = tuple(int(round(n * s / t)) for n, s, t in zip(shape, spacing, target))
  assert scan.image.shape == expected
  assert scan.image.min() == 0.0 and scan.image.max() == 1.0
  back = scan.to_native(scan.image[..., None], order=1)[..., 0]
  assert back.shape == shape
  # The normalised image mapped back matches the normalised original away from borders.
  lo, hi = smooth.min(), np.percentile(smooth, scans.UPPER_PERCENTILE)
  ref = np.clip((smooth - lo) / (hi - lo), 0, 1)
  inner = (slice(4, -4),) * 3
  assert np.abs(back[inner] - ref[inner]).mean() < 0.03


def test_scan_errors_name_the_file(tmp_path):
  p2 = str(tmp_path / "flat.nii.gz")
  nib.save(nib.Nifti1Image(np.zeros((4, 4), np.float32), np.eye(4)), p2)
  with pytest.raises(scans.ScanError, match="flat.nii.gz.*3-D"):
    scans.load_scan(p2, (1, 1, 1))
  p4 = str(tmp_path / "series.nii.gz")
  nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), p4)
  with pytest.raises(scans.ScanError, match="series.nii.gz.*3-D"):
    scans.load_scan(p4, (1, 1, 1))
  pn = str(tmp_path / "nan.nii.gz")
  data = np.zeros((4, 4, 4), np.float32)
  data[1, 1, 1] = np.nan
  nib.save(nib.Nifti1Image(data, np.eye(4)), pn)
  with pytest.raises(scans.ScanError, match="nan.nii.gz.*non-finite"):
    scans.load_scan(pn, (1, 1, 1))
  pt = str(tmp_path / "text.nii.gz")
  with open(pt, "w") as f:
    f.write("not a scan")
  with pytest.raises(scans.ScanError, match="text.nii.gz.*cannot read"):
    scans.load_scan(pt, (1, 1, 1))
  pf = str(tmp_path / "fine.nii.gz")
  nib.save(
    nib.Nifti1Image(np.zeros((64, 64, 64), np.float32), np.diag([0.01, 0.01, 0.01, 1.0])), pf
  )
  with pytest.raises(scans.ScanError, match="fine.nii.gz.*too large"):
    scans.load_scan(pf, (0.0001, 0.0001, 0.0001))
  with pytest.raises(scans.ScanError, match="IMAGE:LABELS"):
    scans.parse_pairs(["a.nii.gz"])
  with pytest.raises(scans.ScanError, match="no such file"):
    scans.parse_pairs([f"{pf}:{tmp_path}/missing.nii.gz"])


def test_find_pairs_takes_every_bids_like_pair_of_a_folder(tmp_path):
  for sub in ("sub-b", "sub-a"):
    folder = tmp_path / sub / "anat"
    folder.mkdir(parents=True)
    for kind in ("T2w", "dseg", "mask"):
      (folder / f"{sub}_{kind}.nii.gz").write_bytes(b"")
  (tmp_path / "sub-c.nii").write_bytes(b"")
  (tmp_path / "sub-c_T2w.nii").write_bytes(b"")
  (tmp_path / "sub-c_dseg.nii").write_bytes(b"")
  got = scans.find_pairs(tmp_path)
  rel = [tuple(os.path.relpath(p, tmp_path) for p in pair) for pair in got]
  assert rel == [
    ("sub-a/anat/sub-a_T2w.nii.gz", "sub-a/anat/sub-a_dseg.nii.gz"),
    ("sub-b/anat/sub-b_T2w.nii.gz", "sub-b/anat/sub-b_dseg.nii.gz"),
    ("sub-c_T2w.nii", "sub-c_dseg.nii"),
  ]
  # Several folders, filtered by a regular expression on the image path.
  picked = scans.pairs_in([tmp_path / "sub-a", tmp_path / "sub-b"], match="sub-(b|c)")
  assert [os.path.basename(p[0]) for p in picked] == ["sub-b_T2w.nii.gz"]
  with pytest.raises(scans.ScanError, match="matches 'sub-z'"):
    scans.pairs_in([tmp_path], match="sub-z")
  masks = scans.find_pairs(tmp_path / "sub-a", image_suffix="_mask", label_suffix="_dseg")
  assert [os.path.basename(p) for p in masks[0]] == ["sub-a_mask.nii.gz", "sub-a_dseg.nii.gz"]
  os.remove(tmp_path / "sub-b" / "anat" / "sub-b_dseg.nii.gz")
  with pytest.raises(scans.ScanError, match="sub-b_T2w.nii.gz: no label map .*sub-b_dseg"):
    scans.find_pairs(tmp_path)
  with pytest.raises(scans.ScanError, match=r"no image named \*_T1w"):
    scans.find_pairs(tmp_path, image_suffix="_T1w")
  with pytest.raises(scans.ScanError, match="nowhere: no such folder"):
    scans.find_pairs(tmp_path / "nowhere")


def test_labels_resampled_to_any_spacing_keep_each_volume():
  spacing, target = (0.8, 0.8, 0.8), (2.0, 2.0, 2.0)
  labels = nested_balls((60, 60, 50), (18.0, 12.0, 8.0), spacing)
  out, voxel_affine = scans.resample_labels(labels, spacing, target)
  assert out.shape == (24, 24, 20) and out.dtype == np.int32
  np.testing.assert_allclose(np.diag(voxel_affine)[:3], [2.5, 2.5, 2.5])
  # mm^3 per label within 7 % of the fine map's (the inner ball, 4 coarse voxels in radius,
  # loses 5 %: its blurred indicator falls below its neighbour's at the curved edge).
  for v in (0, 1, 2, 3):
    fine, coarse = (labels == v).sum() * 0.8**3, (out == v).sum() * 2.0**3
    assert coarse == pytest.approx(fine, rel=0.07), v
  # It agrees with scipy's nearest-neighbour zoom wherever that is not at a boundary.
  nearest = ndimage.zoom(labels, 0.4, order=0, grid_mode=True, mode="grid-constant")
  assert nearest.shape == out.shape
  assert (out == nearest).mean() > 0.9
  # Integer factors: the block majority vote exactly.
  out2, aff2 = scans.resample_labels(labels, spacing, (1.6, 1.6, 1.6))
  np.testing.assert_array_equal(out2, scans.downsample_labels(labels, (2, 2, 2)))
  np.testing.assert_allclose(aff2, scans.block_affine((2, 2, 2)))


def test_label_reader_brings_maps_of_any_voxel_size_to_one_spacing(tmp_path):
  maps = {}
  for name, s in (("fine", 0.5), ("atlas", 0.8)):
    shape = tuple(int(round(40 / s)) for _ in range(3))
    path = tmp_path / f"{name}_dseg.nii.gz"
    nib.save(
      nib.Nifti1Image(nested_balls(shape, (15.0, 8.0), s), np.diag([s, s, s, 1.0])), str(path)
    )
    maps[name] = scans.LabelReader(spacing=(2.0, 2.0, 2.0))(str(path))
  for data, affine in maps.values():
    assert data.shape == (20, 20, 20)
    np.testing.assert_allclose(np.diag(affine)[:3], [2.0, 2.0, 2.0])
  agree = (maps["fine"][0] == maps["atlas"][0]).mean()
  assert agree > 0.95
  with pytest.raises(scans.ScanError, match="not both"):
    scans.LabelReader(down=2, spacing=(2.0, 2.0, 2.0))
  with pytest.raises(scans.ScanError, match="three positive lengths"):
    scans.LabelReader(spacing=(2.0, 0.0, 2.0))
