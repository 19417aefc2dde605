"""Sample bookkeeping shared by the CLI and the data side: keys, affines, sidecars."""

from __future__ import annotations

import jax
import numpy as np

from synthjax._src import serialize
from synthjax._src.config import SynthConfig
from synthjax._src.stages import geometry

SIDECAR_FORMAT = "synthjax-sample/1"
VIEWS_SIDECAR_FORMAT = "synthjax-views/1"
ENSEMBLE_SIDECAR_FORMAT = "synthjax-ensemble/1"


def sample_keys(seed: int, index: int):
  """`(params_key, synth_key)` of sample `index` of a run with `seed`.

  Derived from `(seed, index)` alone, so a sample does not depend on which other samples
  were generated, in which order, or by how many workers.
  """
  seed = int(seed)
  if not 0 <= seed < (1 << 32):
    # JAX keeps only the low 32 bits of a seed (without x64): 2**32 would alias seed 0.
    raise ValueError(f"seed must be in [0, 2**32), got {seed}")
  key = jax.random.fold_in(jax.random.key(seed), int(index))
  params_key, synth_key = jax.random.split(key)
  return params_key, synth_key


def content_digest(array) -> str:
  """SHA-256 of an integer volume as the generator sees it (int32, C order, with its
  shape): equal for equal maps however they are compressed or stored on disk."""
  import hashlib

  a = np.ascontiguousarray(array, np.int32)
  h = hashlib.sha256(f"int32{a.shape}".encode())
  h.update(a.tobytes())
  return h.hexdigest()


def output_affine(input_affine, input_shape, output_shape, crop_position) -> np.ndarray:
  """World affine of the output grid: the input's, shifted to the crop window.

  The spatial transform acts about the window's centre, so a sample rendered with identity
  spatial params coincides voxel for voxel with the input over that window.
  """
  offset = geometry.crop_offset(
    tuple(input_shape), tuple(output_shape), np.asarray(crop_position, np.float32)
  )
  shift = np.eye(4)
  shift[:3, 3] = np.asarray(offset, np.float64)
  return np.asarray(input_affine, np.float64) @ shift


def _sidecar(
  fmt, *, seed, index, synth_key, params_key, version, config_dict, params_dict, **inputs
) -> dict:
  return {
    "format": fmt,
    "synthjax_version": version,
    "seed": int(seed),
    "index": int(index),
    "key": serialize.key_to_json(synth_key),
    "params_key": serialize.key_to_json(params_key),
    **inputs,
    "config": config_dict,
    "params": params_dict,
  }


def make_sidecar(
  *,
  seed,
  index,
  synth_key,
  params_key,
  params,
  config: SynthConfig,
  source: dict,
  version: str,
  shared_spatial=None,
) -> dict:
  """The params JSON of one sample (`SIDECAR_FORMAT`), or of a view pair when
  `shared_spatial` is given (`VIEWS_SIDECAR_FORMAT`): everything replay needs."""
  fmt = SIDECAR_FORMAT if shared_spatial is None else VIEWS_SIDECAR_FORMAT
  side = _sidecar(
    fmt,
    seed=seed,
    index=index,
    synth_key=synth_key,
    params_key=params_key,
    version=version,
    config_dict=config.to_dict(),
    params_dict=serialize.params_to_dict(params),
    source=source,
  )
  if shared_spatial is not None:
    side["shared_spatial"] = bool(shared_spatial)
  return side


def make_ensemble_sidecar(
  *, seed, index, synth_key, params_key, params, config, templates, version: str
) -> dict:
  """The params JSON of one label ensemble (`ENSEMBLE_SIDECAR_FORMAT`)."""
  return _sidecar(
    ENSEMBLE_SIDECAR_FORMAT,
    seed=seed,
    index=index,
    synth_key=synth_key,
    params_key=params_key,
    version=version,
    config_dict=config.to_dict(),
    params_dict=serialize.params_to_dict({"ensemble": params})["ensemble"],
    templates=templates,
  )
