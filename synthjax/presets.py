"""Ready-made configs mirroring SynthSeg and FetalSynthGen."""

from synthjax._src.presets import fetal, freesurfer_flip_pairs, synthseg

__all__ = ["synthseg", "fetal", "freesurfer_flip_pairs"]
