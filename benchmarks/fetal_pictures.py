"""The `fetal` preset next to real fetal T2w scans at the same voxel size (a PNG).

Top row: samples of the preset rendered from one label map at `--spacing`; bottom row: the
axial middle slice of real scans brought to the same spacing (as the benchmark loads them).

Usage (from the repository root)::

    python benchmarks/fetal_pictures.py --spacing 2 --out docs/fetal_vs_real_2mm.png
    python benchmarks/fetal_pictures.py --spacing 0.5 --out docs/fetal_vs_real_0.5mm.png
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")


def middle_axial(volume, labels=None):
  """The axial slice through the centre of the labelled region (or of the volume)."""
  import numpy as np

  z = volume.shape[2] // 2
  if labels is not None and (labels > 0).any():
    zs = np.nonzero((labels > 0).any(axis=(0, 1)))[0]
    z = int((zs[0] + zs[-1]) // 2)
  return volume[:, :, z]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument(
    "--labels",
    default=os.path.join(
      SHARED, "fetal", "sub-sta30", "anat", "sub-sta30_rec-irtk_T2w_dseg.nii.gz"
    ),
    help="the label map to render",
  )
  p.add_argument("--real-dir", default=os.path.join(SHARED, "fetal-sb-atlas"))
  p.add_argument(
    "--real-match",
    default="ga(21nop|24nop|27op|30op|32op|34op)",
    help="regular expression picking the real scans shown",
  )
  p.add_argument("--spacing", type=float, default=2.0, help="mm")
  p.add_argument("-n", type=int, default=6, help="synthetic samples")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--spec", default="synthjax:fetal", help="the generator, as sim2real.py names it")
  p.add_argument("--priors", metavar="FILE", help="intensity priors for '@priors' specs")
  p.add_argument("--out", required=True, help="the PNG")
  args = p.parse_args(argv)

  import jax
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np

  import sim2real
  from synthjax import scans

  spacing = (args.spacing,) * 3
  labels, _ = scans.LabelReader(spacing=spacing)(args.labels)
  shape = tuple(int(np.ceil(n / 8) * 8) for n in labels.shape)
  labels = sim2real.pad_to(labels, shape)
  values = sorted(np.unique(labels).tolist())
  gen = sim2real.make_generator(
    args.spec, values, shape, spacing, {}, sim2real.read_priors(args.priors)
  )
  import synthjax

  render = jax.jit(
    lambda k, lab: synthjax.synthesize(
      k, synthjax.sample_params(jax.random.fold_in(k, 1), gen.config), lab, gen.config
    )
  )
  synth = []
  for i in range(args.n):
    image, seg = render(jax.random.key(args.seed * 1000 + i), labels)
    synth.append(middle_axial(np.asarray(image), np.asarray(seg)))
  real = []
  for image_path, label_path in scans.pairs_in([args.real_dir], match=args.real_match):
    scan, truth = scans.load_pair(image_path, label_path, spacing)
    name = os.path.basename(image_path).split("_")[0]
    real.append((name, middle_axial(scan.image, truth)))
  cols = max(len(synth), len(real))
  fig, axes = plt.subplots(2, cols, figsize=(2.2 * cols, 4.8), squeeze=False)
  for ax in axes.ravel():
    ax.axis("off")
  for j, s in enumerate(synth):
    axes[0, j].imshow(np.rot90(s), cmap="gray")
    axes[0, j].set_title(f"{args.spec.split(':')[-1]} #{j}", fontsize=8)
  for j, (name, s) in enumerate(real):
    axes[1, j].imshow(np.rot90(s), cmap="gray", vmin=0, vmax=1)
    axes[1, j].set_title(f"real {name}", fontsize=8)
  fig.suptitle(f"{args.spec} at {args.spacing:g} mm (top) and real fetal T2w (bottom)", fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  fig.savefig(args.out, dpi=110)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
