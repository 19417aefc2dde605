"""A traced augmentation strength: one scalar in [0, 1] that moves every stage's draws
toward the stage's identity (`sample_params(..., strength=s)`).

How a stage weakens is declared on its `Stage` record (`Stage.strength`):
- a mapping from params entries to their identity values (an angle's 0, a scale's 1, a
  resolution's voxel spacing): a drawn value `v` becomes `identity + s * (v - identity)`,
  and the stage is not applied at `s = 0`. Its ranges shrink toward the identity, as
  RandAugment's magnitude and TrivialAugment's strength bins do for 2-D augmentations;
- an empty mapping: the stage has no magnitude to shrink (a flip, the sub-label classes, a
  slice-stack acquisition), and is applied with its probability times `s`;
- None: the stage is what is rendered, not how it is altered (the label Gaussians, the
  crop, a real image as the intensities), and `s` leaves it alone.

So `s = 0` renders the plain Gaussian mixture of the unmoved labels, and `s = 1` draws what
`sample_params` draws without a strength: the same flags and integers, and the same floats
up to XLA's rounding (the program with a strength is another program, and XLA may fuse a
draw's arithmetic differently in it: about one float32 ulp, in a few values). Leave the
strength out for the exact replay of existing params. A value fixed in `fixed` is used as
given, whatever `s`. The strength is an array, not a static option: a schedule changes it
at every step without recompiling.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

# `fold_in` id, under a stage's params key, of the uniform that gates stages without a
# magnitude. Drawn only with a strength, so the other draws are those without one.
GATE_STREAM = 0x5354

__all__ = ["weaken", "as_strength"]


def as_strength(strength, num_keys=None):
  """`strength` as a float32 array in [0, 1]: a scalar, or one per key of a batch.

  Concrete values outside [0, 1] raise `ValueError`; traced ones are clipped.
  """
  if isinstance(strength, (bool, np.bool_)):
    raise TypeError("strength must be a number in [0, 1], got a bool")
  try:
    s = jnp.asarray(strength, jnp.float32)
  except (TypeError, ValueError) as e:
    raise TypeError(
      f"strength must be a number in [0, 1] (or one per key), got {type(strength).__name__}"
    ) from e
  allowed = [()] if num_keys is None else [(), (num_keys,)]
  if s.shape not in allowed:
    where = "a scalar" if num_keys is None else f"a scalar or one per key ({num_keys},)"
    raise ValueError(f"strength must be {where}, got shape {s.shape}")
  if not isinstance(s, jax.core.Tracer):
    values = np.asarray(s)
    if not np.all((values >= 0.0) & (values <= 1.0)):
      raise ValueError(f"strength must be in [0, 1], got {np.round(values, 6).tolist()}")
  return jnp.clip(s, 0.0, 1.0)


def _is_fixed(fixed, name):
  return fixed is not None and fixed.get(name) is not None


def weaken(key, table: Mapping[str, Any] | None, entries: dict[str, Any], fixed, strength, config):
  """A stage's drawn `entries` at `strength` (see the module docstring).

  Args:
    key: the stage's params key (the gate's uniform is folded in from it).
    table: the stage's `Stage.strength`.
    entries: the stage's params, drawn from the config's ranges.
    fixed: the stage's fixed values (kept as given), or None.
    strength: a float32 scalar in [0, 1] (traced).
    config: the `SynthConfig` (identities may depend on it, e.g. the voxel spacing).

  Returns:
    The stage's params dict; at `strength == 1` the drawn values.
  """
  if table is None:
    return entries
  out = dict(entries)
  full = strength >= 1.0
  for name, identity in table.items():
    if name not in entries or _is_fixed(fixed, name):  # (entries a config may not draw)
      continue
    value = entries[name]
    ident = identity(config) if callable(identity) else identity
    ident = jnp.broadcast_to(jnp.asarray(ident, value.dtype), value.shape)
    moved = ident + strength.astype(value.dtype) * (value - ident)
    out[name] = jnp.where(full, value, moved)
  if "applied" in entries and not _is_fixed(fixed, "applied"):
    if table:
      keep = strength > 0.0
    else:
      u = jax.random.uniform(jax.random.fold_in(key, GATE_STREAM), (), jnp.float32)
      keep = full | (u < strength)
    out["applied"] = entries["applied"] & keep
  return out
