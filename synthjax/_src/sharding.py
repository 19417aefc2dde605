"""Multi-device generation: a batch of samples sharded over devices with `jax.sharding`.

The batch axis of keys, params and labels is split over a 1-D mesh of devices; each device
renders its share with the same program as a single sample (one `vmap` per device), so
sample `i` is the same image whichever device renders it.
"""

from __future__ import annotations

import functools

import numpy as np
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from synthjax._src import rendering
from synthjax._src import sampling
from synthjax._src.config import SynthConfig


@functools.lru_cache(maxsize=16)
def _sharded_program(config: SynthConfig, devices: tuple):
  mesh = Mesh(np.asarray(devices), ("batch",))
  batch = NamedSharding(mesh, PartitionSpec("batch"))
  fn = jax.vmap(lambda k, p, l: rendering.render(k, p, l, config))
  return jax.jit(fn, in_shardings=batch, out_shardings=batch), batch


def synthesize_sharded(keys, params, labels, config: SynthConfig, *, devices=None):
  """Renders a batch with its batch axis sharded over `devices` (default: all devices).

  Args:
    keys: a batch of B PRNG keys.
    params: batched params (e.g. `sample_params(batch_of_keys, config)`).
    labels: integer label maps `(B, X, Y, Z)`.
    config: the static `SynthConfig`.
    devices: the devices to use; B must be a multiple of their number.

  Returns:
    `(images, segs)` of shape `(B,) + config.shape`, sharded over the devices.

  Examples:
    >>> # XLA_FLAGS=--xla_force_host_platform_device_count=4 gives 4 CPU devices.
    >>> images, segs = synthesize_sharded(keys, params, labels, cfg)  # doctest: +SKIP
  """
  devices = tuple(jax.devices() if devices is None else devices)
  b = int(np.shape(labels)[0]) if np.ndim(labels) == 4 else None
  if b is None:
    raise ValueError(f"labels must be a batch (B, X, Y, Z), got shape {np.shape(labels)}")
  if b % len(devices):
    raise ValueError(f"batch size {b} is not a multiple of the {len(devices)} devices")
  fn, sharding = _sharded_program(config, devices)
  template = sampling.params_template(config)
  params = {s: {n: jax.numpy.asarray(params[s][n], spec.dtype) for n, spec in e.items()}
            for s, e in template.items()}
  keys, params, labels = jax.device_put((keys, params, jax.numpy.asarray(labels)), sharding)
  return fn(keys, params, labels)
