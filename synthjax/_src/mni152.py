"""The MNI152 template (from nilearn) as a real T1 image with a tissue label map, and label
maps deformed from it: a real brain for tests and the sim-to-real benchmark.

Labels: 0 outside the brain mask; inside it, 1 CSF, 2 grey matter, 3 white matter, each
voxel taking the tissue of highest probability (CSF's probability being 1 - GM - WM).
Needs nilearn and scipy (the `test` and `bench` extras).
"""

import os

import numpy as np

from synthjax._src import nifti

TISSUES = {1: "CSF", 2: "grey matter", 3: "white matter"}


def t1_and_tissues():
  """`(t1, labels, affine)` at 1 mm: the T1 template (float64), its int16 tissue labels and
  their voxel-to-world affine. Needs nilearn (the `test` and `bench` extras)."""
  from nilearn import datasets

  t1 = datasets.load_mni152_template(resolution=1)
  gm = datasets.load_mni152_gm_template(resolution=1).get_fdata()
  wm = datasets.load_mni152_wm_template(resolution=1).get_fdata()
  mask = datasets.load_mni152_brain_mask(resolution=1).get_fdata() > 0.5
  csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
  labels = (np.argmax(np.stack([csf, gm, wm]), axis=0) + 1) * mask
  return t1.get_fdata(), labels.astype(np.int16), t1.affine


def split_mni152(image_path, label_path, folder):
  """Cuts the MNI152 pair at the middle of the brain along the S axis: the superior half
  for real-image fine-tuning, the inferior half for testing (no test voxel is trained on).
  Returns `(superior_pair, inferior_pair)`."""
  import nibabel as nib

  img, lab = nifti.load_image(image_path), nifti.load_image(label_path)
  labels = np.asarray(lab.dataobj)
  zs = np.nonzero(labels.any(axis=(0, 1)))[0]
  mid = int((zs[0] + zs[-1] + 1) // 2)
  out = []
  for part, sl in (("superior", slice(mid, None)), ("inferior", slice(0, mid))):
    pair = []
    for src, kind in ((img, "T1w"), (lab, "dseg")):
      data = np.asarray(src.dataobj)[:, :, sl]
      src_affine = np.asarray(src.affine)
      affine = src_affine.copy()
      affine[:3, 3] = src_affine[:3, :3] @ [0, 0, sl.start or 0] + src_affine[:3, 3]
      path = os.path.join(folder, f"mni152_{part}_{kind}.nii.gz")
      nib.save(nib.Nifti1Image(data, affine), path)
      pair.append(path)
    out.append(tuple(pair))
  return out[0], out[1]


def _cubic_zoom(grid, shape):
  """`scipy.ndimage.zoom(grid, shape / grid.shape, order=3)`, as float32, applied one axis
  at a time: the cubic spline is a tensor product, so each axis is a small matrix (the
  1-D zoom of the identity), and the whole costs a few tensor products instead of 64 taps
  per output voxel (0.3 s instead of 4 s at 1 mm)."""
  from scipy import ndimage

  out = grid.astype(np.float64)
  for ax, n in enumerate(shape):
    k = grid.shape[ax]
    matrix = np.asarray(ndimage.zoom(np.eye(k), (n / k, 1.0), order=3))
    out = np.moveaxis(np.tensordot(matrix, out, axes=([1], [ax])), 0, ax)
  return out.astype(np.float32)


def build_mni152(folder, n_train, seed=0):
  """Writes the MNI152 test pair and `n_train` deformed training maps to `folder`.

  Returns `(train_paths, (image_path, labels_path))`.
  """
  import nibabel as nib
  from scipy import ndimage

  os.makedirs(folder, exist_ok=True)
  t1, labels, affine = t1_and_tissues()
  image_path = os.path.join(folder, "mni152_T1w.nii.gz")
  label_path = os.path.join(folder, "mni152_dseg.nii.gz")
  nib.save(nib.Nifti1Image(t1.astype(np.float32), affine), image_path)
  nib.save(nib.Nifti1Image(labels, affine), label_path)
  rng = np.random.default_rng(seed)
  shape = labels.shape
  grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
  centre = (np.array(shape, np.float32) - 1) / 2
  paths = []
  for i in range(n_train):
    angles = np.deg2rad(rng.uniform(-10, 10, 3))
    scale = rng.uniform(0.9, 1.1, 3)
    rot = np.eye(3)
    for ax, a in enumerate(angles):
      c, s = np.cos(a), np.sin(a)
      r = np.eye(3)
      i0, i1 = [k for k in range(3) if k != ax]
      r[i0, i0], r[i0, i1], r[i1, i0], r[i1, i1] = c, -s, s, c
      rot = rot @ r
    m = (rot * scale).astype(np.float32)
    ctr = centre[:, None, None, None]
    coords = np.tensordot(m, grid - ctr, axes=1) + ctr
    for ax in range(3):  # smooth displacement, up to ~4 voxels
      noise = rng.normal(size=tuple(max(2, n // 16) for n in shape)).astype(np.float32)
      coords[ax] += 2.0 * _cubic_zoom(noise, shape)
    deformed = ndimage.map_coordinates(labels, coords, order=0, mode="constant", cval=0)
    path = os.path.join(folder, f"mni152_deformed{i}_dseg.nii.gz")
    nib.save(nib.Nifti1Image(deformed.astype(np.int16), affine), path)
    paths.append(path)
  return paths, (image_path, label_path)
