"""`synthjax.data.seed_patches`: FetalSynthGen's seed maps cut with every label patch, on the
grid the label source reads (reoriented and coarsened as the training recipe reads maps)."""

import pickle

import nibabel as nib
import numpy as np
import pytest

from synthjax import data, presets
from synthjax._src import scans

K, META = 6, 4
SHAPES = [(20, 18, 16), (18, 20, 14)]
# The first axis runs left (a flipped x): the recipe's reader turns it to RAS.
AFFINE = np.diag([-0.5, 0.5, 0.5, 1.0])


def _write(path, arr):
  path.parent.mkdir(parents=True, exist_ok=True)
  nib.save(nib.Nifti1Image(arr, AFFINE), str(path))


def _labels(shape, seed):
  """Four tissues in slabs along y with a random wobble, so that every patch differs."""
  rng = np.random.default_rng(seed)
  y = np.arange(shape[1])[None, :, None] + rng.integers(0, 3, shape)
  return np.clip(y * 5 // shape[1], 0, 4).astype(np.int16)


def _seed_stack(lab, seed):
  """`(K, X, Y, Z)`: entry K-1 splits meta-label m (label m) into K classes 10m + k."""
  rng = np.random.default_rng(100 + seed)
  stack = np.zeros((K,) + lab.shape, np.int8)
  for k in range(1, K + 1):
    for m in range(1, META + 1):
      where = lab == m
      stack[k - 1][where] = 10 * m + rng.integers(0, k, int(where.sum()))
  return stack


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
  root = tmp_path_factory.mktemp("seeds")
  paths, stacks = [], []
  for i, shape in enumerate(SHAPES):
    lab = _labels(shape, i)
    path = root / "data" / f"sub-0{i}" / "anat" / f"sub-0{i}_dseg.nii.gz"
    _write(path, lab)
    stack = _seed_stack(lab, i)
    for k in range(1, K + 1):
      for m in range(1, META + 1):
        layer = np.where(stack[k - 1] // 10 == m, stack[k - 1], 0).astype(np.int8)
        _write(
          root
          / "seeds"
          / f"subclasses_{k}"
          / f"sub-0{i}"
          / "anat"
          / f"sub-0{i}_dseg_mlabel_{m}.nii.gz",
          layer,
        )
    paths.append(str(path))
    stacks.append(stack)
  return {"root": root, "paths": paths, "stacks": stacks, "seeds": str(root / "seeds")}


def _reference_grid(volume):
  """A volume of a map as the recipe reads it at --down 2: x flipped to RAS, then each
  2x2x2 block's most frequent value (scipy's mode of the block, smallest value on ties)."""
  v = np.flip(volume, axis=0)
  x, y, z = (n // 2 * 2 for n in v.shape)
  blocks = v[:x, :y, :z].reshape(x // 2, 2, y // 2, 2, z // 2, 2).transpose(0, 2, 4, 1, 3, 5)
  blocks = blocks.reshape(x // 2, y // 2, z // 2, 8)
  out = np.empty(blocks.shape[:3], v.dtype)
  for idx in np.ndindex(out.shape):
    values, counts = np.unique(blocks[idx], return_counts=True)
    out[idx] = values[np.argmax(counts)]
  return out


def _crop(volume, origin, size):
  out = np.zeros(size, volume.dtype)
  src = tuple(slice(max(o, 0), min(o + s, n)) for o, s, n in zip(origin, size, volume.shape))
  dst = tuple(slice(sl.start - o, sl.stop - o) for sl, o in zip(src, origin))
  out[dst] = volume[src]
  return out


def _pipeline(maps, patch, **kw):
  reader = scans.LabelReader(down=2)
  source = data.NiftiSource.from_files(maps["paths"], reader=reader, cache=True)
  cfg = presets.fetal((0, 1, 2, 3, 4), patch, seeds=True)
  seeds = data.seed_patches(source, maps["seeds"], cfg, to_grid=reader.layer)
  return (
    source,
    seeds,
    data.pipeline(
      source, patch_size=patch, batch_size=2, seed=5, pad_small=True, transforms=[seeds], **kw
    ),
  )


@pytest.mark.parametrize("patch", [(6, 6, 4), (10, 8, 8)])
def test_seed_patches_are_cut_with_their_label_patches(maps, patch):
  """Each batch's seeds equal the reference crop of the reoriented, coarsened seed stack at
  the label patch's origin (padded with 0 where a patch larger than the map leaves it), and
  the label patch is the crop of the map read the same way."""
  _, _, ds = _pipeline(maps, patch)
  it = iter(ds)
  for _ in range(3):
    batch = next(it)
    assert batch["seeds"].shape == (2, K) + patch and batch["seeds"].dtype == np.int8
    for b in range(2):
      v, origin = int(batch["volume"][b]), batch["origin"][b]
      lab = np.asarray(nib.load(maps["paths"][v]).dataobj)
      np.testing.assert_array_equal(batch["labels"][b], _crop(_reference_grid(lab), origin, patch))
      for k in range(K):
        want = _crop(_reference_grid(maps["stacks"][v][k]), origin, patch)
        np.testing.assert_array_equal(batch["seeds"][b, k], want)
  # Meta-label m of the seeds covers label m, so wherever a seed is set its tissue agrees
  # with the label patch but for block-vote ties at tissue borders.
  seeds, labels = batch["seeds"][:, K - 1], batch["labels"]
  set_ = seeds != 0
  assert np.mean(seeds[set_] // 10 == labels[set_]) > 0.9


def test_seed_patches_pickle_for_grain_workers(maps):
  """A worker gets the transform by pickle, without the parent's cache, and cuts the same
  patches."""
  source, seeds, _ = _pipeline(maps, (6, 6, 4))
  element = {
    "volume": np.int64(1),
    "origin": np.array([1, 2, 3], np.int32),
    "labels": np.zeros((6, 6, 4), np.int32),
  }
  want = seeds.map(dict(element))["seeds"]
  copy = pickle.loads(pickle.dumps(seeds))
  assert copy._stacks == {}
  np.testing.assert_array_equal(copy.map(dict(element))["seeds"], want)


def test_seed_patches_errors_name_the_problem(maps, tmp_path):
  reader = scans.LabelReader(down=2)
  source = data.NiftiSource.from_files(maps["paths"], reader=reader, cache=True)
  procedural = presets.fetal((0, 1, 2, 3, 4), (6, 6, 4))
  with pytest.raises(ValueError, match="do not come from seed maps"):
    data.seed_patches(source, maps["seeds"], procedural)
  cfg = presets.fetal((0, 1, 2, 3, 4), (6, 6, 4), seeds=True)
  with pytest.raises(FileNotFoundError, match="no such seeds folder"):
    data.seed_patches(source, str(tmp_path / "nope"), cfg)
  # One missing file is named before training starts.
  missing = next((maps["root"] / "seeds" / "subclasses_3").rglob("sub-01_dseg_mlabel_2*"))
  moved = tmp_path / "moved.nii.gz"
  missing.rename(moved)
  try:
    with pytest.raises(FileNotFoundError, match="sub-01_dseg_mlabel_2"):
      data.seed_patches(source, maps["seeds"], cfg)
  finally:
    moved.rename(missing)
  # Seeds read on another grid than the labels (no coarsening) do not fit the source.
  seeds = data.seed_patches(source, maps["seeds"], cfg)
  with pytest.raises(ValueError, match="on the training grid"):
    seeds.stack(0)
