"""Throughput versus volume size and batch size, from `bench_generator.py` JSON files.

    python benchmarks/plot_scale.py benchmarks/results/scale_*.json \\
        --png benchmarks/results/scale.png

Prints a Markdown table (samples/s and ms per sample for each size and batch size, with the
peak RSS) and writes a log-log plot of samples/s against voxels per sample, one line per
batch size. Needs matplotlib for the plot.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(paths):
  rows = []
  for p in paths:
    d = json.loads(Path(p).read_text())
    shape = tuple(d["shape"])
    per_batch = {int(b): r["per_sample"]["median"] for b, r in d.get("batched", {}).items()}
    if not per_batch:
      per_batch = {1: d["single"]["median"]}
    rows.append(
      {
        "shape": shape,
        "voxels": shape[0] * shape[1] * shape[2],
        "single": d["single"]["median"],
        "batched": per_batch,
        "first_call": d["synthesize_first_call"]["wall_s"],
        "peak_rss_gib": d["peak_rss_mib"] / 1024,
        "device": d["machine"]["devices"],
      }
    )
  return sorted(rows, key=lambda r: r["voxels"])


def table(rows) -> str:
  batches = sorted({b for r in rows for b in r["batched"]})
  head = (
    "| output | one call: ms/sample (samples/s) | "
    + " | ".join(f"vmap batch {b}: ms/sample" for b in batches)
    + " | first call s | peak RSS GiB |"
  )
  lines = [head, "|" + "---|" * (5 + len(batches) - 1)]
  for r in rows:
    n = "x".join(str(s) for s in r["shape"]) if len(set(r["shape"])) > 1 else f"{r['shape'][0]}³"
    cells = [f"{1e3 * r['batched'][b]:.0f}" if b in r["batched"] else "—" for b in batches]
    lines.append(
      f"| {n} | {1e3 * r['single']:.0f} ({1 / r['single']:.1f}) | "
      + " | ".join(cells)
      + f" | {r['first_call']:.1f} | {r['peak_rss_gib']:.2f} |"
    )
  return "\n".join(lines)


def plot(rows, png):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6, 4))
  x = [r["voxels"] for r in rows]
  ax.plot(x, [1 / r["single"] for r in rows], "o-", label="one sample per call")
  for b in sorted({b for r in rows for b in r["batched"]} - {1}):
    pts = [(r["voxels"], 1 / r["batched"][b]) for r in rows if b in r["batched"]]
    ax.plot(*zip(*pts), "s--", label=f"jit(vmap), batch {b}")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_xticks(x)
  ax.set_xticklabels([f"{r['shape'][0]}³" for r in rows])
  ax.minorticks_off()
  ax.set_xlabel("output size")
  ax.set_ylabel("samples / s")
  ax.set_title("synthjax synthseg preset, fetal maps, 2-core CPU")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(png, dpi=100)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("files", nargs="+")
  ap.add_argument("--png", default=None)
  args = ap.parse_args(argv)
  rows = load(args.files)
  print(table(rows))
  if args.png:
    plot(rows, args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
  main()
