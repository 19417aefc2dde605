"""Per-sample PRNG keys computed in numpy, bit-identical to JAX's threefry keys.

Data workers must not touch JAX, yet each sample needs the key that the device side will
use. `sample_key_data(seed, index)` returns the raw words of
`jax.random.fold_in(jax.random.key(seed), index)` using a numpy port of Threefry-2x32
(Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the algorithm JAX's
default PRNG implements. On the device, `jax.random.wrap_key_data(batch["key"])` turns a
batch of them into keys.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x, r):
  return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(key, x0, x1):
  """Threefry-2x32 with 20 rounds on uint32 arrays `x0`, `x1` under `key` (2 words)."""
  with np.errstate(over="ignore"):
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0 = np.asarray(x0, np.uint32) + ks[0]
    x1 = np.asarray(x1, np.uint32) + ks[1]
    for block in range(5):
      for r in _ROTATIONS[block % 2]:
        x0 = x0 + x1
        x1 = _rotl(x1, r) ^ x0
      x0 = x0 + ks[(block + 1) % 3]
      x1 = x1 + ks[(block + 2) % 3] + np.uint32(block + 1)
    return x0, x1


def seed_key_data(seed: int) -> np.ndarray:
  """Raw words of `jax.random.key(seed)` (threefry) for a seed in [0, 2**32).

  JAX keeps only the low 32 bits of larger seeds unless x64 is enabled, so such seeds are
  refused rather than silently aliased.
  """
  seed = int(seed)
  if not 0 <= seed < (1 << 32):
    raise ValueError(f"seed must be in [0, 2**32), got {seed}")
  return np.array([0, seed], np.uint32)


def fold_in_data(key_data: np.ndarray, data: ArrayLike) -> np.ndarray:
  """Raw words of `jax.random.fold_in(key, data)` for uint32 `data` (scalar or array)."""
  data = np.asarray(data, np.int64).astype(np.uint32)
  y0, y1 = threefry2x32(key_data, np.zeros_like(data), data)
  return np.stack([y0, y1], axis=-1)


def sample_key_data(seed: int, index: ArrayLike) -> np.ndarray:
  """Raw key words of sample `index` of a run with `seed` (shape `index.shape + (2,)`).

  Equals `jax.random.key_data(jax.random.fold_in(jax.random.key(seed), index))`.
  """
  return fold_in_data(seed_key_data(seed), index)
