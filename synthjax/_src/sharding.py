"""Multi-device generation: a batch of samples sharded over devices with `jax.sharding`.

The batch axis of keys, params and labels is split over a 1-D mesh of devices; each device
renders its share with the same program as a single sample (one `vmap` per device), so
sample `i` is the same image whichever device renders it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import numpy.typing as npt
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from synthjax._src import rendering, sampling
from synthjax._src.config import SynthConfig
from synthjax._src.pytypes import ParamsLike, PRNGKey


@functools.lru_cache(maxsize=16)
def _sharded_program(config: SynthConfig, devices: tuple):
  mesh = Mesh(np.asarray(devices), ("batch",))
  batch = NamedSharding(mesh, PartitionSpec("batch"))
  # Each device maps the single-sample program over its own samples (`shard_map`): the
  # partitioner would gather every sample's inputs onto every device for the loop. The
  # program has no collectives, and its conds join per-device values with constants, which
  # shard_map's check of varying values rejects.
  spec = PartitionSpec("batch")
  fn = jax.shard_map(
    jax.vmap(lambda k, p, l: rendering.render(k, p, l, config)),
    mesh=mesh,
    in_specs=(spec, spec, spec),
    out_specs=spec,
    check_vma=False,
  )
  return jax.jit(fn, in_shardings=batch, out_shardings=batch), batch


def synthesize_sharded(
  keys: PRNGKey,
  params: ParamsLike,
  labels: npt.ArrayLike,
  config: SynthConfig,
  *,
  # `jax.Device`s: jaxlib's compiled extension has no stubs, so type checkers cannot name
  # the class.
  devices: Sequence[Any] | None = None,
) -> tuple[jax.Array, jax.Array]:
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
    >>> import synthjax
    >>> cfg = synthjax.presets.synthseg((0, 1), (16, 16, 16))
    >>> labels = np.zeros((2, 16, 16, 16), np.int32)
    >>> labels[:, 4:12, 4:12, 4:12] = 1
    >>> keys = jax.random.split(jax.random.key(0), 2)
    >>> params = synthjax.sample_params(keys, cfg)
    >>> # over jax.devices(); XLA_FLAGS=--xla_force_host_platform_device_count=2 gives 2 CPUs
    >>> images, segs = synthesize_sharded(keys, params, labels, cfg)
    >>> images.shape, segs.shape
    ((2, 16, 16, 16), (2, 16, 16, 16))
  """
  devices = tuple(jax.devices() if devices is None else devices)
  b = int(np.shape(labels)[0]) if np.ndim(labels) == 4 else None
  if b is None:
    raise ValueError(f"labels must be a batch (B, X, Y, Z), got shape {np.shape(labels)}")
  if b % len(devices):
    raise ValueError(f"batch size {b} is not a multiple of the {len(devices)} devices")
  fn, sharding = _sharded_program(config, devices)
  template = sampling.params_template(config)
  params = {
    s: {n: jax.numpy.asarray(params[s][n], spec.dtype) for n, spec in e.items()}
    for s, e in template.items()
  }
  keys, params, labels = jax.device_put((keys, params, jax.numpy.asarray(labels)), sharding)
  return fn(keys, params, labels)
