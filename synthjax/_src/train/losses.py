"""The training loss: Dice + cross-entropy on softmax outputs (MONAI's `DiceCELoss`).

FetalSynthSeg trains with MONAI's `DiceCELoss(softmax=True)`; SynthSeg with a soft Dice.
Here, as MONAI's defaults: the background is included, the soft Dice of each class and
sample is `(2 sum(p y) + eps) / (sum(p) + sum(y) + eps)` with `eps = 1e-5`, averaged over
classes and samples, and the loss is `CE + (1 - Dice)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SMOOTH = 1e-5


def dice_ce_loss(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
  """DiceCE of `logits` `(B, *spatial, C)` against class indices `targets` `(B, *spatial)`.

  Returns:
    `(loss, dice)`: the scalar loss and the mean soft Dice (a scalar).
  """
  num_classes = logits.shape[-1]
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  onehot = jax.nn.one_hot(targets, num_classes, dtype=logp.dtype)
  ce = -jnp.mean(jnp.sum(onehot * logp, axis=-1))
  p = jnp.exp(logp)
  axes = tuple(range(1, logits.ndim - 1))
  inter = jnp.sum(p * onehot, axis=axes)
  denom = jnp.sum(p, axis=axes) + jnp.sum(onehot, axis=axes)
  dice = jnp.mean((2.0 * inter + SMOOTH) / (denom + SMOOTH))
  return ce + (1.0 - dice), dice
