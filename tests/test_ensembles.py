"""Label ensembles (anatomix step 1).

The painted maps are compared with a numpy reference built from
`scipy.ndimage.affine_transform(order=0)` per slot, the deformed sphere with a numpy sphere
(and with the same noise field upsampled by scipy), the median with
`scipy.ndimage.median_filter`; replay, jit and vmap must agree bit for bit (integer maps).
"""

import os

import jax
import jax.numpy as jnp
import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi
from _tracing import jit_name, traced

from synthjax import ensembles
from synthjax._src import ensembles as E
from synthjax._src.ops import draw

SHAPE = (32, 32, 32)
T_SHAPE = (24, 28, 20)  # templates of another shape than the output

# One config per source, shared by the tests so that each compiles once.
CFG = ensembles.EnsembleConfig(
  shape=SHAPE,
  num_templates=(1, 3),
  median_filter=False,
  prob_sphere=1.0,
  sphere_radius=(0.25, 0.4),
  sphere_noise=(0.0, 0.3),
  sphere_grid_scale=(0.0625, 0.25),
  envelope_label=1,
  rim_label=2,
  prob_rim=0.5,
  label_offset=3,
)
SHAPES_CFG = ensembles.EnsembleConfig(
  shape=SHAPE,
  num_templates=(6, 8),
  label_mode="offset",
  num_shape_labels=(2, 3),
  shape_radius=(0.2, 0.3),
  shape_noise=(0.0, 0.2),
  scaling=(0.8, 1.25),
  shear=(-0.1, 0.1),
  translation=(-0.3, 0.3),
  prob_sphere=0.0,
  envelope_label=None,
  median_filter=False,
)


def make_templates():
  t = np.zeros((3,) + T_SHAPE, np.int32)
  t[0, 4:18, 6:20, 3:15] = 1
  t[0, 10:18, 6:12, 3:15] = 2
  t[1, 2:20, 10:16, 6:12] = 3
  t[1, 8:14, 4:24, 8:16] = 1
  t[2, 6:16, 8:22, 5:13] = 4
  return t


TEMPLATES = make_templates()
# Affines with no rounding ties between float32 and float64 (see `reference_paint`).
FIXED = {
  "num_templates": 3,
  "template_index": [2, 0, 1],
  "rotation": [[0, 0, 0], [0, 0, 0], [0, 0, 90]],
  "scaling": [[1, 1, 1], [1, 1.25, 1], [0.5, 1, 1]],
  "shear": [[0, 0, 0], [0, 0, 0], [0.25, 0, 0]],
  "reflect": [[False] * 3, [True, False, False], [False] * 3],
  "translation": [[0, 0, 0], [0.125, 0, -0.0625], [0, 0.0625, 0]],
  "sphere_applied": False,
  "envelope_applied": False,
  "rim_applied": False,
  "shape_radius": 0.2,  # a scalar for a per-slot entry: every slot
}


_BASE = []


def params(**changes):
  """Params of CFG with FIXED and `changes` (set directly: no new sampling program)."""
  if not _BASE:
    _BASE.append(ensembles.sample_ensemble_params(jax.random.key(0), CFG, fixed=FIXED))
  specs = E._param_specs(CFG)
  return {**_BASE[0], **{k: jnp.asarray(v, specs[k][1]) for k, v in changes.items()}}


def render(p, templates=TEMPLATES, cfg=CFG, key=1):
  key = jax.random.key(key) if isinstance(key, int) else key
  return np.asarray(ensembles.render_ensemble(key, p, templates, cfg))


def np_slot_matrix(rot, scale, shear, reflect):
  a = np.deg2rad(np.asarray(rot, np.float64))
  c, s = np.cos(a), np.sin(a)
  rx = np.array([[1, 0, 0], [0, c[0], -s[0]], [0, s[0], c[0]]])
  ry = np.array([[c[1], 0, s[1]], [0, 1, 0], [-s[1], 0, c[1]]])
  rz = np.array([[c[2], -s[2], 0], [s[2], c[2], 0], [0, 0, 1]])
  sh = np.eye(3)
  sh[0, 1], sh[0, 2], sh[1, 2] = shear
  sc = np.diag(np.where(reflect, -1.0, 1.0) * np.asarray(scale, np.float64))
  return rz @ ry @ rx @ sh @ sc


def reference_paint(templates, p, cfg):
  """numpy/scipy painting: output voxel x samples template voxel M (x - c - t) + c'."""
  p = {k: np.asarray(v) for k, v in p.items()}
  out = np.zeros(cfg.shape, np.int64)
  c_out = (np.asarray(cfg.shape) - 1) / 2.0
  c_tpl = (np.asarray(templates.shape[1:]) - 1) / 2.0
  stride = templates.max()
  for s in range(int(p["num_templates"])):
    m = np_slot_matrix(p["rotation"][s], p["scaling"][s], p["shear"][s], p["reflect"][s])
    t = p["translation"][s] * np.asarray(cfg.shape)
    tpl = templates[p["template_index"][s] % len(templates)]
    vals = ndi.affine_transform(
      tpl,
      m,
      offset=c_tpl - m @ (c_out + t),
      output_shape=cfg.shape,
      order=0,
      mode="grid-constant",
      cval=0,
    )
    label = (
      cfg.label_offset + s if cfg.label_mode == "slot" else cfg.label_offset + s * stride + vals - 1
    )
    out = np.where(vals > 0, label, out)
  return out


def distances(cfg, p):
  grid = np.stack(np.meshgrid(*[np.arange(n) for n in cfg.shape], indexing="ij"))
  centre = (np.asarray(cfg.shape) - 1) / 2.0 + np.asarray(p["sphere_shift"]) * cfg.shape
  return np.sqrt(((grid - centre.reshape(3, 1, 1, 1)) ** 2).sum(0))


# ---------------------------------------------------------------------------------------
# Config and params


def test_config_defaults_hashable_and_json():
  cfg = ensembles.EnsembleConfig()
  assert cfg.num_templates == (20, 39) and cfg.max_templates == 39  # anatomix randint(20, 40)
  assert hash(cfg) == hash(ensembles.EnsembleConfig())
  assert ensembles.EnsembleConfig.from_json(CFG.to_json()) == CFG
  assert CFG.replace(prob_rim=0.1).prob_rim == 0.1


@pytest.mark.parametrize(
  "changes, match",
  [
    ({"shape": (32, 32)}, "shape"),
    ({"shape": (32, 1, 32)}, "shape"),
    ({"num_templates": (3, 2)}, "num_templates"),
    ({"num_templates": (0, 0)}, "num_templates"),
    ({"num_templates": (1.5, 3)}, "num_templates"),
    ({"scaling": (0.0, 1.0)}, "scaling"),
    ({"rotation": (10, -10)}, "rotation"),
    ({"sphere_radius": (-0.1, 0.2)}, "sphere_radius"),
    ({"sphere_noise": (-0.1, 0.2)}, "sphere_noise"),
    ({"sphere_grid_scale": (0.0, 0.5)}, "sphere_grid_scale"),
    ({"prob_sphere": 1.5}, "prob_sphere"),
    ({"prob_reflect": -0.1}, "prob_reflect"),
    ({"envelope_label": 0}, "envelope_label"),
    ({"envelope_label": 2.5}, "envelope_label"),
    ({"envelope_label": 2, "rim_label": 2, "label_offset": 5}, "must differ"),
    ({"envelope_label": 3, "label_offset": 3}, "label_offset"),
    ({"rim_label": 4, "label_offset": 3}, "rim_label"),
    ({"label_mode": "random"}, "label_mode"),
    ({"label_stride": 0}, "label_stride"),
    ({"num_shape_labels": (0, 2)}, "num_shape_labels"),
    ({"shape_grid": 1}, "shape_grid"),
    ({"median_filter": "yes"}, "median_filter"),
    ({"label_mode": "offset", "label_stride": 2**30}, "int32"),
  ],
)
def test_config_validation(changes, match):
  with pytest.raises(ValueError, match=match):
    CFG.replace(**changes)


def test_sample_params_shapes_ranges_and_fixed():
  keys = jax.random.split(jax.random.key(5), 4)
  batch = ensembles.sample_ensemble_params(keys, CFG)
  specs = E._param_specs(CFG)
  assert set(batch) == set(specs)
  for name, (shape, dtype) in specs.items():
    assert batch[name].shape == (4,) + shape and batch[name].dtype == dtype, name
  n = np.asarray(batch["num_templates"])
  assert ((n >= 1) & (n <= 3)).all()
  rot = np.asarray(batch["rotation"])
  assert (np.abs(rot) <= 180).all() and rot.std() > 30
  # Single keys give the batch's elements.
  one = ensembles.sample_ensemble_params(keys[2], CFG)
  for name in specs:
    np.testing.assert_array_equal(one[name], np.asarray(batch[name])[2])
  assert np.asarray(batch["envelope_applied"]).all()  # prob_envelope 1
  # Fixed values appear unchanged; the others are the draws of the same key.
  fixed, plain = params(), ensembles.sample_ensemble_params(jax.random.key(0), CFG)
  for name in specs:
    if name in FIXED:
      want = np.broadcast_to(np.asarray(FIXED[name], specs[name][1]), specs[name][0])
      np.testing.assert_array_equal(fixed[name], want, err_msg=name)
    else:
      np.testing.assert_array_equal(fixed[name], plain[name], err_msg=name)
  # A per-slot entry may be given once for every slot.
  np.testing.assert_array_equal(
    E._pick({"rotation": [1.0, 2.0, 3.0]}, "rotation", plain["rotation"]),
    np.tile([1.0, 2.0, 3.0], (3, 1)),
  )
  with pytest.raises(ValueError, match="unknown ensemble parameter"):
    ensembles.sample_ensemble_params(jax.random.key(0), CFG, fixed={"rotations": 0})
  with pytest.raises(ValueError, match="shape"):
    ensembles.sample_ensemble_params(jax.random.key(0), CFG, fixed={"rotation": [1.0, 2.0]})
  with pytest.raises(ValueError, match="rim_label is None"):
    ensembles.sample_ensemble_params(
      jax.random.key(0), CFG.replace(rim_label=None), fixed={"rim_applied": True}
    )


# ---------------------------------------------------------------------------------------
# Painting


@pytest.mark.parametrize("mode", ["slot", "offset"])
def test_painting_order_matches_scipy(mode):
  # "offset" also runs anatomix's median filter (scipy's, on the reference).
  cfg = CFG.replace(label_mode=mode, median_filter=mode == "offset")
  p = params()  # params do not depend on the label mode
  got = render(p, cfg=cfg)
  want = reference_paint(TEMPLATES, p, cfg)
  if cfg.median_filter:
    assert not np.array_equal(ndi.median_filter(want, 3, mode="nearest"), want)
    want = ndi.median_filter(want, 3, mode="nearest")
  np.testing.assert_array_equal(got, want)
  assert set(np.unique(got)) <= set(ensembles.ensemble_labels(cfg, TEMPLATES))
  # The test can tell the order: later slots cover earlier ones where they overlap.
  last = cfg.label_offset + 2 if mode == "slot" else cfg.label_offset + 2 * 4
  reversed_p = dict(
    p,
    template_index=p["template_index"][::-1],
    rotation=p["rotation"][::-1],
    scaling=p["scaling"][::-1],
    shear=p["shear"][::-1],
    reflect=p["reflect"][::-1],
    translation=p["translation"][::-1],
  )
  assert not np.array_equal(got, render(reversed_p, cfg=cfg))
  assert (got >= last).sum() > 0 and (got == 0).sum() > 0
  if mode == "offset":  # every (slot, label) pair has its own value
    assert len(np.unique(got)) >= 6


def test_num_templates_masks_the_extra_slots():
  one = render(params(num_templates=1))
  np.testing.assert_array_equal(np.unique(one), [0, CFG.label_offset])
  moved = params(
    num_templates=1,
    translation=[[0, 0, 0], [0.3, 0.3, 0.3], [-0.3, 0, 0]],
    template_index=[2, 1, 1],
  )
  np.testing.assert_array_equal(render(moved), one)
  assert not render(params(num_templates=0)).any()


def test_reference_places_templates_about_the_centres():
  """The numpy reference itself: an identity slot pads the template symmetrically."""
  p = {k: np.asarray(v) for k, v in params(num_templates=1).items()}
  pad = [((n - m) // 2,) * 2 for n, m in zip(SHAPE, T_SHAPE)]
  want = np.where(np.pad(TEMPLATES[2], pad) > 0, CFG.label_offset, 0)
  np.testing.assert_array_equal(reference_paint(TEMPLATES, p, CFG), want)


# ---------------------------------------------------------------------------------------
# Sphere, envelope, rim


def test_sphere_envelope_and_rim_match_numpy():
  base = dict(sphere_noise=0.0, sphere_radius=0.3, sphere_shift=[0.1, -0.05, 0.0], rim_width=2.0)
  painted = render(params(**base))
  p = params(**base, sphere_applied=True)
  dist = distances(CFG, p)
  radius = np.float32(0.3) * 32
  assert np.abs(dist - radius).min() > 1e-3 and np.abs(np.abs(dist - radius) - 2).min() > 1e-3
  sphere = dist <= radius
  masked = render(p)
  assert not masked[~sphere].any()  # outside the radius: background only
  np.testing.assert_array_equal(masked, np.where(sphere, painted, 0))
  # Envelope: exactly the unpainted voxels inside the sphere.
  env = render(params(**base, sphere_applied=True, envelope_applied=True))
  np.testing.assert_array_equal(env, np.where(sphere, np.where(painted == 0, 1, painted), 0))
  assert (env == 1).sum() > 100
  # Rim: the band radius - w < d <= radius + w, over everything (anatomix).
  rim = render(params(**base, sphere_applied=True, envelope_applied=True, rim_applied=True))
  band = (dist > radius - 2) & (dist <= radius + 2)
  np.testing.assert_array_equal(rim, np.where(band, 2, env))
  # The envelope needs the sphere: no envelope and no rim without a mask.
  np.testing.assert_array_equal(
    render(params(**base, envelope_applied=True, rim_applied=True)), painted
  )
  assert set(np.unique(rim)) <= set(ensembles.ensemble_labels(CFG, TEMPLATES))


def test_deformed_sphere_matches_scipy_noise_field():
  p = params(
    sphere_applied=True,
    sphere_noise=0.3,
    sphere_radius=0.35,
    sphere_shift=[0.0, 0.05, -0.05],
    sphere_grid_scale=0.125,
    rim_applied=False,
    envelope_applied=True,
  )
  key = jax.random.key(7)
  got = np.asarray(ensembles.render_ensemble(key, p, TEMPLATES, CFG))
  g_max = draw.max_grid_size(CFG.sphere_grid_scale[1], 32)
  small = np.asarray(
    jax.random.normal(
      jax.random.fold_in(key, E._SYNTH_STREAMS["sphere"]), (g_max,) * 3, jnp.float32
    ),
    np.float64,
  )
  g = 4  # ceil(0.125 * 32)
  axis = np.arange(32) * (g - 1) / 31
  coords = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"))
  noise = ndi.map_coordinates(small, coords, order=1, mode="nearest")
  radius = 0.35 * 32 * (1 + 0.3 * noise)
  dist = distances(CFG, p)
  inside = got > 0  # the envelope fills the whole mask
  sure = np.abs(dist - radius) > 1e-3
  np.testing.assert_array_equal(inside[sure], (dist <= radius)[sure])
  # Deformed: not the plain sphere, and still one piece.
  assert (inside != (dist <= 0.35 * 32)).sum() > 50
  assert ndi.label(inside)[1] == 1


# ---------------------------------------------------------------------------------------
# Replay, jit, vmap


def test_replay_jit_and_vmap_bitwise():
  batch = ensembles.sample_ensemble_params(jax.random.split(jax.random.key(4), 3), CFG)
  host = jax.tree.map(np.asarray, batch)
  rkeys = jax.random.split(jax.random.key(5), 3)
  fn = jax.jit(jax.vmap(lambda k, p: ensembles.render_ensemble(k, p, TEMPLATES, CFG)))
  out = np.asarray(fn(rkeys, batch))
  assert out.dtype == np.int32 and out.shape == (3,) + SHAPE
  for i in range(3):
    p = {k: v[i] for k, v in host.items()}  # numpy: no op-by-op compilations
    single = render(p, key=rkeys[i])
    np.testing.assert_array_equal(out[i], single)
    np.testing.assert_array_equal(render(p, key=rkeys[i]), single)  # replay
    assert set(np.unique(single)) <= set(ensembles.ensemble_labels(CFG, TEMPLATES))
  assert not np.array_equal(out[0], out[1])
  # From host params (numpy / lists, as read back from JSON): the same map, no recompile.
  lists = {k: v[0].tolist() for k, v in host.items()}
  with traced() as seen:
    again = render(lists, key=rkeys[0])
  np.testing.assert_array_equal(again, out[0])
  assert seen[jit_name(E._render_jit)] == 0, seen


def test_random_shapes_source():
  keys = jax.random.split(jax.random.key(11), 2)
  batch = ensembles.sample_ensemble_params(keys, SHAPES_CFG)
  host = jax.tree.map(np.asarray, batch)
  rkeys = jax.random.split(jax.random.key(12), 2)
  fn = jax.jit(jax.vmap(lambda k, p: ensembles.render_ensemble(k, p, None, SHAPES_CFG)))
  out = np.asarray(fn(rkeys, batch))
  allowed = set(ensembles.ensemble_labels(SHAPES_CFG))
  stride = SHAPES_CFG.num_shape_labels[1]
  for i in range(2):
    p = {k: v[i] for k, v in host.items()}  # numpy: no op-by-op compilations
    single = np.asarray(ensembles.render_ensemble(rkeys[i], p, None, SHAPES_CFG))
    np.testing.assert_array_equal(out[i], single)
    labels = [v for v in np.unique(single) if v > 0]
    assert set(labels) <= allowed and len(labels) >= 6
    slots = {(v - SHAPES_CFG.label_offset) // stride for v in labels}
    assert max(slots) < int(p["num_templates"])
    # Several labels inside one shape.
    per_slot = [sum((v - SHAPES_CFG.label_offset) // stride == s for v in labels) for s in slots]
    assert max(per_slot) >= 2
    # Smooth: each label is one or a few pieces (a later shape may cut an earlier one), not
    # speckle (white noise with as many labels gives hundreds of pieces per label).
    pieces, largest = [], []
    for v in labels:
      lab, num = ndi.label(single == v, np.ones((3, 3, 3)))
      sizes = np.bincount(lab.ravel())[1:]
      pieces.append(num)
      largest.append(sizes.max() / sizes.sum())
    assert np.mean(pieces) <= 3.0 and max(pieces) <= 8, pieces
    assert np.median(largest) >= 0.9, largest
    assert (single > 0).mean() > 0.05
  assert not np.asarray(batch["envelope_applied"]).any()  # no envelope label
  # The synthesis key changes the shapes, the params stay the same.
  p = {k: v[0] for k, v in host.items()}
  other = np.asarray(ensembles.render_ensemble(jax.random.key(99), p, None, SHAPES_CFG))
  assert not np.array_equal(other, out[0])


# ---------------------------------------------------------------------------------------
# Errors


def test_render_errors():
  p = params()
  with pytest.raises(ValueError, match="entries"):
    ensembles.render_ensemble(
      jax.random.key(0), {k: v for k, v in p.items() if k != "rotation"}, TEMPLATES, CFG
    )
  with pytest.raises(ValueError, match="rotation"):
    ensembles.render_ensemble(jax.random.key(0), dict(p, rotation=np.zeros((2, 3))), TEMPLATES, CFG)
  with pytest.raises(ValueError, match=r"\(T, X, Y, Z\)"):
    ensembles.render_ensemble(jax.random.key(0), p, TEMPLATES[0], CFG)
  with pytest.raises(TypeError, match="integer"):
    ensembles.render_ensemble(jax.random.key(0), p, TEMPLATES.astype(np.float32), CFG)
  with pytest.raises(TypeError, match="EnsembleConfig"):
    ensembles.render_ensemble(jax.random.key(0), p, TEMPLATES, object())


def _save(path, array):
  nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4)), str(path))
  return str(path)


def test_load_templates(tmp_path):
  a = np.zeros((8, 10, 6), np.int16)
  a[2:5, 3:7, 1:4] = 3
  b = np.zeros((8, 10, 6), np.int16)
  b[0:2, 0:2, 0:2] = 1
  folder = tmp_path / "tpl"
  (folder / "sub").mkdir(parents=True)
  _save(folder / "a.nii.gz", a)
  _save(folder / "sub" / "b.nii", b)
  stack, paths = ensembles.load_templates(folder, return_paths=True)
  assert stack.dtype == np.int32 and stack.shape == (2, 8, 10, 6)
  assert [os.path.basename(p) for p in paths] == ["a.nii.gz", "b.nii"]
  np.testing.assert_array_equal(stack[0], a)
  # Pad / crop, centred.
  padded = ensembles.load_templates([folder / "a.nii.gz"], shape=(12, 8, 6), dtype=np.uint8)
  assert padded.dtype == np.uint8 and padded.shape == (1, 12, 8, 6)
  np.testing.assert_array_equal(padded[0, 2:10], a[:, 1:9])
  # Foreground crop (anatomix): boxes padded to the largest box.
  cropped = ensembles.load_templates(folder, crop_foreground=True)
  assert cropped.shape == (2, 3, 4, 3)
  np.testing.assert_array_equal(cropped[0], a[2:5, 3:7, 1:4])
  assert cropped[1].sum() == 8 and cropped[1, 0:2, 1:3, 0:2].all()  # centred in the box
  # Glob pattern.
  assert ensembles.load_templates(str(folder / "*.nii.gz")).shape == (1, 8, 10, 6)

  c = _save(tmp_path / "c.nii.gz", np.zeros((5, 5, 5), np.int16) + 1)
  with pytest.raises(ValueError, match="c.nii.gz.*differs"):
    ensembles.load_templates([folder / "a.nii.gz", c])
  assert ensembles.load_templates([folder / "a.nii.gz", c], shape=(6, 6, 6)).shape == (2, 6, 6, 6)
  empty = _save(tmp_path / "empty.nii.gz", np.zeros((8, 10, 6), np.int16))
  with pytest.raises(ValueError, match="empty.nii.gz.*no foreground"):
    ensembles.load_templates([folder / "a.nii.gz", empty])
  assert len(ensembles.load_templates([folder / "a.nii.gz", empty], skip_empty=True)) == 1
  with pytest.raises(ValueError, match="every template is empty"):
    ensembles.load_templates([empty], skip_empty=True)
  neg = _save(tmp_path / "neg.nii.gz", a - 1)
  with pytest.raises(ValueError, match="neg.nii.gz.*>= 0"):
    ensembles.load_templates(neg)
  big = _save(tmp_path / "big.nii.gz", a * 100)
  with pytest.raises(ValueError, match="big.nii.gz.*uint8"):
    ensembles.load_templates(big, dtype=np.uint8)
  frac = _save(tmp_path / "frac.nii.gz", a.astype(np.float32) / 2)
  with pytest.raises(ValueError, match="frac.nii.gz"):
    ensembles.load_templates(frac)
  bad = tmp_path / "bad.nii.gz"
  bad.write_bytes(b"not a nifti")
  with pytest.raises(ValueError, match="bad.nii.gz"):
    ensembles.load_templates(bad)
  with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
    ensembles.load_templates(tmp_path / "missing.nii.gz")
  (tmp_path / "none").mkdir()
  with pytest.raises(FileNotFoundError, match="no NIfTI"):
    ensembles.load_templates(tmp_path / "none")
  with pytest.raises(ValueError, match="shape"):
    ensembles.load_templates(folder, shape=(4, 4))


def test_ensemble_labels():
  assert ensembles.ensemble_labels(CFG) == [0, 1, 2, 3, 4, 5]
  off = CFG.replace(label_mode="offset")
  assert ensembles.ensemble_labels(off, TEMPLATES) == sorted(
    {0, 1, 2} | {3 + s * 4 + l - 1 for s in range(3) for l in (1, 2, 3, 4)}
  )
  assert ensembles.max_label(off, 4) == 3 + 3 * 4 - 1
  assert ensembles.ensemble_labels(SHAPES_CFG)[-1] == ensembles.max_label(SHAPES_CFG)
