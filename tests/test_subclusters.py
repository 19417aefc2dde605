"""Sub-label intensity classes (seed maps and procedural split) and image-as-intensity."""

import os

import jax
import jax.numpy as jnp
import nibabel as nib
import numpy as np
import pytest
from _batches import element
from _maps import boxes
from _tracing import jit_name, traced

import synthjax
from synthjax import presets
from synthjax._src import rendering
from synthjax._src.stages import gmm, subclusters
from synthjax.data import load_seed_maps

SHAPE = (24, 20, 16)
OFF = {
  name: {"enabled": False}
  for name in (
    "affine",
    "deformation",
    "flip",
    "bias",
    "gamma",
    "resolution",
    "noise",
    "blur_cortex",
    "struct_noise",
    "boundary",
    "slice_stack",
  )
}


def _labels():
  return boxes(
    SHAPE, (1, (4, 3, 2), (20, 17, 14)), (2, (8, 6, 4), (16, 14, 12)), (3, (10, 8, 6), (14, 12, 10))
  )


def _seeds(lab, k_max=4, n_meta=3, seed=0):
  """Random seed stack: meta-label m covers label m; entry K-1 has values 10m + k, k < K."""
  rng = np.random.default_rng(seed)
  out = np.zeros((k_max,) + lab.shape, np.int8)
  for k in range(1, k_max + 1):
    for m in range(1, n_meta + 1):
      where = lab == m
      out[k - 1][where] = 10 * m + rng.integers(0, k, where.sum())
  return out


def _config(**kw):
  cfg = presets.fetal((0, 1, 2, 3), SHAPE, spacing=(1.0, 1.0, 1.0), **OFF)
  return cfg.replace(**kw)


def test_seed_classes_match_numpy():
  lab = _labels()
  seeds = _seeds(lab)
  cfg = _config(
    subclusters={"source": "seeds", "num_subclusters": (1, 4), "num_meta": 3, "prob": 1.0}
  ).subclusters
  counts = np.array([2, 4, 1], np.int32)
  got = np.asarray(subclusters.seed_classes(jnp.asarray(seeds), jnp.asarray(counts), cfg))
  want = np.zeros(SHAPE, np.int32)
  for m in range(1, 4):
    where = lab == m
    want[where] = 1 + (m - 1) * 4 + seeds[counts[m - 1] - 1][where] % 10
  np.testing.assert_array_equal(got, want)


def test_procedural_split_counts_and_balance():
  cfg = _config(
    subclusters={
      "prob": 1.0,
      "num_subclusters": (1, 5),
      "grid_scale": (0.3, 0.3),
      "meta_labels": ((1,), (2, 3)),
    }
  )
  p = synthjax.sample_params(
    jax.random.key(0), cfg, fixed={"subclusters": {"counts": [3, 2], "phase": [0.0, 0.5]}}
  )
  index = jnp.asarray(_labels())  # label values 0..3 are their own indices here
  cls = np.asarray(
    subclusters.procedural_classes(
      jax.random.key(1), p["subclusters"], cfg.subclusters, index, subclusters.meta_table(cfg)
    )
  )
  lab = _labels()
  assert (cls[lab == 0] == 0).all()
  assert set(np.unique(cls[lab == 1])) == {1, 2, 3}  # meta 0: 3 subclusters
  assert set(np.unique(cls[(lab == 2) | (lab == 3)])) == {6, 7}  # meta 1: 2 subclusters
  # The split field is uniform in (0, 1): over many voxels, subclusters are balanced.
  u = np.asarray(
    subclusters.split_field(
      jax.random.key(2), {"grid_scale": jnp.float32(0.3)}, cfg.subclusters, (40, 40, 40)
    )
  )
  hist = np.histogram(u, bins=4, range=(0, 1))[0] / u.size
  np.testing.assert_allclose(hist, 0.25, atol=0.08)


def test_render_unapplied_is_label_gmm_bitwise_and_applied_uses_tables():
  cfg = _config(subclusters={"prob": 1.0, "num_subclusters": (2, 2)})
  p = synthjax.sample_params(jax.random.key(3), cfg)
  index = jnp.asarray(_labels())
  classes = subclusters.procedural_classes(
    jax.random.key(4), p["subclusters"], cfg.subclusters, index, subclusters.meta_table(cfg)
  )
  key = jax.random.key(5)
  plain = gmm.render_gmm(key, p["gmm"], index, 0)
  off = dict(p["subclusters"], applied=jnp.asarray(False))
  np.testing.assert_array_equal(subclusters.render(key, p["gmm"], off, index, classes, 0), plain)
  fixed_std = dict(p["subclusters"], stds=jnp.zeros_like(p["subclusters"]["stds"]))
  img = np.asarray(subclusters.render(key, p["gmm"], fixed_std, index, classes, 0))
  means = np.concatenate([[0.0], np.asarray(p["subclusters"]["means"]).ravel()])
  cls = np.asarray(classes)
  np.testing.assert_allclose(img[cls > 0], means[cls[cls > 0]], rtol=1e-6)
  np.testing.assert_array_equal(img[cls == 0], np.asarray(plain)[cls == 0])


def test_related_classes_share_a_mean():
  cfg = _config(
    subclusters={"prob": 1.0, "num_subclusters": (3, 3), "related_metas": (1,), "related_std": 0.0}
  )
  p = synthjax.sample_params(jax.random.key(6), cfg)
  means = np.asarray(p["subclusters"]["means"])
  assert np.ptp(means[0]) == 0.0  # related: all at the shared mean
  assert np.ptp(means[1]) > 0.0  # independent draws
  lo, hi = cfg.gmm.mean
  assert (means >= lo).all() and (means <= hi).all()
  cfg2 = cfg.replace(subclusters={"related_std": 25.0})
  keys = jax.random.split(jax.random.key(7), 400)
  spread = np.asarray(synthjax.sample_params(keys, cfg2)["subclusters"]["means"])[:, 0]
  # Away from the clip, related means spread about their shared mean with std 25.
  dev = spread - spread.mean(axis=1, keepdims=True)
  assert 15 < dev.std() * np.sqrt(3 / 2) < 35


def _constant_class_image(cfg, lab, seeds=None, key=0, applied=None):
  p = synthjax.sample_params(jax.random.key(key), cfg)
  if applied is not None:
    p["subclusters"]["applied"] = jnp.asarray(applied)
  p["subclusters"]["stds"] = jnp.zeros_like(p["subclusters"]["stds"])
  p["gmm"]["stds"] = jnp.zeros_like(p["gmm"]["stds"])
  img, seg = synthjax.synthesize(jax.random.key(key + 1), p, lab, cfg, seeds=seeds)
  return p, np.asarray(img), np.asarray(seg)


def test_synthesize_with_seeds_renders_selected_subclusters():
  lab = _labels()
  seeds = _seeds(lab)
  cfg = _config(
    subclusters={"source": "seeds", "num_subclusters": (1, 4), "num_meta": 3, "prob": 1.0}
  )
  p, img, seg = _constant_class_image(cfg, lab, seeds)
  np.testing.assert_array_equal(seg, lab)
  counts = np.asarray(p["subclusters"]["counts"])
  want_cls = np.asarray(
    subclusters.seed_classes(jnp.asarray(seeds), jnp.asarray(counts), cfg.subclusters)
  )
  # Piecewise constant per class, with the class means' order (min-max normalised).
  means = np.concatenate([[0.0], np.asarray(p["subclusters"]["means"]).ravel()])
  for c in np.unique(want_cls[want_cls > 0]):
    vals = img[want_cls == c]
    assert np.ptp(vals) < 1e-6
  ref = np.where(want_cls > 0, means[want_cls], np.asarray(p["gmm"]["means"])[lab])
  ref = np.clip(ref, 0, cfg.gamma.clip)
  ref = (ref - ref.min()) / (ref.max() - ref.min())
  np.testing.assert_allclose(img, ref, atol=1e-5)


def test_seeds_jit_vmap_and_replay():
  lab = _labels()
  seeds = _seeds(lab)
  # The image stages after the intensity source play no part in the seed path: off, for
  # a smaller program.
  cfg = presets.fetal((0, 1, 2, 3), SHAPE, seeds=True, spacing=(1, 1, 1)).replace(
    subclusters={"num_subclusters": (1, 4), "num_meta": 3},
    **{
      s: {"enabled": False}
      for s in ("bias", "resolution", "slice_stack", "blur_cortex", "struct_noise", "boundary")
    },
  )
  keys = jax.random.split(jax.random.key(8), 3)
  params = synthjax.sample_params(keys, cfg)
  batch = jax.vmap(lambda k, p: synthjax.synthesize(k, p, lab, cfg, seeds=seeds))(keys, params)
  for i in range(3):
    p_i = element(params, i)
    img, seg = synthjax.synthesize(keys[i], p_i, lab, cfg, seeds=seeds)
    np.testing.assert_allclose(batch[0][i], img, atol=1e-6)
    np.testing.assert_array_equal(batch[1][i], seg)
    again = synthjax.synthesize(
      keys[i], synthjax.params_from_json(synthjax.params_to_json(p_i), cfg), lab, cfg, seeds=seeds
    )
    np.testing.assert_array_equal(again[0], img)
  p_1, seeds_1 = jax.tree.map(lambda a: a[1], params), _seeds(lab, seed=1)
  with traced() as seen:
    synthjax.synthesize(keys[0], p_1, lab, cfg, seeds=seeds_1)
  assert seen[jit_name(rendering._synthesize_jit)] == 0, seen


def test_seed_input_errors():
  lab = _labels()
  cfg = _config(
    subclusters={"source": "seeds", "num_subclusters": (1, 4), "num_meta": 3, "prob": 1.0}
  )
  p = synthjax.sample_params(jax.random.key(0), cfg)
  with pytest.raises(ValueError, match="pass seeds="):
    synthjax.synthesize(jax.random.key(0), p, lab, cfg)
  with pytest.raises(ValueError, match="seeds must have shape"):
    synthjax.synthesize(jax.random.key(0), p, lab, cfg, seeds=_seeds(lab)[:2])
  plain = _config()
  with pytest.raises(ValueError, match="does not use them"):
    synthjax.synthesize(
      jax.random.key(0),
      synthjax.sample_params(jax.random.key(0), plain),
      lab,
      plain,
      seeds=_seeds(lab),
    )


def test_procedural_default_in_fetal_preset_varies_within_labels():
  lab = _labels()
  cfg = _config()
  assert cfg.subclusters.enabled and cfg.subclusters.source == "procedural"
  # Drawn in half of the samples.
  applied = [
    bool(synthjax.sample_params(jax.random.key(k), cfg)["subclusters"]["applied"])
    for k in range(40)
  ]
  assert 10 <= sum(applied) <= 30
  p, img, _ = _constant_class_image(cfg, lab, key=10, applied=True)
  counts = np.asarray(p["subclusters"]["counts"])
  table = subclusters.meta_table(cfg)
  for v in (1, 2, 3):
    distinct = np.unique(np.round(img[lab == v], 6)).size
    assert distinct <= counts[table[v]]
  # Some label is split into several intensity levels.
  assert any(np.unique(np.round(img[lab == v], 6)).size > 1 for v in (1, 2, 3))
  # Not applied: each label is one level (its own Gaussian, stds zeroed here).
  _, img, _ = _constant_class_image(cfg, lab, key=10, applied=False)
  assert all(np.unique(np.round(img[lab == v], 6)).size == 1 for v in (1, 2, 3))


def test_image_as_intensity():
  lab = _labels()
  rng = np.random.default_rng(0)
  real = rng.uniform(10, 500, SHAPE).astype(np.float32)
  cfg = _config(image_intensity={"prob": 1.0}, subclusters={"enabled": False})
  p = synthjax.sample_params(jax.random.key(0), cfg)
  img, _ = synthjax.synthesize(jax.random.key(1), p, lab, cfg, image=real)
  ref = (real - real.min()) / (real.max() - real.min())
  np.testing.assert_allclose(np.asarray(img), ref, atol=1e-5)
  p["image_intensity"]["applied"] = jnp.asarray(False)
  off, _ = synthjax.synthesize(jax.random.key(1), p, lab, cfg, image=real)
  plain_cfg = _config(subclusters={"enabled": False})
  plain_p = {k: v for k, v in p.items()}
  want, _ = synthjax.synthesize(jax.random.key(1), plain_p, lab, plain_cfg)
  np.testing.assert_array_equal(np.asarray(off), np.asarray(want))
  with pytest.raises(ValueError, match="pass image="):
    synthjax.synthesize(jax.random.key(1), p, lab, cfg)


def test_config_validation():
  with pytest.raises(ValueError, match="at most 10"):
    synthjax.SubclusterConfig(num_subclusters=(1, 11))
  with pytest.raises(ValueError, match="source"):
    synthjax.SubclusterConfig(source="kmeans")
  with pytest.raises(ValueError, match="at most once"):
    synthjax.SubclusterConfig(meta_labels=((1, 2), (2,)))
  cfg = _config(subclusters={"meta_labels": ((1, 9),)})
  with pytest.raises(ValueError, match="label 9"):
    synthjax.sample_params(jax.random.key(0), cfg)
  cfg = _config(subclusters={"meta_labels": ((1,), (2, 3))})
  rt = synthjax.SynthConfig.from_json(cfg.to_json())
  assert rt.subclusters.meta_labels == ((1,), (2, 3))


def _write(path, arr):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  nib.save(nib.Nifti1Image(arr, np.eye(4)), path)


def test_load_seed_maps_layout_and_errors(tmp_path):
  lab = _labels()
  seeds = _seeds(lab, k_max=3, n_meta=3)
  label_path = str(tmp_path / "sub-01" / "anat" / "sub-01_dseg.nii.gz")
  _write(label_path, lab.astype(np.float32))
  root = tmp_path / "seeds"
  for k in range(1, 4):
    for m in range(1, 4):
      layer = np.where(seeds[k - 1] // 10 == m, seeds[k - 1], 0).astype(np.int8)
      _write(
        str(root / f"subclasses_{k}" / "sub-01" / "anat" / f"sub-01_dseg_mlabel_{m}.nii.gz"), layer
      )
  got = load_seed_maps(label_path, root, num_subclusters=3, num_meta=3)
  np.testing.assert_array_equal(got, seeds)
  with pytest.raises(FileNotFoundError, match="mlabel_4"):
    load_seed_maps(label_path, root, num_subclusters=3, num_meta=4)
  bad = np.where(seeds[0] // 10 == 1, 25, 0).astype(np.int8)
  _write(str(root / "subclasses_1" / "sub-01" / "anat" / "sub-01_dseg_mlabel_1.nii.gz"), bad)
  with pytest.raises(ValueError, match="mlabel_1.*not 10"):
    load_seed_maps(label_path, root, num_subclusters=3, num_meta=3)


FETAL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "fetal")


@pytest.mark.skipif(not os.path.isdir(FETAL), reason="../shared/data/fetal not present")
def test_real_seed_maps_follow_meta_labels():
  label_path = os.path.join(FETAL, "sub-sta21", "anat", "sub-sta21_rec-irtk_T2w_dseg.nii.gz")
  seeds = load_seed_maps(label_path, os.path.join(FETAL, "derivatives", "seeds"), num_subclusters=2)
  lab = np.asarray(nib.load(label_path).dataobj).astype(np.int32)
  assert seeds.shape == (2,) + lab.shape
  # FetalSynthGen's meta-labels: CSF covers external CSF, GM the cortex, WM the white matter.
  meta = seeds[0] // 10
  assert (meta[lab == 1] == 1).mean() > 0.99
  assert (meta[lab == 2] == 2).mean() > 0.99
  assert (meta[lab == 3] == 3).mean() > 0.99
  # The seed maps through the renderer, without the spatial and artifact stages (their
  # programs are tested elsewhere): a crop where every meta-label shows.
  crop = tuple(slice(112, 144) for _ in range(3))
  assert {1, 2, 3} <= set(np.unique(seeds[0][crop] // 10).tolist())
  cfg = presets.fetal(tuple(range(8)), (32, 32, 32), seeds=True, **OFF).replace(
    subclusters={"num_subclusters": (1, 2)}
  )
  p = synthjax.sample_params(jax.random.key(0), cfg)
  img, seg = synthjax.synthesize(
    jax.random.key(1), p, lab[crop], cfg, seeds=seeds[(slice(None),) + crop]
  )
  assert np.isfinite(np.asarray(img)).all() and set(np.unique(np.asarray(seg))) <= set(range(8))
