"""Ready-made configs mirroring SynthSeg, FetalSynthGen and anatomix."""

from synthjax._src.presets import (
  FETA_LABELS,
  FETA_META_LABELS,
  FREESURFER_LABELS,
  anatomix_views,
  fetal,
  freesurfer_flip_pairs,
  synthseg,
)

__all__ = [
  "synthseg",
  "fetal",
  "anatomix_views",
  "freesurfer_flip_pairs",
  "FETA_LABELS",
  "FETA_META_LABELS",
  "FREESURFER_LABELS",
]
