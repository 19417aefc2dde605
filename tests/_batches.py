"""Reading batched pytrees in tests."""

import jax


def element(tree, i):
  """Element `i` of every leaf of a batched pytree (params, images): the single sample that a
  vmapped batch holds at index `i`."""
  return jax.tree.map(lambda leaf: leaf[i], tree)


def stacked(trees):
  """The batch whose element `i` is `trees[i]` (one leading axis on every leaf)."""
  return jax.tree.map(lambda *leaves: jax.numpy.stack(leaves), *trees)
