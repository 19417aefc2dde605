"""Analysis by synthesis: fit the generator's appearance params to a real image.

Given a real image and its segmentation (nilearn's MNI152 T1 and its tissue map, coarsened
to `--down` mm), gradient descent (optax's Adam) fits the GMM means and stds, the bias
field's strength and the gamma exponent so that `synthjax.synthesize`, with the identity
spatial transform and a fixed key, renders each tissue with the real image's intensity
distribution. The loss compares each label's mean and standard deviation in the rendered
image with those in the real one (both min-max normalised, as `synthesize` normalises): a
voxel-wise error would drive the noise stds to zero, since the generator's noise is not the
scan's. It needs `jax.grad` through the whole generator, which no PyTorch or TensorFlow
generator offers.

    python examples/fit_appearance.py              # MNI152 at 2 mm, 300 Adam steps
    python examples/fit_appearance.py --down 4 --steps 150

Prints the rendered and real per-tissue means (CSF, grey and white matter: they must agree
within 5 %, else the exit status is 1) and the fitted params. Needs the `train` extra (optax)
and nilearn (the `test` extra). The fit itself is `synthjax.appearance.fit`.
"""

from __future__ import annotations

import argparse
import sys

from synthjax.appearance import coarsen, fit, report, tissue_errors

# Label 0 is everything outside the brain mask (scalp, skull, air): it is fitted too.
NAMES = {0: "outside the brain"}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--down", type=int, default=2, help="voxel size in mm (MNI152 is 1 mm)")
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--lr", type=float, default=0.02)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  if args.down < 1 or args.steps < 1:
    p.error("--down and --steps must be positive integers")
  from synthjax._src import mni152

  t1, labels, _ = mni152.t1_and_tissues()
  image, labels = coarsen(t1, labels, args.down)
  result = fit(image, labels, float(args.down), steps=args.steps, lr=args.lr, seed=args.seed)
  print(report(result, {**NAMES, **mni152.TISSUES}))
  return 0 if tissue_errors(result).max() <= 0.05 else 1


if __name__ == "__main__":
  sys.exit(main())
