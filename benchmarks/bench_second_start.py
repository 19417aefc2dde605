"""First and second starts of the commands, with the persistent compilation cache.

Each command runs twice in a new process against one empty cache folder
(`XDG_CACHE_HOME`): the first run compiles and fills the cache, the second reads it. Also run
with `--no-cache` as the baseline. The outputs of the runs must be the same bytes.

    python benchmarks/bench_second_start.py \
        --labels ../shared/data/fetal/sub-*/anat/*_dseg.nii.gz \
        --scan ../shared/data/fetal-sb-atlas/sub-ga28op/anat/sub-ga28op_T2w.nii.gz

Prints a Markdown table (wall seconds per run) and whether the outputs matched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time


def _digest(folder: pathlib.Path, suffixes: tuple[str, ...]) -> dict[str, str]:
  """SHA-256 of each output file with one of `suffixes` in `folder` (a segment volumes JSON
  without the output path it names)."""
  digests = {}
  for p in sorted(folder.iterdir()):
    if p.name.endswith(suffixes):
      data = p.read_bytes()
      if p.name.endswith("_volumes.json"):
        record = json.loads(data)
        record.pop("segmentation")
        data = json.dumps(record, sort_keys=True).encode()
      digests[p.name] = hashlib.sha256(data).hexdigest()
  return digests


def _run(args: list[str], cache: str, no_cache: bool) -> float:
  env = {**os.environ, "XDG_CACHE_HOME": cache, "JAX_PLATFORMS": "cpu"}
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  command = [sys.executable, "-m", "synthjax.cli", *args] + (["--no-cache"] if no_cache else [])
  start = time.perf_counter()
  done = subprocess.run(command, env=env, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if done.returncode:
    raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
  return seconds


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--labels", nargs="+", required=True, help="label maps to train on")
  p.add_argument("--scan", required=True, help="a real scan to segment")
  p.add_argument("--steps", type=int, default=20)
  args = p.parse_args()
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    cache = str(root / "cache")
    commands = {
      "generate --demo -n 4": lambda out: ["generate", "--demo", "-n", "4", "-o", out, "--quiet"],
      f"train, 2-D, {args.steps} steps": lambda out: [
        "train",
        *args.labels,
        "-o",
        out,
        "--preset",
        "fetal",
        "--down",
        "4",
        "--dim",
        "2",
        "--steps",
        str(args.steps),
        "--quiet",
        "--ckpt-every",
        str(args.steps),
      ],  # fmt: skip
      "segment, one scan": lambda out: [
        "segment",
        str(root / "train-cache-0"),
        args.scan,
        "-o",
        out,
        "--quiet",
      ],
    }
    suffixes = {
      "generate": (".nii.gz", ".json"),
      "train": ("metrics.jsonl",),
      "segment": ("_seg.nii.gz", "_conf.nii.gz", "_volumes.json"),
    }
    for name, make in commands.items():
      kind = name.split()[0].rstrip(",")
      times, digests = {}, []
      for label, no_cache in (("cache-0", False), ("cache-1", False), ("no-cache", True)):
        out = root / f"{kind}-{label}"
        times[label] = _run(make(str(out)), cache, no_cache)
        digests.append(_digest(out, suffixes[kind]))
      if kind == "train":  # the step timings differ: compare the losses
        losses = [
          [json.loads(line).get("loss") for line in (root / f"train-{label}" / "metrics.jsonl")
           .read_text().splitlines()]
          for label in times
        ]  # fmt: skip
        same = losses[0] == losses[1] == losses[2]
      else:
        same = digests[0] == digests[1] == digests[2]
      rows.append((name, times, same))
  print("| command | first (cache filled) | second (cache read) | --no-cache | same output |")
  print("|---|---|---|---|---|")
  for name, t, same in rows:
    print(
      f"| `{name}` | {t['cache-0']:.1f} s | {t['cache-1']:.1f} s | {t['no-cache']:.1f} s | "
      f"{'yes' if same else 'NO'} |"
    )
  return 0 if all(same for *_, same in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
