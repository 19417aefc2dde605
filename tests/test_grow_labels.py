"""Label sets grown into their neighbours: against scipy's Euclidean distance transform,
through the whole generator (image and segmentation), eagerly, under jit and under vmap."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _configs import ALL_OFF
from _maps import nested_balls
from scipy import ndimage

import synthjax
from synthjax._src.ops import morphology
from synthjax._src.stages import grow_labels

SHAPE = (20, 18, 16)
SPACING = (1.0, 1.5, 2.0)
# 1: outer shell, 2: middle shell, 3: core, 0 outside.
LABELS = nested_balls(SHAPE, (11.0, 8.0, 4.0), spacing=SPACING)
VALUES = (0, 1, 2, 3)


def _config(rules, prob=1.0):
  return synthjax.SynthConfig(
    shape=SHAPE,
    label_values=VALUES,
    spacing=SPACING,
    gmm={"std": (0.0, 0.0)},
    grow_labels={"rules": rules, "prob": prob, "enabled": True},
    **ALL_OFF,
  )


def _reference(labels, rules_and_radii):
  """Each rule in turn: the `into` voxels within the radius (mm) of `grow` become `grow[0]`."""
  out = labels.copy()
  for (grow, into), radius in rules_and_radii:
    d = ndimage.distance_transform_edt(~np.isin(out, grow), sampling=SPACING)
    out = np.where(np.isin(out, into) & (d <= radius), grow[0], out)
  return out


RULES = (((3,), (2,), (0.0, 5.0), 1.0), ((0,), (1,), (0.0, 4.0), 1.0))


@pytest.mark.parametrize("r_core, r_outer", [(2.6, 1.9), (4.9, 3.1), (0.0, 0.0)])
def test_synthesize_grows_the_labels_as_scipy_measures(r_core, r_outer):
  cfg = _config(RULES)
  params = synthjax.sample_params(
    jax.random.key(0), cfg, fixed={"grow_labels": {"radius": [r_core, r_outer]}}
  )
  _, seg = synthjax.synthesize(jax.random.key(1), params, LABELS, cfg)
  want = _reference(LABELS, [(((3,), (2,)), r_core), (((0,), (1,)), r_outer)])
  np.testing.assert_array_equal(np.asarray(seg), want)
  if r_core > 0:
    assert (want != LABELS).sum() > 20  # the radii reach past the first shell of voxels


class EditTest(chex.TestCase):
  """The edit alone (`apply_grow_labels`), eagerly, under jit and under vmap."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_each_rule_applies_in_turn_where_it_is_drawn(self):
    cfg = _config(RULES).grow_labels
    edit = self.variant(lambda m, p: grow_labels.apply_grow_labels(m, p, cfg, VALUES, SPACING))
    maps = jnp.asarray(LABELS)
    cases = [([True, False], [3.3, 2.0]), ([False, True], [3.3, 2.5]), ([True, True], [1.6, 4.0])]
    for grow, radius in cases:
      p = {"applied": jnp.asarray(True), "grow": jnp.asarray(grow), "radius": jnp.asarray(radius)}
      drawn = [(r, rad) for r, g, rad in zip((((3,), (2,)), ((0,), (1,))), grow, radius) if g]
      chex.assert_trees_all_equal(edit(maps, p), _reference(LABELS, drawn).astype(LABELS.dtype))
    # Not applied: the map as it was, whatever the rules drew.
    p = {
      "applied": jnp.asarray(False),
      "grow": jnp.asarray([True, True]),
      "radius": jnp.asarray([3.0, 3.0]),
    }
    chex.assert_trees_all_equal(edit(maps, p), maps)

  @chex.variants(with_jit=True, without_jit=True)
  def test_a_batch_of_radii_is_each_radius_alone(self):
    cfg = _config(RULES[:1]).grow_labels
    edit = lambda r: grow_labels.apply_grow_labels(
      jnp.asarray(LABELS),
      {"applied": True, "grow": jnp.asarray([True]), "radius": r},
      cfg,
      VALUES,
      SPACING,
    )
    radii = jnp.asarray([[0.5], [2.2], [4.6]])
    got = self.variant(jax.vmap(edit))(radii)
    for i, r in enumerate(np.asarray(radii)[:, 0]):
      np.testing.assert_array_equal(np.asarray(got[i]), _reference(LABELS, [(((3,), (2,)), r)]))


@pytest.mark.parametrize("spacing", [None, (0.7, 1.0, 2.5)])
def test_squared_distance_is_scipys_within_its_radius(spacing):
  rng = np.random.default_rng(0)
  mask = rng.random((15, 13, 11)) < 0.02
  r_max = 4.0 if spacing is None else 5.5
  got = np.asarray(jax.jit(lambda m: morphology.squared_distance(m, r_max, spacing))(mask))
  d = ndimage.distance_transform_edt(~mask, sampling=spacing)
  near = d <= r_max
  np.testing.assert_allclose(got[near], (d**2)[near], rtol=1e-6)
  assert (got[~near] > r_max**2).all()


def test_the_image_shows_the_grown_anatomy_and_replays():
  cfg = _config(RULES[:1])
  key = jax.random.key(3)
  params = synthjax.sample_params(key, cfg, fixed={"grow_labels": {"radius": [3.0]}})
  image, seg = synthjax.synthesize(key, params, LABELS, cfg)
  image, seg = np.asarray(image), np.asarray(seg)
  grown = (seg == 3) & (LABELS == 2)
  assert grown.sum() > 20
  # The GMM's stds are 0: every voxel of a label has that label's one intensity.
  for v in VALUES:
    assert np.unique(image[seg == v]).size == 1
  np.testing.assert_array_equal(image[grown], image[LABELS == 3][0])
  # From JSON, bit for bit.
  again = synthjax.params_from_json(synthjax.params_to_json(params), cfg)
  chex.assert_trees_all_equal(synthjax.synthesize(key, again, LABELS, cfg), (image, seg))


def test_a_rule_drawn_off_leaves_the_plain_output_bit_for_bit():
  key = jax.random.key(5)
  plain = _config(RULES).replace(grow_labels={"enabled": False})
  on = _config(RULES)
  p_on = synthjax.sample_params(key, on, fixed={"grow_labels": {"grow": [False, False]}})
  p_plain = synthjax.sample_params(key, plain)
  chex.assert_trees_all_equal(
    synthjax.synthesize(key, p_on, LABELS, on), synthjax.synthesize(key, p_plain, LABELS, plain)
  )


def test_rules_are_checked_with_messages_naming_them():
  with pytest.raises(ValueError, match=r"rules\[0\] must grow a non-empty set .* disjoint"):
    _config((((3,), (3, 2), (0.0, 1.0), 1.0),))
  with pytest.raises(ValueError, match=r"rules\[1\] radius"):
    _config((RULES[0], ((0,), (1,), (2.0, 1.0), 1.0)))
  with pytest.raises(ValueError, match=r"rules\[0\] probability"):
    _config((((3,), (2,), (0.0, 1.0), 1.5),))
  with pytest.raises(ValueError, match=r"grow_labels.rules\[0\] names label\(s\) \[9\]"):
    _config((((9,), (2,), (0.0, 1.0), 1.0),))
  cfg = _config(RULES)
  assert synthjax.SynthConfig.from_json(cfg.to_json()) == cfg
