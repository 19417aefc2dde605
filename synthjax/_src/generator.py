"""The generator's entry points in one namespace.

The generator is three modules: `sampling` (`sample_params`: every stage's params, from
its own stream), `labelmaps` (the input checks and the label lookup tables) and
`rendering` (`synthesize`: the stages of the registry, by phase). The package's public
functions are imported from here.
"""

from synthjax._src.labelmaps import check_labels, label_index, validate_labels
from synthjax._src.rendering import render, synthesize
from synthjax._src.sampling import (PARAM_STAGES, as_device_params, params_defaults,
                                    params_template, sample_params)

__all__ = ["PARAM_STAGES", "as_device_params", "check_labels", "label_index",
           "params_defaults", "params_template", "render", "sample_params", "synthesize",
           "validate_labels"]
