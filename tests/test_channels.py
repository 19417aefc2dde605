"""Multi-contrast synthesis (`num_channels`): one deformed label map, per-channel label
Gaussians, bias and gamma, optionally correlated means; replay, fixing, vmap and the CLI."""

import os

import jax
import jax.numpy as jnp
import nibabel as nib
import numpy as np
import pytest
from _batches import element
from _maps import three_labels

import synthjax
from synthjax._src import channels

N = 16
C = 3
CONFIG = synthjax.presets.synthseg((0, 1, 2, 3), (N, N, N)).replace(
  num_channels=C,
  channel_correlation=0.5,
  affine={"prob": 1.0},
  bias={"prob": 1.0},
  gamma={"prob": 1.0},
)
# Piecewise constant: no within-label spread, field or blur, so each channel's image is
# constant on each label of the (shared) segmentation.
FLAT = CONFIG.replace(
  gmm={"std": (0.0, 0.0), "prob_background_zero": 0.0},
  bias={"enabled": False},
  gamma={"enabled": False},
  resolution={"enabled": False},
  noise={"enabled": False},
)


def _labels():
  return three_labels(N)


def _channel(params, c):
  return {
    s: ({n: v[c] for n, v in e.items()} if s in channels.CHANNEL_STAGES else e)
    for s, e in params.items()
  }


def test_channel_stages_have_a_leading_axis_and_the_others_are_shared():
  one = synthjax.sample_params(jax.random.key(0), CONFIG.replace(num_channels=1))
  many = synthjax.sample_params(jax.random.key(0), CONFIG)
  for stage, entries in many.items():
    for name, value in entries.items():
      want = one[stage][name].shape
      if stage in channels.CHANNEL_STAGES:
        want = (C,) + want
      assert value.shape == want, (stage, name)
  # Channel 0 draws what one channel draws; the other stages are the same draws.
  for stage in many:
    for name in many[stage]:
      got = many[stage][name][0] if stage in channels.CHANNEL_STAGES else many[stage][name]
      np.testing.assert_array_equal(got, one[stage][name], err_msg=f"{stage}.{name}")
  assert not np.array_equal(many["gmm"]["means"][0], many["gmm"]["means"][1])


def test_each_channel_is_constant_on_the_shared_segmentation():
  labels = _labels()
  p = synthjax.sample_params(jax.random.key(1), FLAT)
  images, seg = synthjax.synthesize(jax.random.key(2), p, labels, FLAT)
  assert images.shape == (C, N, N, N) and seg.shape == (N, N, N)
  seg = np.asarray(seg)
  present = [v for v in (0, 1, 2, 3) if (seg == v).any()]
  assert len(present) == 4
  for c in range(C):
    image = np.asarray(images[c])
    levels = []
    for v in present:
      values = image[seg == v]
      np.testing.assert_allclose(values, values[0], atol=1e-6, err_msg=f"channel {c} label {v}")
      levels.append(values[0])
    # The rendered levels follow the channel's own means (min-max normalised).
    means = np.asarray(p["gmm"]["means"][c])[present]
    want = (means - means.min()) / (means.max() - means.min())
    np.testing.assert_allclose(levels, want, atol=1e-5, err_msg=f"channel {c}")


def test_channel_zero_is_the_one_channel_image_of_its_params():
  labels = _labels()
  p = synthjax.sample_params(jax.random.key(3), CONFIG)
  images, seg = synthjax.synthesize(jax.random.key(4), p, labels, CONFIG)
  one = CONFIG.replace(num_channels=1)
  image0, seg0 = synthjax.synthesize(jax.random.key(4), _channel(p, 0), labels, one)
  np.testing.assert_array_equal(seg, seg0)
  np.testing.assert_allclose(images[0], image0, atol=1e-6)
  # Another channel: its own contrast on the same anatomy.
  assert np.abs(np.asarray(images[1]) - np.asarray(images[0])).mean() > 1e-2


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.8])
def test_channel_means_have_the_configured_correlation(rho):
  """The copula on 4096 draws per channel: uniform marginals, correlation `rho`."""
  cfg = CONFIG.replace(channel_correlation=rho)
  lo, hi = cfg.gmm.mean
  draws = np.random.default_rng(0).uniform(lo, hi, size=(C, 4096)).astype(np.float32)
  means = np.asarray(channels._correlate(jnp.asarray(draws), None, cfg))
  np.testing.assert_array_equal(means[0], draws[0])
  for c in range(1, C):
    r = np.corrcoef(means[0], means[c])[0, 1]
    assert abs(r - rho) < 0.04, (c, r)
    # Uniform on the range: its mean, its spread, its quartiles.
    assert means[c].min() >= lo and means[c].max() <= hi
    np.testing.assert_allclose(means[c].std(), (hi - lo) / np.sqrt(12), rtol=0.04)
    np.testing.assert_allclose(
      np.quantile(means[c], [0.25, 0.5, 0.75]),
      lo + (hi - lo) * np.array([0.25, 0.5, 0.75]),
      atol=0.03 * (hi - lo),
    )
  # A fixed mean is kept as given.
  fixed = np.asarray(channels._correlate(jnp.asarray(draws), {"means": draws}, cfg))
  np.testing.assert_array_equal(fixed, draws)


def test_sampled_channel_means_are_correlated():
  """sample_params applies the copula (CONFIG's correlation is 0.5): 32 samples' means."""
  means = np.stack(
    [synthjax.sample_params(jax.random.key(100 + i), CONFIG)["gmm"]["means"] for i in range(32)]
  )  # (32, C, labels)
  r = np.corrcoef(means[:, 0].ravel(), means[:, 1].ravel())[0, 1]
  assert 0.25 < r < 0.75, r


def test_replay_fixing_and_vmap_work_as_for_one_channel():
  labels = _labels()
  key, skey = jax.random.key(6), jax.random.key(7)
  p = synthjax.sample_params(key, CONFIG)
  image, seg = synthjax.synthesize(skey, p, labels, CONFIG)
  again = synthjax.params_from_json(synthjax.params_to_json(p), CONFIG)
  np.testing.assert_array_equal(synthjax.synthesize(skey, again, labels, CONFIG)[0], image)
  # A fixed value is shared by every channel, or given per channel on a leading axis.
  fixed = synthjax.sample_params(
    key,
    CONFIG,
    fixed={
      "gamma": {"log_gamma": 0.1},
      "gmm": {"means": [[10.0, 20.0, 30.0, 40.0]] * 2 + [[40.0, 30.0, 20.0, 10.0]]},
    },
  )
  np.testing.assert_allclose(fixed["gamma"]["log_gamma"], [0.1] * C)
  np.testing.assert_array_equal(fixed["gmm"]["means"][2], [40.0, 30.0, 20.0, 10.0])
  np.testing.assert_array_equal(fixed["bias"]["std"], p["bias"]["std"])
  # A batch of keys: every leaf gets the batch axis first; vmap matches single calls.
  keys = jax.random.split(jax.random.key(8), 2)
  batch = synthjax.sample_params(keys, CONFIG)
  assert batch["gmm"]["means"].shape == (2, C, 4)
  images, segs = jax.vmap(lambda k, q: synthjax.synthesize(k, q, labels, CONFIG))(keys, batch)
  assert images.shape == (2, C, N, N, N) and segs.shape == (2, N, N, N)
  for i in range(2):
    single = synthjax.synthesize(keys[i], element(batch, i), labels, CONFIG)
    np.testing.assert_allclose(images[i], single[0], atol=2e-5)
    np.testing.assert_array_equal(segs[i], single[1])


def test_cli_writes_a_4d_nifti_and_replays_it(tmp_path):
  from synthjax import cli

  lab = str(tmp_path / "lab.nii.gz")
  nib.save(nib.Nifti1Image(_labels().astype(np.int16), np.diag([1.0, 1.0, 1.0, 1.0])), lab)
  cfg = str(tmp_path / "cfg.json")
  with open(cfg, "w") as f:
    f.write(CONFIG.to_json())
  out, rep = str(tmp_path / "out"), str(tmp_path / "rep")
  assert cli.main(["generate", lab, "--config", cfg, "-n", "1", "-o", out, "--quiet"]) in (0, None)
  image = nib.load(os.path.join(out, "sample_00000_image.nii.gz"))
  assert image.shape == (N, N, N, C)  # channels last in the file
  assert nib.load(os.path.join(out, "sample_00000_seg.nii.gz")).shape == (N, N, N)
  assert cli.main(["replay", os.path.join(out, "sample_00000_params.json"), "-o", rep]) in (0, None)
  np.testing.assert_array_equal(
    np.asarray(image.dataobj),
    np.asarray(nib.load(os.path.join(rep, "sample_00000_image.nii.gz")).dataobj),
  )


def test_preview_shows_each_channel_of_a_sample_on_its_own_row():
  from synthjax._src import preview, samples

  labels = _labels()
  rgb = preview.preview(labels, CONFIG, n=1, seed=0)
  pkey, skey = samples.sample_keys(0, 0)
  image, seg = synthjax.synthesize(skey, synthjax.sample_params(pkey, CONFIG), labels, CONFIG)
  rows = [preview.render_row(image=np.asarray(image[c]), seg=np.asarray(seg)) for c in range(C)]
  want = preview.montage(
    [preview.render_row(labels=labels, colors=preview.label_colors((0, 1, 2, 3)))] + rows
  )
  np.testing.assert_array_equal(rgb, want)
  assert rgb.shape[0] == (1 + C) * N + C * 4  # the label row, one row per channel, gaps
  assert not np.array_equal(rows[0][0], rows[1][0])


def test_bad_channel_settings_are_named():
  with pytest.raises(ValueError, match="num_channels"):
    CONFIG.replace(num_channels=0)
  with pytest.raises(ValueError, match="channel_correlation"):
    CONFIG.replace(channel_correlation=1.5)
  # A fixed value that is neither shared nor one per channel.
  with pytest.raises(ValueError, match="means"):
    synthjax.sample_params(jax.random.key(0), CONFIG, fixed={"gmm": {"means": np.ones((2, 4))}})
