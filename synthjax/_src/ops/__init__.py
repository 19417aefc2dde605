"""Numerical kernels the stages share: resampling, lookups, keyed voxel noise, parameter
draws, multi-scale fields, Gaussian filters and morphology."""
