"""Lossless JSON for params and keys.

A float32 converts exactly to a Python float (a double), whose `repr` JSON writes and
reads back exactly, so the round trip is bit-exact. `params_from_json` checks the text
against the structure, shapes and dtypes that `sample_params` gives for the config, so a
params file written for another config fails loudly instead of rendering something else.
"""

from __future__ import annotations

import json

import numpy as np
import jax
import jax.numpy as jnp

from synthjax._src import generator
from synthjax._src.config import SynthConfig


def _to_python(x):
  a = np.asarray(x)
  if a.dtype == bool:
    return a.tolist()
  if np.issubdtype(a.dtype, np.integer):
    return a.astype(np.int64).tolist()
  if np.issubdtype(a.dtype, np.floating):
    return a.astype(np.float64).tolist()
  raise TypeError(f"cannot serialise array of dtype {a.dtype}")


def params_to_dict(params) -> dict:
  """Nested dict of Python lists/numbers (the JSON form of params, and of `fixed`)."""
  return {stage: {name: _to_python(v) for name, v in sorted(entries.items())}
          for stage, entries in sorted(params.items())}


def params_to_json(params, *, indent=None) -> str:
  """Serialises params (one sample or a batch) to JSON, bit-exactly for float32.

  Examples:
    >>> import jax, synthjax
    >>> cfg = synthjax.presets.synthseg((0, 1), (32, 32, 32))
    >>> p = synthjax.sample_params(jax.random.key(0), cfg)
    >>> q = synthjax.params_from_json(synthjax.params_to_json(p), cfg)
    >>> bool(jax.tree.all(jax.tree.map(lambda a, b: (a == b).all(), p, q)))
    True
  """
  return json.dumps(params_to_dict(params), indent=indent, sort_keys=True)


params_template = generator.params_template


def params_from_json(text, config: SynthConfig) -> dict:
  """Reads params written by `params_to_json` (a string, or an already parsed dict).

  A dict with a top-level `"params"` entry (the sidecar files written by the CLI) is
  accepted too. Leading batch axes are kept.

  Raises:
    ValueError: missing or unknown entries, or shapes that do not fit the config.
  """
  data = json.loads(text) if isinstance(text, (str, bytes)) else text
  if isinstance(data, dict) and "params" in data and isinstance(data["params"], dict):
    data = data["params"]
  template = params_template(config)
  data = dict(data)
  for stage in template:
    stage_cfg = getattr(config, stage, None)
    if stage not in data and stage_cfg is not None and not stage_cfg.enabled:
      # A stage added after the file was written, disabled in this config: it renders
      # nothing, so any values of the right shape replay the file exactly.
      data[stage] = params_to_dict({stage: generator.params_defaults(config)[stage]})[stage]
  missing = [f"{s}.{n}" for s, e in template.items() for n in e
             if s not in data or n not in data[s]]
  if missing:
    raise ValueError(f"params JSON lacks {missing}")
  extra = [s for s in data if s not in template]
  extra += [f"{s}.{n}" for s in data if s in template for n in data[s] if n not in template[s]]
  if extra:
    raise ValueError(f"params JSON has entries this config does not know: {extra}")
  out = {}
  for stage, entries in template.items():
    out[stage] = {}
    for name, spec in entries.items():
      arr = np.asarray(data[stage][name], dtype=spec.dtype)
      if arr.shape[arr.ndim - len(spec.shape):] != spec.shape or arr.ndim < len(spec.shape):
        raise ValueError(f"params JSON {stage}.{name} has shape {arr.shape}, expected "
                         f"{spec.shape} (config has {config.num_labels} labels)")
      out[stage][name] = jnp.asarray(arr)
  return out


def key_to_json(key) -> list:
  """The raw uint32 words of a PRNG key (typed or legacy), as a JSON-ready list."""
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.asarray(key, np.uint32).tolist()


def key_from_json(data) -> jax.Array:
  """A typed threefry key from `key_to_json`'s output."""
  return jax.random.wrap_key_data(jnp.asarray(np.asarray(data, np.uint32)))
