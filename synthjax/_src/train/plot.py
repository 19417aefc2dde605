"""The training curves of a run as a PNG: loss per step and validation Dice."""

from __future__ import annotations

import json
import os
from typing import Any


def read_metrics(path: str) -> list[dict[str, Any]]:
  """The records of a `metrics.jsonl` (a torn last line, from a killed run, is skipped).

  Each is a JSON object (a step's `loss` and `dice`, or a validation's scores): its values
  are whatever JSON holds.
  """
  records: list[dict[str, Any]] = []
  if not os.path.exists(path):
    return records
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return records


def plot_curves(metrics_path: str, png_path: str, *, title: str = "") -> None:
  """Writes the loss curve (raw and smoothed) and the validation Dice curves to `png_path`."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  records = read_metrics(metrics_path)
  train = [r for r in records if "loss" in r]
  val = [r for r in records if "mean_dice" in r]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  if train:
    steps = np.array([r["step"] for r in train])
    loss = np.array([r["loss"] for r in train])
    axes[0].plot(steps, loss, color="0.75", lw=0.8, label="loss")
    k = max(1, len(loss) // 50)
    if len(loss) > k:
      smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
      axes[0].plot(steps[k - 1 :], smooth, color="C0", label=f"mean of {k}")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("DiceCE loss")
    axes[0].legend(frameon=False)
  if val:
    steps = [r["step"] for r in val]
    axes[1].plot(steps, [r["mean_dice"] for r in val], "o-", color="k", label="mean")
    labels = sorted({k for r in val for k in r["dice"]}, key=lambda s: int(s))
    for i, lab in enumerate(labels):
      axes[1].plot(
        steps,
        [r["dice"].get(lab, float("nan")) for r in val],
        lw=0.8,
        color=f"C{i % 10}",
        label=f"label {lab}",
      )
    axes[1].set_ylim(0, 1)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("validation Dice")
    axes[1].legend(frameon=False, fontsize=7, ncol=2)
  else:
    axes[1].text(
      0.5, 0.5, "no validation scans", ha="center", va="center", transform=axes[1].transAxes
    )
    axes[1].set_axis_off()
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  # A temporary file in the same folder, then a rename: a reader (or a kill) mid-write never
  # sees a torn PNG, since the curves are redrawn while the run goes on.
  tmp = f"{png_path}.tmp-{os.getpid()}.png"
  try:
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, png_path)
  finally:
    plt.close(fig)
    if os.path.exists(tmp):
      os.remove(tmp)
