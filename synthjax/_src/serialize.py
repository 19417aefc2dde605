"""Lossless JSON for params and keys.

A float32 converts exactly to a Python float (a double), whose `repr` JSON writes and
reads back exactly, so the round trip is bit-exact. `params_from_json` checks the text
against the structure, shapes and dtypes that `sample_params` gives for the config, so a
params file written for another config fails loudly instead of rendering something else.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from synthjax._src import param_checks, sampling
from synthjax._src.config import SynthConfig
from synthjax._src.pytypes import Params, ParamsLike, PRNGKey


def _to_python(x):
  a = np.asarray(x)
  if a.dtype == bool:
    return a.tolist()
  if np.issubdtype(a.dtype, np.integer):
    return a.astype(np.int64).tolist()
  if np.issubdtype(a.dtype, np.floating):
    return a.astype(np.float64).tolist()
  raise TypeError(f"cannot serialise array of dtype {a.dtype}")


def params_to_dict(params: ParamsLike) -> dict[str, dict[str, Any]]:
  """Nested dict of Python lists/numbers (the JSON form of params, and of `fixed`)."""
  return {
    stage: {name: _to_python(v) for name, v in sorted(entries.items())}
    for stage, entries in sorted(params.items())
  }


def params_to_json(params: ParamsLike, *, indent: int | str | None = None) -> str:
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


params_template = sampling.params_template


def params_from_json(text: str | bytes | dict[str, Any], config: SynthConfig) -> Params:
  """Reads params written by `params_to_json` (a string, or an already parsed dict).

  A dict with a top-level `"params"` entry (the sidecar files written by the CLI) is
  accepted too. Leading batch axes are kept.

  Raises:
    ValueError: not a JSON object of stages, missing or unknown entries, shapes that do not
      fit the config, values that are not numbers or lie outside their stage's domain, or
      an `applied` flag set for a stage the config disables (see `param_checks`).
  """
  try:
    data = json.loads(text) if isinstance(text, (str, bytes)) else text
  except ValueError as e:
    raise ValueError(f"params JSON is not valid JSON ({e})") from None
  if isinstance(data, dict) and "params" in data and isinstance(data["params"], dict):
    data = data["params"]
  if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
    raise ValueError(
      f"params JSON must be an object of stages, each an object of entries, got {_summary(data)}"
    )
  template = params_template(config)
  data = dict(data)
  for stage in template:
    stage_cfg = getattr(config, stage, None)
    if stage not in data and stage_cfg is not None and not stage_cfg.enabled:
      # A stage added after the file was written, disabled in this config: it renders
      # nothing, so any values of the right shape replay the file exactly.
      data[stage] = params_to_dict({stage: sampling.params_defaults(config)[stage]})[stage]
  missing = [
    f"{s}.{n}" for s, e in template.items() for n in e if s not in data or n not in data[s]
  ]
  if missing:
    raise ValueError(f"params JSON lacks {missing}")
  extra = [s for s in data if s not in template]
  extra += [f"{s}.{n}" for s in data if s in template for n in data[s] if n not in template[s]]
  if extra:
    raise ValueError(f"params JSON has entries this config does not know: {extra}")
  host = {}
  for stage, entries in template.items():
    host[stage] = {}
    for name, spec in entries.items():
      arr = _entry_array(data[stage][name], spec.dtype, f"{stage}.{name}")
      if arr.shape[arr.ndim - len(spec.shape) :] != spec.shape or arr.ndim < len(spec.shape):
        raise ValueError(
          f"params JSON {stage}.{name} has shape {arr.shape}, expected "
          f"{spec.shape} (config has {config.num_labels} labels)"
        )
      host[stage][name] = arr
  param_checks.check_values(host, config, template, what="params JSON")
  return jax.tree.map(jnp.asarray, host)


def _summary(data) -> str:
  text = json.dumps(data) if not isinstance(data, (bytes, bytearray)) else repr(data)
  return text if len(text) <= 60 else text[:57] + "..."


def _entry_array(value, dtype, path) -> np.ndarray:
  """`value` as an array of `dtype`: booleans only for flags, integers only for counts."""
  try:
    raw = np.asarray(value)
  except ValueError as e:  # ragged lists
    raise ValueError(f"params JSON {path} is not a regular array ({e})") from None
  # Flags take only booleans; numbers take no booleans, and counts no fractions.
  kinds = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}[np.dtype(dtype).kind]
  # An empty array (a stage with no rows) has no values to check; JSON cannot type it.
  if raw.size and raw.dtype.kind not in kinds:
    want = {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}
    raise ValueError(
      f"params JSON {path} must hold {want[np.dtype(dtype).kind]}, got {_summary(value)}"
    )
  if np.dtype(dtype).kind in "iu" and raw.dtype.kind in "iu":
    info = np.iinfo(dtype)
    if raw.size and (raw.min() < info.min or raw.max() > info.max):
      raise ValueError(
        f"params JSON {path} has values outside {np.dtype(dtype).name}: {_summary(value)}"
      )
  return raw.astype(dtype)


def key_to_json(key: PRNGKey) -> list[int]:
  """The raw uint32 words of a PRNG key (typed or legacy), as a JSON-ready list."""
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.asarray(key, np.uint32).tolist()


def key_from_json(data: npt.ArrayLike) -> PRNGKey:
  """A typed threefry key from `key_to_json`'s output."""
  return jax.random.wrap_key_data(jnp.asarray(np.asarray(data, np.uint32)))
