"""Per-voxel lookups in small tables (label -> mean, std, index, output label).

In the generator's whole XLA program (CPU), the op profile showed each gather from a
few-entry table costing about 35 ms per 256^3 volume, as much as drawing the voxel noise:
XLA fuses the index's producers (the label gather and its coordinate arithmetic) into each
such gather. In isolation the same gather takes about 1 ms at 160^3, so the cost is in that
fusion, not in the gather itself. Chains of compare-and-selects fuse without it: using them
for the label lookups took a 256^3 sample from 779 to 634 ms. Tables of up to
`MAX_SELECT_ENTRIES` entries use the chain; larger ones keep the gather, since the chain's
cost grows with the number of entries. `benchmarks/bench_kernels.py` times both in isolation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MAX_SELECT_ENTRIES = 32


def take_small(table, index: jax.Array) -> jax.Array:
  """`table[index]` for a 1-D `table` (numpy or JAX, may be traced) and an integer map.

  Indices must lie in `[0, len(table))`: the select chain has no clamping semantics.

  Examples:
    >>> import numpy as np
    >>> take_small(np.array([5.0, 7.0, 9.0]), jnp.array([[2, 0], [1, 1]])).tolist()
    [[9.0, 5.0], [7.0, 7.0]]
  """
  table = jnp.asarray(table)
  n = table.shape[0]
  if n > MAX_SELECT_ENTRIES:
    return table[index]
  out = jnp.broadcast_to(table[0], index.shape)
  for i in range(1, n):
    out = jnp.where(index == i, table[i], out)
  return out


def match_values(raw: jax.Array, values, targets, default) -> jax.Array:
  """`targets[k]` where `raw == values[k]`, else `default` (a small select chain).

  `values` are static ints; `targets` (same length) and `default` may be traced.
  """
  targets = jnp.asarray(targets)
  out = jnp.broadcast_to(jnp.asarray(default, targets.dtype), raw.shape)
  for k, v in enumerate(values):
    out = jnp.where(raw == int(v), targets[k], out)
  return out
