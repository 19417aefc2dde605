"""NiftiSource, patch samplers, splits and numpy keys."""

import pickle

import jax
import nibabel as nib
import numpy as np
import pytest

from synthjax import data


def _save(path, arr, affine=None):
  nib.save(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine), str(path))
  return str(path)


@pytest.fixture
def pairs(tmp_path):
  rng = np.random.default_rng(0)
  out = []
  for i, shape in enumerate([(20, 18, 16), (22, 18, 16), (20, 20, 18)]):
    sub = tmp_path / f"sub-{i:02d}" / "anat"
    sub.mkdir(parents=True)
    lab = rng.integers(0, 4, shape).astype(np.int16)
    img = rng.random(shape).astype(np.float32)
    aff = np.diag([1.0, 1.2, 0.8, 1.0])
    out.append((lab, img, aff))
    _save(sub / f"sub-{i:02d}_T2w_dseg.nii.gz", lab, aff)
    _save(sub / f"sub-{i:02d}_T2w.nii.gz", img, aff)
  return tmp_path, out


def test_from_pairs_reads_every_pair_with_affine_and_spacing(pairs):
  folder, truth = pairs
  src = data.NiftiSource.from_pairs(folder, cache=False)
  assert len(src) == 3 and not src.cached
  for i, (lab, img, aff) in enumerate(truth):
    el = src[i]
    np.testing.assert_array_equal(el["labels"].read(), lab)
    assert el["labels"].read().dtype == np.int32
    np.testing.assert_array_equal(el["image"].read(), img)
    np.testing.assert_allclose(el["affine"], aff)
    np.testing.assert_allclose(el["spacing"], [1.0, 1.2, 0.8])
    assert el["shape"] == lab.shape and el["path"].endswith("_T2w_dseg.nii.gz")


def test_lazy_patch_reads_only_its_region_and_source_pickles(pairs):
  folder, truth = pairs
  src = data.NiftiSource.from_pairs(folder, cache=False)
  vol = src[1]["labels"]
  patch = vol[3:9, 2:12, 5:7]
  np.testing.assert_array_equal(patch, truth[1][0][3:9, 2:12, 5:7])
  assert vol._data is None  # nothing cached: the proxy served the slice
  clone = pickle.loads(pickle.dumps(src))
  np.testing.assert_array_equal(clone[2]["image"][1:4, 1:4, 1:4], truth[2][1][1:4, 1:4, 1:4])


def test_cache_choice(pairs):
  folder, _ = pairs
  assert data.NiftiSource.from_pairs(folder).cached  # a few kB: auto caches
  src = data.NiftiSource.from_pairs(folder, cache=True)
  src[0]
  assert src[0]["labels"]._data is not None
  with pytest.raises(ValueError, match="cache"):
    data.NiftiSource.from_pairs(folder, cache="sometimes")


def test_from_folder_and_from_files(pairs):
  folder, truth = pairs
  src = data.NiftiSource.from_folder(folder, "**/*_dseg.nii.gz")
  assert len(src) == 3 and src.image_paths is None
  np.testing.assert_array_equal(src[0]["labels"].read(), truth[0][0])
  files = data.NiftiSource.from_files(src.label_paths[::-1])
  np.testing.assert_array_equal(files[0]["labels"].read(), truth[2][0])


def test_custom_reader_and_extension_filter(tmp_path):
  arr = np.arange(4 * 5 * 6).reshape(4, 5, 6) % 3
  np.save(tmp_path / "a.npy", arr)
  (tmp_path / "notes.txt").write_text("not a volume")
  src = data.NiftiSource.from_folder(tmp_path, "*", extensions=(".npy",), reader=np.load)
  assert len(src) == 1
  np.testing.assert_array_equal(src[0]["labels"].read(), arr)
  np.testing.assert_array_equal(src[0]["labels"][1:3, :, 2:4], arr[1:3, :, 2:4])


def test_reorientation_to_ras(tmp_path):
  rng = np.random.default_rng(1)
  lab = rng.integers(0, 5, (6, 7, 8)).astype(np.int16)
  lps = np.diag([-1.0, -1.0, 2.0, 1.0])
  path = _save(tmp_path / "lps_dseg.nii.gz", lab, lps)
  src = data.NiftiSource.from_files([path], canonical=True)
  ref = nib.as_closest_canonical(nib.load(path))
  np.testing.assert_array_equal(src[0]["labels"].read(), np.asarray(ref.dataobj))
  np.testing.assert_allclose(src[0]["affine"], ref.affine)
  assert src[0]["shape"] == ref.shape


@pytest.mark.parametrize(
  "case", ["empty", "unpaired", "shape", "affine", "corrupt", "missing", "rank", "float_labels"]
)
def test_bad_input_names_the_file(tmp_path, case):
  lab = np.zeros((6, 6, 6), np.int16)
  if case == "empty":
    with pytest.raises(ValueError, match="no file matches"):
      data.NiftiSource.from_folder(tmp_path)
    return
  if case == "missing":
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
      data.NiftiSource.from_files([tmp_path / "nope.nii.gz"])
    return
  if case == "unpaired":
    _save(tmp_path / "a_T2w_dseg.nii.gz", lab)
    _save(tmp_path / "a_T2w.nii.gz", lab.astype(np.float32))
    _save(tmp_path / "b_T2w.nii.gz", lab.astype(np.float32))
    with pytest.raises(ValueError, match="b_T2w.nii.gz.*no matching label map"):
      data.NiftiSource.from_pairs(tmp_path)
    return
  if case in ("shape", "affine"):
    _save(tmp_path / "a_T2w_dseg.nii.gz", lab)
    img = np.zeros((6, 6, 7) if case == "shape" else (6, 6, 6), np.float32)
    _save(tmp_path / "a_T2w.nii.gz", img, np.diag([2.0, 1, 1, 1]) if case == "affine" else None)
    with pytest.raises(ValueError, match=f"a_T2w.nii.gz.*{case}"):
      data.NiftiSource.from_pairs(tmp_path)
    return
  if case == "corrupt":
    (tmp_path / "bad_dseg.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ValueError, match="bad_dseg.nii.gz.*cannot read"):
      data.NiftiSource.from_folder(tmp_path)
    return
  if case == "rank":
    _save(tmp_path / "flat_dseg.nii.gz", np.zeros((6, 6), np.int16))
    with pytest.raises(ValueError, match="flat_dseg.nii.gz.*3-D"):
      data.NiftiSource.from_folder(tmp_path)
    return
  soft = np.zeros((6, 6, 6), np.float32)
  soft[2, 3, 4] = 0.5
  src = data.NiftiSource.from_files([_save(tmp_path / "soft_dseg.nii.gz", soft)], cache=False)
  with pytest.raises(ValueError, match="soft_dseg.nii.gz.*non-integer"):
    src[0]["labels"].read()


# --- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2**31 + 5, 2**32 - 1])
def test_numpy_keys_equal_jax_fold_in(seed):
  idx = np.array([0, 1, 2, 1000, 2**31, 2**32 - 1], np.int64)
  ref = jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(jax.random.key(seed), i)))(
    idx.astype(np.uint32)
  )
  np.testing.assert_array_equal(data.sample_key_data(seed, idx), np.asarray(ref))
  with pytest.raises(ValueError, match="seed"):
    data.sample_key_data(2**32, 0)


# --- samplers -----------------------------------------------------------------------------


def test_uniform_sampler_covers_all_origins_uniformly():
  el = {"shape": (10, 6, 5), "path": "x"}
  rng = np.random.default_rng(0)
  origins = np.array([data.UniformSampler().origin(rng, el, (4, 6, 8)) for _ in range(3000)])
  assert origins[:, 0].min() == 0 and origins[:, 0].max() == 6
  assert np.all(origins[:, 1] == 0)  # fits exactly
  assert np.all(origins[:, 2] == (5 - 8) // 2)  # too small: centred padding
  counts = np.bincount(origins[:, 0], minlength=7)
  expected = 3000 / 7
  chi2 = np.sum((counts - expected) ** 2 / expected)
  assert chi2 < 22.5  # chi-square, 6 dof, p ~ 0.001


def test_label_sampler_hits_the_drawn_label_with_its_probability():
  rng = np.random.default_rng(1)
  labels = np.zeros((30, 30, 30), np.int32)
  labels[2:5, 2:5, 2:5] = 1  # small, in a corner
  labels[20:29, 20:29, 20:29] = 2
  el = {"shape": labels.shape, "labels_full": labels, "path": "x"}
  sampler = data.LabelSampler({1: 0.6, 2: 0.4, 7: 0.5})  # 7 absent: ignored
  size = (8, 8, 8)
  hits = {1: 0, 2: 0}
  n = 1500
  for _ in range(n):
    o = sampler.origin(rng, el, size)
    patch = data.extract_patch(labels, o, size)
    assert o.min() >= 0 and np.all(o + 8 <= 30)
    has1, has2 = (patch == 1).any(), (patch == 2).any()
    assert has1 or has2
    hits[1] += has1
    hits[2] += has2
  # Labels 1 and 2 are far apart, so each patch holds one of them: frequencies 0.6 / 0.4.
  assert abs(hits[1] / n - 0.6) < 4 * np.sqrt(0.24 / n)
  with pytest.raises(ValueError, match="none of the labels"):
    data.LabelSampler({9: 1.0}).origin(rng, el, size)


def _corner_weights(element):
  w = np.zeros(element["shape"])
  w[0, 0, 0], w[-1, -1, -1] = 1.0, 3.0
  return w


def test_weighted_sampler_follows_the_weight_map():
  rng = np.random.default_rng(2)
  el = {"shape": (12, 12, 12), "path": "x"}
  sampler = data.WeightedSampler(_corner_weights)
  origins = np.array([sampler.origin(rng, el, (4, 4, 4)) for _ in range(2000)])
  far = np.mean(origins[:, 0] == 8)
  assert np.all((origins == 0).all(1) | (origins == 8).all(1))
  assert abs(far - 0.75) < 4 * np.sqrt(0.1875 / 2000)
  assert pickle.loads(pickle.dumps(sampler)).weights is _corner_weights


def test_extract_patch_pads_like_numpy():
  rng = np.random.default_rng(3)
  vol = rng.integers(1, 9, (7, 5, 6))
  for origin in ([-2, 1, 3], [4, -3, -1], [0, 0, 0], [5, 4, 5]):
    patch = data.extract_patch(vol, origin, (4, 4, 4), pad_value=-1)
    padded = np.pad(vol, 10, constant_values=-1)
    o = np.asarray(origin) + 10
    np.testing.assert_array_equal(patch, padded[o[0] : o[0] + 4, o[1] : o[1] + 4, o[2] : o[2] + 4])


# --- splits and mixing ----------------------------------------------------------------------


def test_train_val_split_is_seeded_disjoint_and_complete():
  src = list(range(23))
  train, val = data.train_val_split(_ListSource(src), val_fraction=0.2, seed=4)
  assert len(val) == 5 and len(train) == 18
  assert sorted(train.indices + val.indices) == src
  again = data.train_val_split(_ListSource(src), val_fraction=0.2, seed=4)
  assert again[1].indices == val.indices
  other = data.train_val_split(_ListSource(src), val_fraction=0.2, seed=5)
  assert other[1].indices != val.indices
  assert len(data.train_val_split(_ListSource(range(3)), val_fraction=0.01, min_val=2)[1]) == 2
  with pytest.raises(ValueError, match="cannot split"):
    data.train_val_split(_ListSource(range(2)), min_val=2)


def test_mixed_source_follows_weights():
  a, b = _ListSource(["a"] * 3), _ListSource(["b"] * 5)
  mixed = data.MixedSource([a, b], [0.25, 0.75], length=4000, seed=1)
  frac_b = np.mean([mixed[i]["mixed_from"] for i in range(4000)])
  assert abs(frac_b - 0.75) < 4 * np.sqrt(0.1875 / 4000)
  assert mixed[17] == data.MixedSource([a, b], [0.25, 0.75], length=4000, seed=1)[17]
  with pytest.raises(ValueError, match="weights"):
    data.MixedSource([a, b], [1.0])


class _ListSource:
  def __init__(self, items):
    self.items = list(items)

  def __len__(self):
    return len(self.items)

  def __getitem__(self, i):
    return {"value": self.items[i]}


def test_load_label_map_returns_c_ordered_int32(tmp_path):
  # nibabel hands back Fortran-ordered data; the loader must return C order (every jnp
  # conversion of a Fortran array is a transposing copy) with the same values.
  from synthjax._src import nifti

  lab = np.random.default_rng(0).integers(0, 5, size=(7, 6, 5)).astype(np.int16)
  path = tmp_path / "lab.nii.gz"
  nib.save(nib.Nifti1Image(lab, np.eye(4)), str(path))
  assert not np.asanyarray(nib.load(str(path)).dataobj).flags["C_CONTIGUOUS"]
  out, affine, spacing = nifti.load_label_map(path)
  assert out.flags["C_CONTIGUOUS"] and out.dtype == np.int32
  np.testing.assert_array_equal(out, lab)
