"""Intensity priors measured on real scans, for contrast-specific training."""

from synthjax._src.priors import FETAL_T2W, IntensityPriors, apply, estimate, load

__all__ = ["FETAL_T2W", "IntensityPriors", "estimate", "apply", "load"]
