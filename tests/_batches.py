"""Reading batched pytrees in tests."""

import jax


def element(tree, i):
  """Element `i` of every leaf of a batched pytree (params, images): the single sample that a
  vmapped batch holds at index `i`."""
  return jax.tree.map(lambda leaf: leaf[i], tree)
