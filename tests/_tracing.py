"""Counting what JAX traces, through `jax.monitoring`'s public event listeners.

A jitted function is traced when its compilation cache misses (new shapes, dtypes or static
arguments) and not when the cache hits, so the traces seen inside a block tell whether the
calls in it compiled anything.
"""

import collections
import contextlib

import jax

# The event JAX records once per trace of a jitted function called outside any other trace,
# with the function's name as `fun_name`.
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"


@contextlib.contextmanager
def traced():
  """Counts, by function name, the jitted functions traced inside the block.

  Yields:
    A `collections.Counter` from function name to traces, filled while the block runs.

  Examples:
    >>> f = jax.jit(lambda x: x + 1)
    >>> with traced() as seen:
    ...   _ = f(1.0); _ = f(2.0)
    >>> seen["<lambda>"]
    1
  """
  seen = collections.Counter()

  def listener(event, duration_secs, **kwargs):
    del duration_secs
    if event == TRACE_EVENT:
      seen[kwargs.get("fun_name", "?")] += 1

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield seen
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)


def jit_name(jitted):
  """The name under which JAX reports the traces of `jitted` (a `jax.jit` function)."""
  return jitted.__wrapped__.__name__
