"""Tissue statistics of synthetic and real images, and the distance between them."""

from synthjax._src.realism import realism_distance, tissue_statistics, touching_pairs, wasserstein1

__all__ = ["tissue_statistics", "touching_pairs", "realism_distance", "wasserstein1"]
