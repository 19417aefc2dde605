"""Segment real scans with a trained run: `synthjax segment` as a script.

  python examples/segmentation/predict.py RUN SCANS... -o OUT [--last] [--tta]

is the same as `synthjax segment RUN SCANS... -o OUT` (`synthjax segment --help` lists the
options): `OUT/<name>_seg.nii.gz` holds each scan's labels on its own grid,
`OUT/<name>_conf.nii.gz` their confidence, `OUT/<name>_volumes.json` each label's volume
and `OUT/<name>_qc.png` a picture to check them. Needs the `train` extra.
"""

import sys

from synthjax import cli

if __name__ == "__main__":
  sys.exit(cli.main(["segment", *sys.argv[1:]]))
