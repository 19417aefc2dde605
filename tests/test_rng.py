"""Statistical checks of the per-voxel hash generator (`synthjax._src.ops.rng`).

References: closed-form moments of N(0, 1) and U(0, 1), `scipy.stats` tests with fixed
significance levels; the generator's promise is exact replay, so eager, jit and vmap must
agree bit for bit.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from synthjax._src.ops import rng

SHAPE = (48, 48, 48)


def _normal(seed, shape=SHAPE):
  return np.asarray(rng.voxel_normal(jax.random.key(seed), shape), np.float64)


def test_normal_marginal_matches_gaussian():
  z = _normal(0).ravel()
  n = z.size
  assert abs(z.mean()) < 5 / np.sqrt(n)
  assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
  assert abs(scipy.stats.skew(z)) < 5 * np.sqrt(6 / n)
  assert abs(scipy.stats.kurtosis(z)) < 5 * np.sqrt(24 / n)
  # Tail mass beyond 3 sigma (binomial tolerance) and a KS test on a subsample.
  tail = np.mean(np.abs(z) > 3)
  p3 = 2 * scipy.stats.norm.sf(3)
  assert abs(tail - p3) < 5 * np.sqrt(p3 / n)
  assert scipy.stats.kstest(z[::7], "norm").pvalue > 1e-4


def test_per_key_means_are_standard_error_distributed():
  # Across keys, sample means must scatter like N(0, 1/n): a generator whose streams were
  # shifted copies of each other, or biased, would fail this.
  n = 32**3
  means = np.array([_normal(s, (32, 32, 32)).mean() for s in range(40)]) * np.sqrt(n)
  assert scipy.stats.kstest(means, "norm").pvalue > 1e-4


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_no_correlation_between_neighbours(axis):
  z = _normal(1)
  a = np.take(z, np.arange(z.shape[axis] - 1), axis=axis).ravel()
  b = np.take(z, np.arange(1, z.shape[axis]), axis=axis).ravel()
  assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(a.size)


def test_no_correlation_between_keys():
  # Keys that differ in one bit of the seed (folded-in stream ids are of this kind).
  k = jax.random.key(3)
  for other in (jax.random.fold_in(k, 1), jax.random.fold_in(k, 2), jax.random.key(4)):
    a = np.asarray(rng.voxel_normal(k, SHAPE)).ravel()
    b = np.asarray(rng.voxel_normal(other, SHAPE)).ravel()
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(a.size)


def test_bits_are_balanced():
  bits = np.asarray(rng.voxel_bits(jax.random.key(5), SHAPE)).ravel()
  n = bits.size
  ones = np.array([np.mean((bits >> b) & 1) for b in range(32)])
  assert np.all(np.abs(ones - 0.5) < 5 * 0.5 / np.sqrt(n))
  # Top byte uniform over its 256 values (chi-square).
  counts = np.bincount(bits >> 24, minlength=256)
  assert scipy.stats.chisquare(counts).pvalue > 1e-4


def test_uniform_is_open_and_symmetric():
  u = np.asarray(rng.voxel_uniform(jax.random.key(6), SHAPE), np.float64).ravel()
  assert u.min() > 0 and u.max() < 1
  assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / u.size)
  assert scipy.stats.kstest(u[::7], "uniform").pvalue > 1e-4


@functools.cache
def _op_by_op_normals():
  """Three keys and their `voxel_normal` draws computed op by op: the variants' reference."""
  keys = jax.random.split(jax.random.key(7), 3)
  with jax.disable_jit():
    return keys, np.stack([np.asarray(rng.voxel_normal(k, (8, 9, 10))) for k in keys])


class AgreementTest(chex.TestCase):
  """The generator's bits do not depend on how it is called: eagerly, under jit, in a vmap."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_eager_jit_and_vmap_agree_bitwise(self):
    keys, eager = _op_by_op_normals()
    normal = self.variant(rng.voxel_normal, static_argnums=1)
    chex.assert_trees_all_equal(np.stack([normal(k, (8, 9, 10)) for k in keys]), eager)
    vmapped = self.variant(jax.vmap(lambda k: rng.voxel_normal(k, (8, 9, 10))))
    chex.assert_trees_all_equal(vmapped(keys), eager)
    assert not np.array_equal(eager[0], eager[1])


def test_raw_keys_work_and_shape_limit_is_checked():
  raw = jax.random.PRNGKey(0)
  assert rng.voxel_bits(raw, (4, 4)).dtype == jnp.uint32
  with pytest.raises(ValueError, match="2\\*\\*32"):
    jax.eval_shape(lambda k: rng.voxel_bits(k, (2**16, 2**16)), jax.random.key(0))
