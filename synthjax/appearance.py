"""Analysis by synthesis: fit the generator's appearance params to a real image."""

from synthjax._src.appearance import (
  Fit,
  coarsen,
  config_for,
  fit,
  label_stats,
  normalise,
  report,
  tissue_errors,
)

__all__ = [
  "Fit",
  "fit",
  "config_for",
  "label_stats",
  "tissue_errors",
  "report",
  "normalise",
  "coarsen",
]
