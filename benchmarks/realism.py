"""Look before you train: synthetic samples of each config next to real scans, tissue by tissue.

For each generator config, renders `-n` samples from the training label maps at the
training grid (exactly as `sim2real.py` trains on them: the same specs, coarsening and
intensity normalisation), loads the real `IMAGE/LABELS` pairs onto the same grid, and writes:

- `STEM_samples.png`: a row of synthetic axial slices per config, and real slices below;
- `STEM_CONFIG.png` per config: per tissue, the synthetic and real distributions of the
  normalised intensity and of the within-tissue spread, and per pair of touching tissues,
  of the contrast (`synthjax.realism`);
- `STEM.json`: those distributions' quantiles, the per-feature distances and the summary
  `distance` and `coverage` per config (`synthjax.realism.realism_distance`); with
  `--rank-against` sim2real JSONs, the Spearman correlation of each with the Dice they
  report (a distance that ranks configs as the Dice does correlates negatively).

Usage (from the repository root)::

    F=../shared/data/fetal
    python benchmarks/realism.py --train $F/sub-sta30/anat/*_dseg.nii.gz \\
        $F/sub-sta38/anat/*_dseg.nii.gz --real-dir ../shared/data/fetal-sb-atlas \\
        --configs synthjax:fetal synthjax:synthseg --down 4 -n 24 \\
        --json benchmarks/results/realism_fetal.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import numpy as np

import sim2real  # noqa: E402

QUANTILES = (5, 25, 50, 75, 95)


def render_samples(gen, maps, seeds, classes, n, seed):
  """`n` synthetic `(image, labels)` pairs, sample `j` from map `j % len(maps)` with the
  key of sample `j` of `seed` (the benchmark's keys)."""
  from synthjax import data as sdata

  table = np.asarray(classes, np.int32)
  out = []
  for j in range(n):
    i = j % len(maps)
    key = sdata.sample_key_data(seed, j)[None]
    extra = None if seeds is None or not gen.uses_seeds else seeds[i][None]
    image, target = gen.render_host(maps[i][None], key, classes, seeds=extra)
    out.append((image[0], table[target[0]]))
  return out


def brain_slice(labels):
  """The axial slice with the most brain voxels."""
  return int(np.argmax((labels > 0).sum(axis=(0, 1))))


def quantiles(values):
  return {str(q): float(v) for q, v in zip(QUANTILES, np.percentile(values, QUANTILES))}


def describe(stats_list, kind):
  pooled = {}
  for s in stats_list:
    for k, v in s[kind].items():
      pooled.setdefault(k, []).append(v)
  return {
    (f"{k[0]}-{k[1]}" if isinstance(k, tuple) else str(k)): quantiles(v)
    for k, v in sorted(pooled.items())
  }


def save_samples_png(path, rows, real, n_cols, shape=None):
  """Axial slices of each row's samples and of the real scans; with `shape`, every slice is
  cropped or padded to it (centred), so that all show the same field of view."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  every = [(name, pairs) for name, pairs in rows] + [("real", real)]
  fig, axes = plt.subplots(
    len(every), n_cols, figsize=(1.8 * n_cols, 1.9 * len(every)), squeeze=False
  )
  for r, (name, pairs) in enumerate(every):
    picks = np.linspace(0, len(pairs) - 1, n_cols).round().astype(int)
    for c, k in enumerate(picks):
      image, labels = pairs[k]
      image = image[:, :, brain_slice(labels)]
      if shape is not None:
        image = sim2real.pad_to(image, tuple(shape[:2]))
      ax = axes[r, c]
      ax.imshow(np.rot90(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
      ax.set_axis_off()
    # A text, not a title: a long config name must not shrink the images (tight_layout).
    axes[r, 0].text(
      0.0, 1.03, name, transform=axes[r, 0].transAxes, fontsize=7, ha="left", va="bottom"
    )
  fig.subplots_adjust(
    left=0.01, right=0.99, bottom=0.01, top=1 - 0.25 / len(every), wspace=0.03, hspace=0.2
  )
  fig.savefig(path, dpi=110)
  plt.close(fig)


def save_distributions_png(path, name, synth, real, values, pairs):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(3, 1, figsize=(max(6.0, 0.5 * len(pairs) + 2), 8.0))
  for ax, kind, keys in (
    (axes[0], "intensity", values),
    (axes[1], "spread", values),
    (axes[2], "contrast", pairs),
  ):
    data, ticks = [], []
    for k in keys:
      for stats in (synth, real):
        v = [s[kind][k] for s in stats if k in s[kind]]
        data.append(v if v else [np.nan])
      ticks.append(f"{k[0]}-{k[1]}" if isinstance(k, tuple) else str(k))
    box = ax.boxplot(
      data,
      positions=np.arange(len(data)) + np.arange(len(data)) // 2 * 0.6,
      widths=0.7,
      patch_artist=True,
      showfliers=False,
    )
    for i, patch in enumerate(box["boxes"]):
      patch.set_facecolor("tab:orange" if i % 2 == 0 else "tab:blue")
    centres = np.arange(0, len(data), 2) + np.arange(len(keys)) * 0.6 + 0.5
    ax.set_xticks(centres, ticks, fontsize=7)
    if kind != "intensity":
      ax.set_yscale("log")
    ax.set_ylabel(
      {
        "intensity": "median (normalised)",
        "spread": "1.4826 MAD",
        "contrast": "CNR of touching tissues",
      }[kind],
      fontsize=8,
    )
  axes[0].set_title(f"{name}: synthetic (orange) against real (blue)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def spearman(x, y) -> float:
  rx = np.argsort(np.argsort(x)).astype(float)
  ry = np.argsort(np.argsort(y)).astype(float)
  return float(np.corrcoef(rx, ry)[0, 1])


def rank_against(scores, files):
  """Spearman's correlation of a score per config with the mean Dice over scans that the
  sim2real JSONs report (averaged over the files that have the config, e.g. two seeds), at
  each evaluation step, over the configs measured in both. Files are named as
  `sim2real_summary.py` takes them (`PATH::TAG` for runs of another commit)."""
  import sim2real_summary

  dice = {}
  for gen, runs in sim2real_summary.collect(files).items():
    for _, r in runs:
      for e in r["mean_curve"]:
        dice.setdefault(e["step"], {}).setdefault(gen, []).append(e["mean_dice"])
  out = {}
  for step, by_gen in sorted(dice.items()):
    common = [g for g in scores if g in by_gen]
    if len(common) >= 3:
      d = [scores[g] for g in common]
      m = [float(np.mean(by_gen[g])) for g in common]
      out[str(step)] = {"configs": common, "score": d, "mean_dice": m, "spearman": spearman(d, m)}
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--train", nargs="+", required=True, help="label maps to render")
  p.add_argument("--real-dir", nargs="*", default=[], metavar="DIR")
  p.add_argument("--real", nargs="*", default=[], metavar="IMAGE:LABELS")
  p.add_argument("--image-suffix", default="_T2w")
  p.add_argument("--label-suffix", default="_dseg")
  p.add_argument(
    "--configs",
    nargs="+",
    required=True,
    help="generator specs as sim2real.py takes them (synthjax:PRESET~STAGE..., config:NAME)",
  )
  p.add_argument("--config", nargs="*", default=[], metavar="NAME=FILE")
  p.add_argument("--seeds", metavar="DIR", help="seed-map folder for 'synthjax:fetal@seeds'")
  p.add_argument(
    "--priors",
    metavar="FILE",
    help="intensity priors for 'synthjax:PRESET@priors' (estimate_priors.py)",
  )
  p.add_argument("--down", type=int, default=4)
  p.add_argument(
    "--shape",
    type=int,
    nargs=3,
    metavar=("X", "Y", "Z"),
    help="crop or pad the coarsened maps to this shape, centred (default: the "
    "smallest multiple of 8 holding every map)",
  )
  p.add_argument("-n", type=int, default=24, help="synthetic samples per config")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--columns", type=int, default=6, help="slices per row of the picture")
  p.add_argument("--rank-against", nargs="*", default=[], metavar="SIM2REAL_JSON")
  p.add_argument(
    "--alias",
    nargs="*",
    default=[],
    metavar="SPEC=NAME",
    help="the generator name a config has in the sim2real JSONs, where it differs",
  )
  p.add_argument("--json", required=True)
  args = p.parse_args(argv)
  from synthjax import realism, scans
  from synthjax._src.train import train as train_script

  train_paths = train_script.expand_paths(args.train)
  real_pairs = scans.parse_pairs(args.real) + scans.pairs_in(
    args.real_dir, image_suffix=args.image_suffix, label_suffix=args.label_suffix
  )
  if not real_pairs:
    raise SystemExit("give real pairs (--real-dir or --real)")
  maps, spacing = sim2real.load_train_maps(train_paths, args.down)
  shape = tuple(args.shape) if args.shape else sim2real.common_shape(maps, 8, 3)
  maps = [sim2real.pad_to(m, shape) for m in maps]
  seeds = None
  if args.seeds:
    seeds = sim2real.load_seed_stacks(train_paths, args.seeds, shape, args.down)
  values = sorted(set().union(*(np.unique(m).tolist() for m in maps)))
  real = [sim2real.load_test(pair, spacing)[1:] for pair in real_pairs]
  # Pairs that touch in at least half of the real label maps.
  seen = {}
  for _, truth in real:
    for pair in realism.touching_pairs(truth, values, min_faces=10):
      seen[pair] = seen.get(pair, 0) + 1
  pairs = tuple(sorted(k for k, c in seen.items() if 2 * c >= len(real)))
  real_stats = [realism.tissue_statistics(im, lab, values, pairs) for im, lab in real]
  configs = dict(c.split("=", 1) for c in args.config)
  priors = sim2real.read_priors(args.priors)
  print(
    f"{len(maps)} maps {shape} at {spacing} mm; {len(real)} real scans; "
    f"{len(pairs)} touching pairs",
    flush=True,
  )

  stem = os.path.splitext(os.path.abspath(args.json))[0]
  os.makedirs(os.path.dirname(stem), exist_ok=True)
  out = {
    "meta": {
      "date": datetime.date.today().isoformat(),
      "commit": subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
      ).stdout.strip(),
      "command": "python benchmarks/realism.py " + " ".join(sys.argv[1:] if argv is None else argv),
      "train_maps": train_paths,
      "real_pairs": real_pairs,
      "shape": list(shape),
      "spacing": list(spacing),
      "labels": values,
      "pairs": [list(q) for q in pairs],
    },
    "real": {k: describe(real_stats, k) for k in ("intensity", "spread", "contrast")},
    "configs": {},
  }
  rows, distances, coverages = [], {}, {}
  for spec in args.configs:
    gen = sim2real.make_generator(spec, values, shape, spacing, configs, priors)
    samples = render_samples(gen, maps, seeds, values, args.n, args.seed)
    synth_stats = [realism.tissue_statistics(im, lab, values, pairs) for im, lab in samples]
    dist = realism.realism_distance(synth_stats, real_stats)
    distances[spec] = dist["distance"]
    out["configs"][spec] = {
      "distance": dist["distance"],
      "coverage": dist["coverage"],
      "per_feature": {
        kind: {
          (f"{k[0]}-{k[1]}" if isinstance(k, tuple) else str(k)): v for k, v in dist[kind].items()
        }
        for kind in ("intensity", "spread", "contrast")
      },
      **{kind: describe(synth_stats, kind) for kind in ("intensity", "spread", "contrast")},
    }
    rows.append((f"{spec}  (distance {dist['distance']:.2f})", samples))
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in spec)
    save_distributions_png(f"{stem}_{safe}.png", spec, synth_stats, real_stats, values, pairs)
    coverages[spec] = dist["coverage"]
    print(
      f"{spec}: distance {dist['distance']:.3f}, coverage {dist['coverage']:.2f} (spread "
      f"{np.mean(list(dist['spread'].values())):.3f}, contrast "
      f"{np.mean(list(dist['contrast'].values())):.3f})",
      flush=True,
    )
  save_samples_png(f"{stem}_samples.png", rows, real, args.columns, shape)
  if args.rank_against:
    alias = dict(a.rsplit("=", 1) for a in args.alias)
    named = lambda scores: {alias.get(k, k): v for k, v in scores.items()}
    out["rank"] = {
      "distance": rank_against(named(distances), args.rank_against),
      "coverage": rank_against(named(coverages), args.rank_against),
    }
    for name, ranks in out["rank"].items():
      for step, r in ranks.items():
        print(
          f"step {step}: Spearman({name}, Dice) = {r['spearman']:.2f} over "
          f"{len(r['configs'])} configs"
        )
  with open(args.json + ".tmp", "w") as f:
    json.dump(out, f, indent=1)
  os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
  main()
