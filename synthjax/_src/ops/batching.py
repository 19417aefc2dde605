"""Batches whose samples equal the single calls bit for bit: `vmap` as a loop over samples.

`jax.vmap` rewrites a program for a batch, and XLA then optimises the batched program, not
the single one. On CPU (jax 0.10) its algebraic simplifier regroups a product with a
constant array when the other factor is one scalar (`(d / s) ** 2` with a constant `d`
becomes `(d * d) * (r * r)`, `r = 1 / s`) but not when it is a batch of scalars, and the
kernels of matrix products depend on their sizes. Each such difference is an ulp; through
the generator a sample of a batch ends up to a few 1e-6 from the same sample rendered
alone. `per_sample` makes `vmap` map the unbatched program over the batch (`lax.map`), so
each sample runs the single call's program.

Costs: on CPU none measured (`benchmarks/bench_batch_replay.py`; a mapped sample also skips
the stages it does not apply, which a vectorised batch computes and discards). On an
accelerator the samples of a batch run one after another instead of in one kernel each.
"""

from __future__ import annotations

import jax


def _split(in_batched, args):
  batched = jax.tree.map(lambda b, a: a if b else None, in_batched, args)
  shared = jax.tree.map(lambda b, a: None if b else a, in_batched, args)
  return batched, shared


def _merge(in_batched, batched, shared):
  return jax.tree.map(
    lambda b, x, y: x if b else y, in_batched, batched, shared, is_leaf=lambda x: x is None
  )


def per_sample(fn):
  """`fn` with a `vmap` rule that runs it once per sample, and its own reverse-mode rule.

  Args:
    fn: a function of positional pytree arguments of arrays (JAX keys included), returning a
      pytree of arrays.

  Returns:
    A function equal to `fn`. Under `jax.vmap`, it runs `fn` on each sample in turn
    (`jax.lax.map`; arguments without the batch axis are shared), so sample `i` of the batch
    is computed by the same XLA program as `fn` on sample `i` alone. Under `jax.grad`, the
    gradient is `fn`'s (`jax.vjp`), and a batch of gradients is vmapped as usual.

  Examples:
    >>> import jax.numpy as jnp
    >>> f = per_sample(lambda x, s: jnp.sum((x / s) ** 2))
    >>> jax.vmap(f, in_axes=(0, None))(jnp.ones((3, 4)), 2.0).tolist()
    [1.0, 1.0, 1.0]
  """
  # Through `*args` only: `custom_vmap` would bind `fn`'s default values as traced inputs.
  mapped = jax.custom_batching.custom_vmap(lambda *args: fn(*args))

  @mapped.def_vmap
  def _rule(axis_size, in_batched, *args):
    del axis_size
    in_batched = list(in_batched)
    batched, shared = _split(in_batched, list(args))
    out = jax.lax.map(lambda xs: mapped(*_merge(in_batched, xs, shared)), batched)
    return out, jax.tree.map(lambda _: True, out)

  # `custom_vmap` has no transpose rule: reverse mode goes through `fn` itself.
  diff = jax.custom_vjp(lambda *args: mapped(*args))

  def _fwd(*args):
    return jax.vjp(fn, *args)

  def _bwd(vjp, cotangent):
    return vjp(cotangent)

  diff.defvjp(_fwd, _bwd)
  return diff
