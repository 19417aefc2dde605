"""Orbax checkpoints of a run: the latest training state and the best weights.

`RUN/checkpoints/<step>/` holds the weights, the optimizer state, the step and the Grain
iterator state of every process (Grain's Orbax handler), written every `K` steps; the
two latest are kept. `RUN/best/<step>/` holds the weights with the best validation Dice.
Orbax writes each checkpoint under a temporary name and renames it when complete, so a
run killed while saving resumes from the previous one.
"""

from __future__ import annotations

import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


def _options(**kw):
  return ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False, **kw)


class Checkpoints:
  """The two Orbax managers of a run folder."""

  def __init__(self, run_dir: str, *, keep: int = 2, real: bool = False) -> None:
    root = os.path.abspath(run_dir)
    self.real = real
    self.latest: ocp.CheckpointManager = ocp.CheckpointManager(
      os.path.join(root, "checkpoints"),
      options=_options(max_to_keep=keep),
      item_names=("state", "data", "real") if real else ("state", "data"),
    )
    self.best: ocp.CheckpointManager = ocp.CheckpointManager(
      os.path.join(root, "best"),
      options=_options(max_to_keep=1, best_fn=lambda m: m["dice"], best_mode="max"),
      item_names=("params",),
    )

  def save(
    self, step: int, params: Any, opt_state: Any, iterator: Any, real_iterator: Any = None
  ) -> None:
    """Saves the training state after `step` steps, with the iterators' positions."""
    state = {"params": params, "opt_state": opt_state}
    items = dict(state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator))
    if self.real:
      items["real"] = grain.checkpoint.CheckpointSave(real_iterator)
    self.latest.save(step, args=ocp.args.Composite(**items))

  def save_best(self, step: int, params: Any, dice: float) -> None:
    """Keeps these weights if `dice` beats the best so far."""
    self.best.save(
      step,
      args=ocp.args.Composite(params=ocp.args.StandardSave(params)),
      metrics={"dice": float(dice)},
    )

  def latest_step(self) -> int | None:
    """The step of the latest training state saved, or None before the first one."""
    return self.latest.latest_step()

  def restore(
    self,
    params: Any,
    opt_state: Any,
    iterator: Any,
    real_iterator: Any = None,
    step: int | None = None,
  ) -> tuple[int, Any, Any]:
    """Restores `(step, params, opt_state)` and moves the iterators to the saved positions.

    `params` and `opt_state` give the structure, shapes and shardings to restore into.
    """
    step = self.latest.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError("the run has no checkpoint yet")
    abstract = jax.tree.map(
      ocp.utils.to_shape_dtype_struct, {"params": params, "opt_state": opt_state}
    )
    items = dict(
      state=ocp.args.StandardRestore(abstract), data=grain.checkpoint.CheckpointRestore(iterator)
    )
    if self.real:
      items["real"] = grain.checkpoint.CheckpointRestore(real_iterator)
    out = self.latest.restore(step, args=ocp.args.Composite(**items))
    return step, out["state"]["params"], out["state"]["opt_state"]

  def restore_params(self, params: Any, opt_state: Any, *, best: bool = True) -> tuple[int, Any]:
    """`(step, params)` of the best checkpoint (or the latest, if none or `best=False`).

    `params` and `opt_state` give the structure and shapes (a fresh model and optimizer).
    """
    step = self.best.best_step() if best else None
    if step is not None:
      abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, params)
      out = self.best.restore(
        step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract))
      )
      return step, out["params"]
    step = self.latest.latest_step()
    if step is None:
      raise FileNotFoundError("the run has no checkpoint yet")
    abstract = jax.tree.map(
      ocp.utils.to_shape_dtype_struct, {"params": params, "opt_state": opt_state}
    )
    out = self.latest.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
    )
    return step, out["state"]["params"]

  def close(self) -> None:
    """Closes both managers (waiting for any save in progress)."""
    self.latest.close()
    self.best.close()
