"""Small-table lookups (`synthjax._src.ops.lookup`) against numpy indexing, eager/jit/vmap."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import synthjax
from synthjax._src import labelmaps
from synthjax._src.ops import lookup


class TakeSmallTest(chex.TestCase):
  """`take_small` is numpy's `table[index]`, eagerly, under jit, and over a batch of tables."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(1, 2, 8, lookup.MAX_SELECT_ENTRIES, lookup.MAX_SELECT_ENTRIES + 5)
  def test_take_small_matches_numpy(self, n):
    rng = np.random.default_rng(n)
    table = rng.normal(size=n).astype(np.float32)
    index = rng.integers(0, n, size=(6, 7, 8)).astype(np.int32)
    take = self.variant(lookup.take_small)
    chex.assert_trees_all_equal(take(jnp.asarray(table), jnp.asarray(index)), table[index])
    # A batch of tables (traced, per sample) with one index map.
    tables = rng.normal(size=(3, n)).astype(np.float32)
    batched = self.variant(jax.vmap(lookup.take_small, in_axes=(0, None)))
    chex.assert_trees_all_equal(batched(jnp.asarray(tables), jnp.asarray(index)), tables[:, index])


def test_match_values_maps_known_values_and_defaults_the_rest():
  values = [0, 4, 17, 300]
  targets = np.array([3, 2, 1, 0], np.int32)
  raw = np.array([[0, 4, 5], [17, 300, -1]], np.int32)
  got = np.asarray(jax.jit(lambda r, t: lookup.match_values(r, values, t, 9))(raw, targets))
  np.testing.assert_array_equal(got, [[3, 2, 9], [1, 0, 9]])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.uint32, np.int64])
def test_label_index_select_path_matches_dense_reference(dtype):
  # label_index takes the select chain for <= MAX_SELECT_ENTRIES labels; the reference is a
  # Python dict lookup with unknown values (and out-of-range ones) mapped to background.
  values = (0, 2, 3, 41, 42, 77)
  cfg = synthjax.presets.synthseg(values, (8, 8, 8))
  rng = np.random.default_rng(0)
  pool = np.array(list(values) + [1, 5, 200], np.int64)
  raw = rng.choice(pool, size=(8, 8, 8)).astype(dtype)
  pos = {v: i for i, v in enumerate(values)}
  bg = pos[cfg.background]
  want = np.vectorize(lambda v: pos.get(int(v), bg))(raw)
  got = labelmaps.label_index(jnp.asarray(raw), cfg)
  np.testing.assert_array_equal(np.asarray(got), want)
  swap = np.array([0, 1, 2, 4, 3, 5], np.int32)  # 41 <-> 42
  got = jax.jit(lambda r, s: labelmaps.label_index(r, cfg, swap=s))(jnp.asarray(raw), swap)
  np.testing.assert_array_equal(np.asarray(got), swap[want])
