"""Real fetal label maps (../shared/data/fetal); skipped on a clone without them."""

import pathlib

import jax
import numpy as np
import pytest
from _batches import element
from scipy import ndimage

import synthjax
from synthjax._src import nifti
from synthjax._src.stages import geometry

DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fetal"
SUBJECT = DATA / "sub-sta30" / "anat" / "sub-sta30_rec-irtk_T2w_dseg.nii.gz"

pytestmark = pytest.mark.skipif(not SUBJECT.exists(), reason=f"{DATA} not present")

FETA = tuple(range(8))
SHAPE = (96, 96, 96)


@pytest.fixture(scope="module")
def labels():
  lab, _, spacing = nifti.load_label_map(SUBJECT)
  assert spacing == (0.5, 0.5, 0.5)
  # Downsample 256^3 -> 128^3 (1 mm) to keep the test fast; anatomy is unchanged.
  return lab[::2, ::2, ::2]


def _dice(a, b, v):
  a, b = a == v, b == v
  return 2 * np.sum(a & b) / max(np.sum(a) + np.sum(b), 1)


def test_identity_spatial_params_crop_the_real_map(labels):
  # The crop is the spatial stages' work: the intensity and artifact stages stay off.
  image_stages = ("bias", "gamma", "resolution", "noise", "subclusters", "blur_cortex")
  image_stages += ("struct_noise", "boundary", "slice_stack")
  cfg = synthjax.presets.fetal(
    FETA, SHAPE, (1.0, 1.0, 1.0), **{s: {"enabled": False} for s in image_stages}
  )
  synthjax.validate_labels(labels, cfg, name=str(SUBJECT))
  fixed = {
    "affine": {"applied": False},
    "deformation": {"applied": False},
    "flip": {"applied": False},
    "crop": {"position": [0.5, 0.25, 0.75]},
  }
  params = synthjax.sample_params(jax.random.key(0), cfg, fixed=fixed)
  _, seg = synthjax.synthesize(jax.random.key(1), params, labels, cfg)
  off = np.asarray(geometry.crop_offset(labels.shape, SHAPE, np.float32([0.5, 0.25, 0.75])))
  expect = labels[off[0] : off[0] + 96, off[1] : off[1] + 96, off[2] : off[2] + 96]
  assert np.array_equal(np.asarray(seg), expect)


def test_max_deformation_preserves_anatomy(labels):
  cfg = synthjax.presets.synthseg(FETA, SHAPE, (1.0, 1.0, 1.0))
  fixed = {
    "affine": {"applied": False},
    "flip": {"applied": False},
    "deformation": {"applied": True, "std": 4.0},
    "crop": {"position": [0.5] * 3},
  }
  params = synthjax.sample_params(jax.random.key(2), cfg, fixed=fixed)
  off = np.asarray(geometry.crop_offset(labels.shape, SHAPE, np.float32([0.5] * 3)))
  ref = labels[off[0] : off[0] + 96, off[1] : off[1] + 96, off[2] : off[2] + 96]
  for k in range(3):
    key = jax.random.key(10 + k)
    image, seg = synthjax.synthesize(key, params, labels, cfg)
    seg = np.asarray(seg)
    # Reference: scipy's nearest-neighbour resampling at the generator's coordinate map.
    coords = np.asarray(
      geometry.coordinate_map(jax.random.fold_in(key, 0), params, cfg, labels.shape)
    )
    expect = ndimage.map_coordinates(labels, coords, order=0, mode="grid-constant", cval=0)
    assert np.mean(seg == expect) > 0.9999  # rounding ties at x.5 may differ
    assert set(np.unique(seg)) == set(np.unique(ref))
    # The displacement has the configured scale (std 4 voxels per velocity component,
    # smoothed by the upsampling), and thick white matter keeps its volume.
    grid = np.stack(np.meshgrid(*[np.arange(96)] * 3, indexing="ij")) + off.reshape(3, 1, 1, 1)
    rms = np.sqrt(np.mean(np.sum((coords - grid) ** 2, axis=0)))
    assert 1.0 < rms < 8.0
    assert abs(np.sum(seg == 3) / np.sum(ref == 3) - 1) < 0.15
    image = np.asarray(image)
    assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1


def test_vmapped_batch_matches_single_calls_on_real_anatomy(labels):
  """The README's replay bound for batches, on a real map (80^3 crop rendered at 64^3): the
  seg is identical and the image within 1e-5 (2.6e-6 measured at most, over 144 samples of
  the three maps with both presets)."""
  crop = labels[24:104, 24:104, 24:104]
  cfg = synthjax.presets.synthseg(FETA, (64, 64, 64), (1.0, 1.0, 1.0))
  batched = jax.jit(jax.vmap(lambda k, p: synthjax.synthesize(k, p, crop, cfg)))
  worst = 0.0
  for b in range(2):
    keys = jax.random.split(jax.random.key(40 + b), 3)
    skeys = jax.random.split(jax.random.key(50 + b), 3)
    params = synthjax.sample_params(keys, cfg)
    images, segs = batched(skeys, params)
    for i in range(3):
      p = element(params, i)
      image, seg = synthjax.synthesize(skeys[i], p, crop, cfg)
      assert np.array_equal(np.asarray(seg), np.asarray(segs[i]))
      worst = max(worst, float(np.max(np.abs(np.asarray(image) - np.asarray(images[i])))))
  assert worst <= 1e-5
