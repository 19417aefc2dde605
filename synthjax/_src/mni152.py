"""The MNI152 template (from nilearn) as a real T1 image with a tissue label map.

Labels: 0 outside the brain mask; inside it, 1 CSF, 2 grey matter, 3 white matter, each
voxel taking the tissue of highest probability (CSF's probability being 1 - GM - WM).
"""

import numpy as np

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
