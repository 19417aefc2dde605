"""Op-level profile of one compiled `synthesize` program on the CPU, attributed to source.

Runs the program a few times under `jax.profiler.trace` (perfetto JSON), takes the
exclusive time of every XLA instruction (fusions, custom calls, while loops' bodies) and
maps each instruction to the synthjax function that emitted it, using the stack-frame
tables in the optimised HLO text. Prints the top instructions and a per-stage sum.

    XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true \
        python benchmarks/profile_ops.py --shape 160 [--batch 2] [--json out/ops.json]

The XLA flag makes the CPU runtime emit one trace event per executed instruction; without
it the script still runs but only sees whole-program events. Random `applied` switches
are fixed to True (every stage does its work); `--natural` keeps them random.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_generator import (  # noqa: E402
  APPLIED_STAGES,
  DEFAULT_DATA,
  LABELS,
  label_paths,
  load_labels,
  parse_shape,
)

# The synthjax function called directly by `render` names the stage.
STAGE_OF = {
  "coordinate_map": "spatial: coordinate map (affine, crop)",
  "displacement_field": "spatial: deformation field",
  "sample_nearest": "spatial: nearest gather of labels",
  "label_index": "label lookup",
  "render_gmm": "gmm",
  "bias_field": "bias",
  "apply_gamma": "gamma (clip, normalise, pow)",
  "apply_resolution": "resolution",
  "add_noise": "noise",
  "normalize": "final normalise",
}


def parse_hlo(text: str):
  """Returns {instruction: (op_name, [frames outer->inner], called computation)} and the
  {computation: [stack frame chains]} of fused computations."""
  files, funcs, locs, frames = {}, {}, {}, {}
  section = None
  for line in text.splitlines():
    head = line.strip()
    if head in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
      section = head
      continue
    if not head or not head[0].isdigit():
      section = None
      continue
    if section is None:
      continue
    m = re.match(r"(\d+) (.*)", head)
    if not m:
      continue
    i, rest = int(m.group(1)), m.group(2)
    if section == "FileNames":
      files[i] = rest.strip('"')
    elif section == "FunctionNames":
      funcs[i] = rest.strip('"')
    elif section == "FileLocations":
      d = dict(re.findall(r"(\w+)=(\d+)", rest))
      locs[i] = (
        files.get(int(d["file_name_id"]), "?"),
        funcs.get(int(d["function_name_id"]), "?"),
        int(d["line"]),
      )
    elif section == "StackFrames":
      d = dict(re.findall(r"(\w+)=(\d+)", rest))
      # The printed parent id is one more than the parent's id (0 or 1: no parent).
      frames[i] = (int(d["file_location_id"]), int(d.get("parent_frame_id", 0)) - 1)

  def chain(fid):
    out, seen = [], set()
    while fid and fid in frames and fid not in seen:
      seen.add(fid)
      loc, parent = frames[fid]
      out.append(locs.get(loc, ("?", "?", 0)))
      fid = parent
    return out[::-1]  # outermost first

  instrs, comp_frames, comp = {}, collections.defaultdict(list), None
  for line in text.splitlines():
    m = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{$", line)
    if m and not line.startswith(" "):
      comp = m.group(1)
      continue
    m = re.match(
      r"^\s+(?:ROOT )?%([\w.\-]+) = .*?(?:calls=%([\w.\-]+))?.*?"
      r"metadata=\{op_name=\"([^\"]*)\"(?: stack_frame_id=(\d+))?",
      line,
    )
    if not m:
      continue
    name, called, op_name, sf = m.groups()
    called = re.search(r"calls=%([\w.\-]+)", line)
    body = re.search(r"body=%([\w.\-]+)", line)
    fr = chain(int(sf)) if sf else []
    instrs[name] = (op_name, fr, called.group(1) if called else (body.group(1) if body else None))
    if comp:
      comp_frames[comp].append(fr)
  return instrs, comp_frames


def stage_of(fr) -> str:
  """The stage: the synthjax function called from `render` (or its line)."""
  names = [(Path(f).name, fn, ln) for f, fn, ln in fr]
  for i, (_, fn, ln) in enumerate(names):
    if fn == "render":
      inner = [n[1].split(".")[0] for n in names[i + 1 :]]
      known = [c for c in inner if c in STAGE_OF]
      if "displacement_field" in known:  # reached through coordinate_map's cond
        return STAGE_OF["displacement_field"]
      if known:
        return STAGE_OF[known[0]]
      return f"render:{ln}" if not inner else f"{inner[0]} ({names[i + 1][0]})"
  # Frames traced inside a vmapped cond branch may lack the `render` frame.
  known = [n[1].split(".")[0] for n in names if n[1].split(".")[0] in STAGE_OF]
  if "displacement_field" in known:
    return STAGE_OF["displacement_field"]
  if "bias_field" in known:
    return STAGE_OF["bias_field"]
  return STAGE_OF[known[0]] if known else "other"


def where(fr) -> str:
  keep = [
    f"{fn}:{ln}" for f, fn, ln in fr if "synthjax" in f and fn not in ("render", "synthesize")
  ]
  return " > ".join(keep[-3:]) if keep else "-"


def exclusive_times(events):
  """Exclusive duration per event name (children on the same thread subtracted)."""
  by_thread = collections.defaultdict(list)
  for e in events:
    if e.get("ph") == "X" and "dur" in e:
      by_thread[(e.get("pid"), e.get("tid"))].append(e)
  excl = collections.Counter()
  count = collections.Counter()
  for evs in by_thread.values():
    evs.sort(key=lambda e: (e["ts"], -e["dur"]))
    stack = []  # [end, name, child_time]

    def pop(stack=stack):
      end, name, child, dur = stack.pop()
      excl[name] += dur - child
      if stack:
        stack[-1][2] += dur

    for e in evs:
      while stack and stack[-1][0] <= e["ts"]:
        pop()
      stack.append([e["ts"] + e["dur"], e["name"], 0.0, e["dur"]])
      count[e["name"]] += 1
    while stack:
      pop()
  return excl, count


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
  ap.add_argument("--shape", type=parse_shape, default=(160, 160, 160))
  ap.add_argument("--spacing", type=float, default=0.5)
  ap.add_argument("--batch", type=int, default=0, help="vmap batch size (0: no vmap)")
  ap.add_argument("--runs", type=int, default=3, help="traced runs (default 3)")
  ap.add_argument("--top", type=int, default=25)
  ap.add_argument("--natural", action="store_true", help="keep random `applied` switches")
  ap.add_argument("--json", type=Path, default=None)
  args = ap.parse_args(argv)
  if "xla_cpu_enable_xprof_traceme" not in os.environ.get("XLA_FLAGS", ""):
    print(
      "warning: XLA_FLAGS lacks --xla_cpu_enable_xprof_traceme=true; no per-op events",
      file=sys.stderr,
    )

  import jax
  import jax.numpy as jnp

  import synthjax

  data_dir = args.data.resolve()
  label_paths(data_dir, "profile_ops")  # exits with a message if the maps are missing
  cfg = synthjax.presets.synthseg(LABELS, args.shape, spacing=(args.spacing,) * 3)
  raw, paths = load_labels(data_dir, "int32")
  labels = [jnp.asarray(synthjax.validate_labels(a, cfg, name=p)) for a, p in zip(raw, paths)]
  del raw
  fixed = None if args.natural else {s: {"applied": True} for s in APPLIED_STAGES}
  key = jax.random.key(0)
  if args.batch:
    b = args.batch
    fn = jax.jit(jax.vmap(lambda k, p, l: synthjax.synthesize(k, p, l, cfg)))
    keys = jax.random.split(key, b)
    params = synthjax.sample_params(jax.random.split(jax.random.key(1), b), cfg, fixed=fixed)
    lab = jnp.stack([labels[i % len(labels)] for i in range(b)])
  else:
    fn = jax.jit(lambda k, p, l: synthjax.synthesize(k, p, l, cfg))
    keys, lab = key, labels[0]
    params = synthjax.sample_params(jax.random.key(1), cfg, fixed=fixed)
  compiled = fn.lower(keys, params, lab).compile()
  instrs, comp_frames = parse_hlo(compiled.as_text())
  jax.block_until_ready(compiled(keys, params, lab))

  walls = []
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d, create_perfetto_trace=True):
      for _ in range(args.runs):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(keys, params, lab))
        walls.append(time.perf_counter() - t0)
    files = glob.glob(os.path.join(d, "**", "perfetto_trace.json.gz"), recursive=True)
    if not files:
      sys.exit("profile_ops: the profiler wrote no perfetto trace")
    with gzip.open(files[0]) as f:
      trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  excl, count = exclusive_times(events)

  rows = []
  for name, us in excl.items():
    if name not in instrs:
      continue
    op_name, fr, called = instrs[name]
    stages = {stage_of(fr)}
    if called and called in comp_frames:
      stages |= {stage_of(f) for f in comp_frames[called] if f}
    stages.discard("other")
    rows.append(
      {
        "instruction": name,
        "ms_per_run": us / 1e3 / args.runs,
        "calls_per_run": count[name] / args.runs,
        "stage": stage_of(fr),
        "fused_stages": sorted(stages),
        "where": where(fr),
        "op_name": op_name.split("/")[-1],
      }
    )
  rows.sort(key=lambda r: -r["ms_per_run"])
  total = sum(r["ms_per_run"] for r in rows)
  wall = sorted(walls)[len(walls) // 2]
  print(
    f"# shape {args.shape}  batch {args.batch or 'none'}  runs {args.runs}  "
    f"wall median {1e3 * wall:.1f} ms (traced)  sum of op times {total:.1f} ms "
    f"(ops on several threads overlap)"
  )
  print(f"{'ms/run':>9} {'%':>5}  {'instruction':28s} {'stage (root)':34s} where")
  for r in rows[: args.top]:
    extra = [s for s in r["fused_stages"] if s != r["stage"]]
    print(
      f"{r['ms_per_run']:9.1f} {100 * r['ms_per_run'] / total:5.1f}  "
      f"{r['instruction'][:28]:28s} "
      f"{r['stage'][:34]:34s} {r['where']}" + (f"  [+ {', '.join(extra)}]" if extra else "")
    )
  per_stage = collections.Counter()
  for r in rows:
    per_stage[r["stage"]] += r["ms_per_run"]
  print("\nper stage (root of each instruction):")
  for s, ms in per_stage.most_common():
    print(f"{ms:9.1f} ms {100 * ms / total:5.1f} %  {s}")
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
      json.dumps(
        {
          "shape": args.shape,
          "batch": args.batch,
          "wall_s": walls,
          "ops": rows,
          "per_stage_ms": dict(per_stage),
        },
        indent=1,
      )
    )


if __name__ == "__main__":
  main()
