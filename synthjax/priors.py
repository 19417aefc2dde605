"""Intensity priors measured on real scans, for contrast-specific training."""

from synthjax._src.priors import IntensityPriors, apply, estimate, load

__all__ = ["IntensityPriors", "estimate", "apply", "load"]
