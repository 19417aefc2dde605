"""Fast per-voxel random numbers: a keyed integer hash of the voxel index.

Full-volume draws (the GMM's per-voxel Gaussian, additive and Rician noise, texture) are the
largest cost of the generator when they go through `jax.random`: threefry-2x32 (20 rounds per
two words) takes about 165 ms per 256^3 volume on two CPU cores, 20 % of a sample. Here a
sample's key is reduced once (by threefry) to two 32-bit words, and each voxel's bits are a
two-round keyed hash of its flat index:

    bits[i] = mix(mix(i ^ k0) + k1),

where `mix` is the `lowbias32` integer finaliser (C. Wellons, "Prospecting for hash
functions", 2018: xorshift-multiply rounds, a bijection of uint32 with avalanche bias
0.17 %). It is counter-based like threefry, so it is deterministic for a key, independent of
`vmap`, sharding and backend (integer arithmetic only), and a normal costs about 37 ms per 256^3
volume. Its quality is that of a hash, not of a cryptographic generator; the tests check the
marginals, neighbour and cross-key correlations, and bit balance, which is what image noise
needs. Normals use the inverse error function, as `jax.random.normal`.

References:
  Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011 (counter-based
  generators).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_U32 = jnp.uint32
_MAX_COUNT = 2**32


def _mix(x: jax.Array) -> jax.Array:
  x = x ^ (x >> 16)
  x = x * _U32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * _U32(0x846CA68B)
  return x ^ (x >> 16)


def voxel_bits(key, shape) -> jax.Array:
  """uint32 random bits of `shape`, one keyed hash of each element's flat index.

  Args:
    key: a JAX PRNG key (typed or raw).
    shape: static shape with fewer than 2**32 elements.

  Returns:
    A uint32 array of `shape`.
  """
  shape = tuple(int(s) for s in shape)
  count = int(np.prod(shape, dtype=np.int64))
  if count >= _MAX_COUNT:
    raise ValueError(f"voxel_bits draws at most 2**32 - 1 elements, got shape {shape}")
  k = jax.random.bits(key, (2,), jnp.uint32)
  index = jax.lax.iota(_U32, count).reshape(shape)
  return _mix(_mix(index ^ k[0]) + k[1])


def voxel_uniform(key, shape) -> jax.Array:
  """float32 uniforms in the open interval (0, 1) on a 2**-23 lattice (`voxel_bits`)."""
  bits = voxel_bits(key, shape)
  # 23 mantissa bits give [1, 2); the half-step offset keeps 0 and 1 out.
  one_two = jax.lax.bitcast_convert_type((bits >> 9) | _U32(0x3F800000), jnp.float32)
  return one_two - np.float32(1.0 - 2.0**-24)


def voxel_normal(key, shape) -> jax.Array:
  """float32 standard normals of `shape` (inverse-CDF of `voxel_uniform`).

  Replaces `jax.random.normal(key, shape)` for full-volume draws; 4-7x faster on CPU
  (`benchmarks/bench_kernels.py`).
  The largest magnitude it can give is about 5.3.

  Examples:
    >>> z = voxel_normal(jax.random.key(0), (32, 32, 32))
    >>> bool(abs(float(z.mean())) < 0.01 and abs(float(z.std()) - 1) < 0.01)
    True
  """
  u = voxel_uniform(key, shape)
  return np.float32(np.sqrt(2.0)) * jax.lax.erf_inv(2.0 * u - 1.0)
