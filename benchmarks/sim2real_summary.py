"""One Markdown table from several sim2real JSONs (seeds, ablation runs), with deltas.

For each generator (over all files that ran it, e.g. two seeds), the mean Dice over the test
scans at each evaluation step, per seed and averaged; per label at the last step; and the
mean over the scans of each `--group NAME=REGEX` (scan names matching REGEX). With `--base`,
every row also gives its difference to that generator at each step, over the seeds both
ran.

Usage (from the repository root)::

    python benchmarks/sim2real_summary.py runs/*.json --base synthjax:fetal \\
        --group "21-25 wk=ga2[1-5]" --group "26-34 wk=ga(2[6-9]|3)"
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np


def collect(paths, alias=None):
  """`{generator: [(seed, result), ...]}` over the files, in the order first seen. A path
  given as `PATH::TAG` names its generators `GENERATOR [TAG]` (runs of another commit);
  `alias` maps a generator name to the one it is reported under (the same config spelt
  otherwise in another run)."""
  alias = alias or {}
  out = {}
  for path in paths:
    path, _, tag = path.partition("::")
    with open(path) as f:
      data = json.load(f)
    seed = data["meta"]["args"]["seed"]
    for gen, r in data["results"].items():
      if "mean_curve" in r:
        gen = alias.get(gen, gen)
        out.setdefault(f"{gen} [{tag}]" if tag else gen, []).append((seed, r))
  return out


def group_mean(result, pattern, step):
  vals = [
    e["mean_dice"]
    for name, curve in result["curves"].items()
    if re.search(pattern, name)
    for e in curve
    if e["step"] == step
  ]
  return float(np.mean(vals)) if vals else float("nan")


def table(runs, base=None, groups=()):
  steps = sorted({e["step"] for rs in runs.values() for _, r in rs for e in r["mean_curve"]})
  labels = sorted(
    {k for rs in runs.values() for _, r in rs for k in r["mean_curve"][-1]["per_label"]}, key=int
  )
  last = steps[-1]

  def at(r, step):
    for e in r["mean_curve"]:
      if e["step"] == step:
        return e
    return None

  def mean_at(gen, step, seeds):
    v = [at(r, step)["mean_dice"] for s, r in runs[gen] if at(r, step) and s in seeds]
    return float(np.mean(v)) if v else float("nan")

  head = (
    ["generator", "seeds"]
    + [f"step {s}" for s in steps]
    + ([f"Δ {s}" for s in steps] if base else [])
    + [f"Dice {l} ({last})" for l in labels]
    + [f"{g} ({last})" for g, _ in groups]
  )
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for gen, rs in runs.items():
    seeds = ",".join(str(s) for s, _ in rs)
    cells = [f"`{gen}`", seeds]
    for s in steps:
      per = [at(r, s)["mean_dice"] for _, r in rs if at(r, s)]
      cells.append(
        f"**{np.mean(per):.3f}**"
        + (f" ({' / '.join(f'{v:.3f}' for v in per)})" if len(per) > 1 else "")
        if per
        else "—"
      )
    if base:  # over the seeds both ran
      both = {s for s, _ in rs} & {s for s, _ in runs.get(base, [])}
      cells += [
        f"{mean_at(gen, s, both) - mean_at(base, s, both):+.3f}" if both else "—" for s in steps
      ]
    ends = [at(r, last) for _, r in rs if at(r, last)]
    cells += [f"{np.mean([e['per_label'][l] for e in ends]):.2f}" if ends else "—" for l in labels]
    cells += [f"{np.mean([group_mean(r, pat, last) for _, r in rs]):.3f}" for _, pat in groups]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("json", nargs="+")
  p.add_argument("--base", help="generator the deltas are taken against")
  p.add_argument("--group", action="append", default=[], metavar="NAME=REGEX")
  p.add_argument(
    "--alias", action="append", default=[], metavar="NAME=>AS", help="report generator NAME as AS"
  )
  args = p.parse_args(argv)
  groups = [tuple(g.split("=", 1)) for g in args.group]
  alias = dict(a.split("=>", 1) for a in args.alias)
  print(table(collect(args.json, alias), args.base, groups))


if __name__ == "__main__":
  main()
