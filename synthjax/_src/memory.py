"""Peak memory of a synthesis program, estimated before anything is compiled.

XLA's buffer assignment for `synthesize` (`compiled.memory_analysis()`: temporaries plus
outputs) grows linearly with the output grid. Measured on the CPU backend (jax 0.10.2,
2026-12-04, 24^3 to 96^3): 40 bytes per output voxel for the `synthseg` preset, 55 for
`fetal`, and 71 with every stage enabled; the label map adds its int32 copy. The model
takes `BYTES_PER_VOXEL = 80` per output voxel, an upper bound over every config, so that a
refusal never needs a compilation: a shape that does not fit aborts inside XLA otherwise.
A multi-contrast config renders its intensity and image stages once per channel and
resamples the labels once: each channel after the first adds at most
`CHANNEL_BYTES_PER_VOXEL = 50` (measured: 44 with every stage enabled, 16 for `synthseg`).
"""

from __future__ import annotations

import math
import os

BYTES_PER_VOXEL = 80
CHANNEL_BYTES_PER_VOXEL = 50
LABEL_BYTES_PER_VOXEL = 4


def estimate_bytes(config, labels_shape=None, *, batch: int = 1) -> int:
  """Upper bound on the device memory `synthesize` needs for `batch` samples.

  Args:
    config: the `SynthConfig`.
    labels_shape: the label maps' shape (default: the output shape).
    batch: samples rendered at once (`vmap`).

  Returns:
    Bytes: `batch * ((80 + 50 * (num_channels - 1)) * prod(config.shape)
    + 4 * prod(labels_shape))`.

  Examples:
    >>> import synthjax
    >>> cfg = synthjax.presets.synthseg((0, 1), (128, 128, 128))
    >>> estimate_bytes(cfg) / 2 ** 20   # MiB
    168.0
  """
  out = math.prod(config.shape)
  lab = math.prod(labels_shape) if labels_shape is not None else out
  per_voxel = BYTES_PER_VOXEL + CHANNEL_BYTES_PER_VOXEL * (config.num_channels - 1)
  return int(batch) * (per_voxel * out + LABEL_BYTES_PER_VOXEL * lab)


def available_bytes() -> int | None:
  """Memory the default device can still take: free GPU/TPU memory where the backend
  reports it, else the host's (`host_available_bytes`)."""
  import jax

  dev = jax.devices()[0]
  if dev.platform != "cpu":
    try:
      stats = dev.memory_stats() or {}
      if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    except Exception:  # backends without memory stats
      pass
  return host_available_bytes()


def host_available_bytes() -> int | None:
  """The host's available memory: `MemAvailable` (Linux), else the free physical pages,
  else None (unknown)."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  if hasattr(os, "sysconf"):
    try:
      return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
      pass
  return None


def _gib(n) -> str:
  return f"{n / 2**30:.1f} GiB"


def check_fits(
  config, labels_shape=None, *, batch: int = 1, extra_bytes: int = 0, available: int | None = None
) -> None:
  """Raises `ValueError` when the estimate (`estimate_bytes` plus `extra_bytes`) exceeds
  the available memory.

  Args:
    config, labels_shape, batch: as for `estimate_bytes`.
    extra_bytes: memory needed besides the program (e.g. host copies awaiting writing).
    available: bytes available (default: `available_bytes()`; unknown skips that check).
  """
  need = estimate_bytes(config, labels_shape, batch=batch) + int(extra_bytes)
  have = available_bytes() if available is None else available
  if have is not None and need > have:
    raise ValueError(
      f"shape {tuple(config.shape)} needs about {_gib(need)} "
      f"({BYTES_PER_VOXEL} bytes per output voxel"
      + (f", {batch} at once" if batch > 1 else "")
      + f"), but {_gib(have)} is available; use a smaller shape"
    )
