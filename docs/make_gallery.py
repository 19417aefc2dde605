"""Artifact gallery for the README: one stage switched on per panel, everything else equal.

Every panel renders the same fetal label map (sub-sta30, cropped to 160^3 at 0.5 mm) with
the same GMM intensities and no spatial transform, bias, gamma, resolution or noise, so the
only difference between panels is the named stage (applied at a visible strength).

    python docs/make_gallery.py                 # writes docs/gallery_fetal.png

Needs matplotlib and ../shared/data/fetal (falls back to the built-in phantom without it).
"""

from __future__ import annotations

import os
import sys


def main(out="docs/gallery_fetal.png"):
  import jax
  import matplotlib
  import numpy as np

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  import synthjax
  from synthjax import presets
  from synthjax._src import nifti, phantom
  from synthjax.data import load_seed_maps

  root = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "fetal")
  label_path = os.path.join(root, "sub-sta30", "anat", "sub-sta30_rec-irtk_T2w_dseg.nii.gz")
  seeds = None
  if os.path.exists(label_path):
    labels = nifti.load_label_map(label_path)[0]
    values, shape, spacing = tuple(range(8)), (160, 160, 160), (0.5, 0.5, 0.5)
    seeds = load_seed_maps(
      label_path, os.path.join(root, "derivatives", "seeds"), num_subclusters=4
    )
    source = "sub-sta30 (FeTA labels), 160^3 crop at 0.5 mm"
  else:
    labels, _ = phantom.brain_phantom((96, 96, 96), 2.0)
    values, shape, spacing = tuple(int(v) for v in np.unique(labels)), (96, 96, 96), (2.0,) * 3
    source = "built-in phantom"

  optional = (
    "subclusters",
    "texture",
    "struct_noise",
    "blur_cortex",
    "boundary",
    "slice_stack",
    "motion",
    "spike",
    "ghosting",
    "gibbs",
    "rician",
    "image_intensity",
  )
  base = presets.fetal(values, shape, spacing, **{s: {"enabled": False} for s in optional})
  fixed = {
    s: {"applied": False}
    for s in ("affine", "deformation", "flip", "bias", "gamma", "resolution", "noise")
  }
  fixed["crop"] = {"position": [0.5, 0.5, 0.5]}
  panels = [
    ("labels -> GMM (base)", {}, {}),
    (
      "sub-clusters, procedural",
      {"subclusters": {"enabled": True, "prob": 1.0, "num_subclusters": (4, 4)}},
      {},
    ),
  ]
  if seeds is not None:
    panels.append(
      (
        "sub-clusters, seed maps",
        {
          "subclusters": {
            "enabled": True,
            "prob": 1.0,
            "source": "seeds",
            "num_subclusters": (4, 4),
            "related_metas": (1, 2, 3),
          }
        },
        {"seeds": seeds},
      )
    )
  panels += [
    ("texture (anatomix)", {"texture": {"prob": 1.0, "amplitude": (0.3, 0.3)}}, {}),
    ("structural noise", {"struct_noise": {"prob": 1.0, "std": (0.4, 0.4)}}, {}),
    ("cortex blur", {"blur_cortex": {"prob": 1.0, "nblur": (150, 199)}}, {}),
    (
      "boundaries: halo",
      {"boundary": {"prob": 1.0, "prob_no_mask": 0.0, "prob_halo": 1.0, "prob_fuzzy": 0.0}},
      {},
    ),
    (
      "boundaries: fuzzy",
      {"boundary": {"prob": 1.0, "prob_no_mask": 0.0, "prob_halo": 0.0, "prob_fuzzy": 1.0}},
      {},
    ),
    (
      "slice stacks + motion",
      {"slice_stack": {"prob": 1.0, "rotation_std": (0.4, 0.4), "translation_std": (0.4, 0.4)}},
      {},
    ),
    (
      "k-space motion",
      {"motion": {"prob": 1.0, "degrees": (4.0, 6.0), "translation": (3.0, 5.0)}},
      {},
    ),
    ("spike", {"spike": {"prob": 1.0, "intensity": (0.3, 0.3)}}, {}),
    ("ghosting", {"ghosting": {"prob": 1.0, "axes": (1,), "intensity": (0.8, 0.8)}}, {}),
    ("Gibbs ringing", {"gibbs": {"prob": 1.0, "alpha": (0.7, 0.7)}}, {}),
    ("Rician noise", {"rician": {"prob": 1.0, "std": (0.06, 0.06)}}, {}),
    (
      "slice profile: boxcar 4 mm",
      {"resolution": {"slice_profile": "boxcar", "prob": 1.0}},
      {
        "resolution": {"applied": True, "resolution": [0.5, 0.5, 4.0], "thickness": [0.5, 0.5, 4.0]}
      },
    ),
  ]
  key = jax.random.key(3)
  cols = 4
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows))
  for ax in axes.ravel():
    ax.axis("off")
  for ax, (title, over, extra) in zip(axes.ravel(), panels):
    cfg = base.replace(**over)
    fx = dict(fixed)
    stage_fixed = {k: v for k, v in extra.items() if k != "seeds"}
    for stage in over:
      fx[stage] = {"applied": True}
    for stage, vals in stage_fixed.items():
      fx[stage] = vals
    params = synthjax.sample_params(key, cfg, fixed=fx)
    kwargs = {"seeds": extra["seeds"]} if "seeds" in extra else {}
    image, _ = synthjax.synthesize(jax.random.key(4), params, labels, cfg, **kwargs)
    image = np.asarray(image)
    ax.imshow(np.rot90(image[:, :, image.shape[2] // 2]), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=10)
    print(title, flush=True)
  fig.suptitle(f"synthjax stages, one per panel ({source})", fontsize=11)
  fig.tight_layout()
  fig.savefig(out, dpi=80)
  print(f"wrote {out}")


if __name__ == "__main__":
  main(*sys.argv[1:])
