"""Real scans and label maps on the training grid, and back (numpy and nibabel only).

Scans are reoriented to RAS, brought to the training spacing and normalised like the
generator's images (`load_scan`, `Scan.to_native` maps a prediction back to the scan's own
grid); label maps are coarsened by a majority vote (`LabelReader`, `downsample_labels`,
`resample_labels`). Bad files raise `ScanError` naming the file.
"""

from synthjax._src.scans import (
  ArraySource,
  LabelReader,
  Scan,
  ScanError,
  block_affine,
  canonical,
  common_shape,
  downsample_image,
  downsample_labels,
  find_pairs,
  from_canonical,
  integer_factors,
  load,
  load_pair,
  load_scan,
  load_test,
  load_truth,
  normalize_intensity,
  pad_to,
  pairs_in,
  parse_pairs,
  resample,
  resample_labels,
  spacing_of,
  spacing_option,
)

__all__ = [
  "ScanError",
  "Scan",
  "LabelReader",
  "ArraySource",
  "load",
  "load_scan",
  "load_truth",
  "load_pair",
  "parse_pairs",
  "find_pairs",
  "pairs_in",
  "spacing_option",
  "spacing_of",
  "integer_factors",
  "canonical",
  "from_canonical",
  "block_affine",
  "downsample_labels",
  "downsample_image",
  "resample",
  "resample_labels",
  "normalize_intensity",
  "load_test",
  "pad_to",
  "common_shape",
]
