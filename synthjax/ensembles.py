"""Label ensembles (anatomix step 1): synthetic label maps from templates or random shapes."""

from synthjax._src.data.templates import load_templates
from synthjax._src.ensembles import (
  EnsembleConfig,
  ensemble_labels,
  max_label,
  render_ensemble,
  sample_ensemble_params,
)

__all__ = [
  "EnsembleConfig",
  "sample_ensemble_params",
  "render_ensemble",
  "load_templates",
  "ensemble_labels",
  "max_label",
]
