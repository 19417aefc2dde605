"""The outer shell shared by the jitted random functions (the generator and the ensembles).

Each pairs a pure per-sample function with the same handling around it: a batch of keys is
mapped with `vmap`, the names in `fixed` are checked against the params the function
draws, and params given as host values are moved to device arrays of the exact dtypes the
program was compiled for (jit keys its cache on them, so numpy or Python inputs would
otherwise compile a second program).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np


def is_key_batch(key) -> bool:
  """Whether `key` is a batch of PRNG keys (typed keys, or raw `uint32[..., 2]` ones)."""
  key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key.ndim >= 1
  return key.ndim >= 2


def map_keys(sample_one, key, config, fixed, per_key=None):
  """`sample_one(key, config, fixed[, per_key])`, mapped with `vmap` over a batch of keys.

  `per_key` (optional, an array) is passed on too: mapped with the keys where it has a
  leading axis, shared by every key where it is a scalar.
  """
  extra = () if per_key is None else (per_key,)
  if is_key_batch(key):
    axes = (0,) + tuple(0 if jnp.ndim(a) else None for a in extra)
    return jax.vmap(lambda k, *a: sample_one(k, config, fixed, *a), in_axes=axes)(key, *extra)
  return sample_one(key, config, fixed, *extra)


def check_names(given, allowed, *, subject: str, noun: str, allowed_are: str):
  """Raises `ValueError` naming every entry of `given` that is not in `allowed`.

  The message reads "`subject` names unknown `noun`(s) [...]; `allowed_are` [...]".
  """
  unknown = sorted(set(given) - set(allowed))
  if unknown:
    raise ValueError(
      f"{subject} names unknown {noun}(s) {unknown}; {allowed_are} {sorted(allowed)}"
    )


def check_fixed_dict(fixed, what: str) -> dict[str, Any]:
  """`fixed` as a dict (`None` gives `{}`); anything else is a `TypeError`."""
  if fixed is None:
    return {}
  if not isinstance(fixed, dict):
    raise TypeError(f"fixed must be {what}, got {type(fixed).__name__}")
  return fixed


def check_entries(params, expected, *, name: str = "params", noun: str = "entries"):
  """Raises `ValueError` unless `params` is a dict with exactly the keys of `expected`."""
  if not isinstance(params, dict) or set(params) != set(expected):
    got = sorted(params) if isinstance(params, dict) else type(params).__name__
    raise ValueError(f"{name} must be a dict with {noun} {sorted(expected)}, got {got}")


def to_device(value, dtype):
  """`value` as a device array of `dtype`; traced values (under jit or vmap) pass as they are,
  and so does a float64 array for a float entry when `jax_enable_x64` is on (the image is
  then rendered in float64, as it is when the same params are traced)."""
  if isinstance(value, jax.core.Tracer):
    return value
  if (
    getattr(value, "dtype", None) == np.float64
    and jnp.issubdtype(dtype, jnp.floating)
    and jax.config.read("jax_enable_x64")
  ):
    return jnp.asarray(value)
  return jnp.asarray(value, dtype)
