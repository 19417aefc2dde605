"""Analysis by synthesis on a real brain: gradient descent through `synthesize` fits the
appearance params to MNI152's tissue intensities (`synthjax.appearance`, which
examples/fit_appearance.py runs)."""

import numpy as np
from _requires import requires

from synthjax import appearance as fit_appearance
from synthjax._src import mni152

pytestmark = requires("optax", "nilearn")


def test_fitted_tissue_means_match_the_real_image_within_5_percent():
  t1, labels, _ = mni152.t1_and_tissues()
  # 6 mm voxels (197 x 233 x 189 at 1 mm, in whole blocks): tissue errors under 1 %, as at
  # 4 mm, in about half the time (2026-12-05).
  image, labels = fit_appearance.coarsen(t1, labels, 6)
  assert image.shape == labels.shape == (32, 38, 31)
  result = fit_appearance.fit(image, labels, 6.0, steps=80)
  # Before the fit every label renders alike; after it, each tissue has the real mean.
  assert result.losses[-1] < 0.01 * result.losses[0]
  errors = fit_appearance.tissue_errors(result)
  assert errors.shape == (3,) and errors.max() < 0.05, errors
  # The fitted GMM follows the T1 contrast: CSF < grey matter < white matter.
  means = result.params["gmm"]["means"]
  assert means[1] < means[2] < means[3]
  # The real means are the image's: min-max normalised, averaged over each label.
  norm = fit_appearance.normalise(image)
  np.testing.assert_allclose(
    result.real_means[1:], [norm[labels == v].mean() for v in (1, 2, 3)], rtol=1e-5
  )


def test_coarsen_averages_blocks_and_takes_block_centres():
  t1 = np.arange(6 * 4 * 5, dtype=float).reshape(6, 4, 5)
  labels = (np.arange(6 * 4 * 5) % 7).reshape(6, 4, 5)
  image, lab = fit_appearance.coarsen(t1, labels, 2)
  assert image.shape == lab.shape == (3, 2, 2)
  np.testing.assert_allclose(image[1, 0, 1], t1[2:4, 0:2, 2:4].mean())
  assert lab[1, 0, 1] == labels[3, 1, 3]
