"""Synthesis of pipeline batches: on the device (in the training step) or on the host.

Both derive a sample's keys the same way as `synthjax generate`:
`params_key, synth_key = jax.random.split(fold_in(key(seed), index))`, so sample `index`
of a pipeline with `seed` is the same image as sample `index` of `synthjax generate --seed`
on the same patch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grain
import numpy as np

if TYPE_CHECKING:
  import jax

  from synthjax._src.config import SynthConfig
  from synthjax._src.pytypes import FixedParams, Params


def synthesize_batch(
  batch: dict[str, Any],
  config: SynthConfig,
  *,
  fixed: FixedParams | None = None,
  strength: float | jax.Array | Callable[[Any], Any] | None = None,
  step: int | jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, Params]:
  """Renders a pipeline batch on the device; call it inside the jitted training step.

  Args:
    batch: a pipeline batch (`labels` (B, X, Y, Z) with `X, Y, Z == config.shape`, `key`;
      `seeds` (B, K, X, Y, Z) for seed subclusters, `image` for `image_intensity`).
    config: the static `SynthConfig`.
    fixed: optional fixed params (shared by the batch), as for `sample_params`.
    strength: optional augmentation strength in [0, 1] (see `sample_params`): a number or
      traced scalar, one per sample `(B,)`, or a schedule, a function of `step` such as
      `optax.linear_schedule(0.2, 1.0, 5000)`, for a curriculum that never recompiles.
    step: the training step a `strength` schedule is evaluated at (traced is fine).

  Returns:
    `(images, segs, params)`: (B, X, Y, Z) float32, (B, X, Y, Z) int32 and the batched
    params (record them to replay any sample). Each sample renders through the
    single-sample program (`synthesize` under `vmap`), so a stage that is not applied costs
    nothing and a sample replays bit for bit.
  """
  import jax

  from synthjax._src import rendering, sampling

  keys = jax.random.wrap_key_data(batch["key"])
  pair = jax.vmap(jax.random.split)(keys)
  if callable(strength):
    if step is None:
      raise ValueError("a strength schedule needs the step: synthesize_batch(..., step=step)")
    amount = strength(step)
  else:
    amount = strength
  params = sampling.sample_params(pair[:, 0], config, fixed=fixed, strength=amount)
  extra = {}
  if config.subclusters.enabled and config.subclusters.source == "seeds":
    extra["seeds"] = batch["seeds"]
  if config.image_intensity.enabled:
    extra["image"] = batch["image"]
  render = lambda k, p, l, e: rendering.synthesize(k, p, l, config, **e)
  images, segs = jax.vmap(render)(pair[:, 1], params, batch["labels"], extra)
  return images, segs, params


@dataclasses.dataclass
class SynthesizeTransform(grain.transforms.Map):
  """Host-side synthesis of one pipeline sample, for CPU-only users and dataset writing.

  Runs JAX on the CPU inside the Grain worker (the pipeline's workers hide accelerators).
  Adds `image`, `seg` and `params` (a dict of numpy arrays) to the sample.

  Attributes:
    config: the `SynthConfig`; its shape must equal the patch size.
  """

  config: SynthConfig
  # Bytes it adds per voxel (`image` float32 and `seg` int32), for `batch_nbytes`.
  bytes_per_voxel = 8

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    """The element with `image`, `seg` and `params` of its sample added."""
    import jax

    from synthjax._src import rendering, sampling

    # The single calls' own compiled programs, not one jit around both: XLA fuses a program
    # as a whole, so sampling inside a larger program can round a draw in its last bit. These
    # are the programs that a device batch maps over its samples, and that replay runs.
    params_key, synth_key = jax.random.split(jax.random.wrap_key_data(element["key"]))
    params = sampling.sample_params(params_key, self.config)
    image, seg = rendering.synthesize(synth_key, params, element["labels"], self.config)
    out = dict(element)
    out["image"], out["seg"] = np.asarray(image), np.asarray(seg)
    out["params"] = jax.tree.map(np.asarray, params)
    return out
