"""Intensity priors of a folder of real image/label pairs (`synthjax.priors.estimate`).

Loads every pair on the training grid (the same orientation and resampling as
`sim2real.py`, the intensities kept), measures each label's mean and std ranges, and
writes them as JSON for `sim2real.py --priors FILE` (generator `synthjax:PRESET@priors`)
or `synthjax.priors.IntensityPriors.from_json`.

Usage (from the repository root): priors from five atlas volumes of different ages::

    python benchmarks/estimate_priors.py --real-dir ../shared/data/fetal-sb-atlas \\
        --match 'ga(21nop|24nop|27op|30op|33op)' --spacing 2 --out priors.json
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--real-dir", nargs="+", required=True, metavar="DIR")
  p.add_argument("--image-suffix", default="_T2w")
  p.add_argument("--label-suffix", default="_dseg")
  p.add_argument("--match", metavar="REGEX", help="keep the pairs whose image path matches")
  p.add_argument("--spacing", type=float, default=2.0, help="the training grid's spacing, mm")
  p.add_argument(
    "--classes",
    nargs="*",
    default=[],
    metavar="A,B,...",
    help="labels pooled into one class, e.g. 1,4 (default: every label alone)",
  )
  p.add_argument("--mean-margin", type=float, default=0.1)
  p.add_argument("--std-factor", type=float, default=1.5)
  p.add_argument("--out", required=True, help="the priors JSON")
  args = p.parse_args(argv)

  import synthjax
  from synthjax import scans

  try:
    pairs = scans.pairs_in(
      args.real_dir,
      image_suffix=args.image_suffix,
      label_suffix=args.label_suffix,
      match=args.match,
    )
  except scans.ScanError as e:
    raise SystemExit(str(e)) from None
  images, labels = [], []
  for image_path, label_path in pairs:
    scan, grid = scans.load_pair(image_path, label_path, (args.spacing,) * 3, normalize=False)
    images.append(scan.image)
    labels.append(grid)
  classes = [tuple(int(v) for v in c.split(",")) for c in args.classes]
  priors = synthjax.priors.estimate(
    images,
    labels,
    spacing=args.spacing,
    classes=classes or None,
    mean_margin=args.mean_margin,
    std_factor=args.std_factor,
    names=[pr[0] for pr in pairs],
  )
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    f.write(priors.to_json() + "\n")
  print(f"{len(pairs)} pair(s): {[os.path.basename(pr[0]) for pr in pairs]}")
  for (v, mlo, mhi), (_, slo, shi) in zip(priors.mean, priors.std):
    print(
      f"label {v}: mean {mlo:6.1f}..{mhi:6.1f}  std {slo:5.1f}..{shi:5.1f} (at {args.spacing:g} mm)"
    )


if __name__ == "__main__":
  main()
