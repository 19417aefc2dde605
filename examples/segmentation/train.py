"""Train a U-Net to segment real scans from synthetic images: `synthjax train` as a script.

  python examples/segmentation/train.py LABELS... -o RUN [options]

is the same as `synthjax train LABELS... -o RUN [options]` (`synthjax train --help` lists
the options; the recipe is `synthjax.train`). Needs the `train` extra:
`pip install -e ".[train]"`. Segment scans with the run: `predict.py` here, or
`synthjax segment RUN SCANS... -o OUT`.
"""

import sys

from synthjax import cli

if __name__ == "__main__":
  sys.exit(cli.main(["train", *sys.argv[1:]]))
