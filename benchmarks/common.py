"""Helpers shared by the benchmark scripts: CPU-contention metering, statistics, inputs.

The scripts are run as `python benchmarks/NAME.py`, so this folder is on `sys.path`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

SUBJECTS = ("sub-sta21", "sub-sta30", "sub-sta38")
QUIET_THRESHOLD = 0.25  # cores used by other processes


class CpuMeter:
  """CPU used by *other* processes while a phase runs, from /proc (Linux only).

  `other_cores` is the average number of cores busy outside this process: near 0 on a
  quiet machine; on a 2-core machine a value near 1 means the timings ran on about half
  the machine and are not representative.
  """

  def __init__(self):
    self.ok = os.path.exists("/proc/stat") and os.path.exists("/proc/self/stat")
    self.tick = os.sysconf("SC_CLK_TCK") if self.ok else 100
    self.t0 = None

  def _read(self):
    with open("/proc/stat") as f:
      cpu = [int(v) for v in f.readline().split()[1:]]
    busy = sum(cpu) - cpu[3] - (cpu[4] if len(cpu) > 4 else 0)  # minus idle, iowait
    with open("/proc/self/stat") as f:
      fields = f.read().rsplit(")", 1)[1].split()
    own = int(fields[11]) + int(fields[12])  # utime + stime of all threads
    return time.perf_counter(), busy, own

  def start(self):
    self.t0 = self._read() if self.ok else None
    return self

  def stop(self) -> dict:
    if self.t0 is None:
      return {}
    t1 = self._read()
    wall = t1[0] - self.t0[0]
    busy = (t1[1] - self.t0[1]) / self.tick
    own = (t1[2] - self.t0[2]) / self.tick
    return {
      "wall_s": wall,
      "own_cores": own / wall,
      "other_cores": max(0.0, busy - own) / wall,
      "loadavg": list(os.getloadavg()),
    }


def wait_quiet(
  max_wait: float, threshold: float = QUIET_THRESHOLD, window: float = 2.0, verbose: bool = False
) -> float:
  """Waits (up to `max_wait` s) until other processes use < `threshold` cores; returns the
  seconds waited. Our own process is idle meanwhile, so all measured load is foreign."""
  if max_wait <= 0 or not os.path.exists("/proc/stat"):
    return 0.0
  t0 = time.perf_counter()
  while time.perf_counter() - t0 < max_wait:
    m = CpuMeter().start()
    time.sleep(window)
    if m.stop().get("other_cores", 0.0) < threshold:
      break
  waited = time.perf_counter() - t0
  if verbose and waited > window + 0.5:
    print(f"                (waited {waited:.0f} s for other processes to go quiet)")
  return waited


def summarize(times: list) -> dict:
  """Median, IQR (q75 - q25), quartiles, mean, min, max of a list of seconds."""
  ts = sorted(times)
  if len(ts) >= 2:
    q1, _, q3 = statistics.quantiles(ts, n=4, method="inclusive")
  else:
    q1 = q3 = ts[0]
  return {
    "n": len(ts),
    "median": statistics.median(ts),
    "iqr": q3 - q1,
    "q25": q1,
    "q75": q3,
    "mean": statistics.fmean(ts),
    "min": ts[0],
    "max": ts[-1],
    "all": list(times),
  }


def parse_shape(text: str, min_size: int = 2) -> tuple:
  parts = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
  if len(parts) == 1:
    parts = parts * 3
  if len(parts) != 3 or min(parts) < min_size:
    raise argparse.ArgumentTypeError(
      f"--shape wants N or X,Y,Z (sizes >= {min_size}), got {text!r}"
    )
  return tuple(parts)


def label_paths(data_dir: Path, prog: str) -> list:
  """The three fetal label-map paths; exits with a clear message if any is missing."""
  if not data_dir.is_dir():
    sys.exit(
      f"{prog}: data folder {data_dir} does not exist (expected the fetal label maps: "
      f"../shared/data/fetal relative to the repository root, or --data)"
    )
  paths = [data_dir / s / "anat" / f"{s}_rec-irtk_T2w_dseg.nii.gz" for s in SUBJECTS]
  missing = [str(p) for p in paths if not p.is_file()]
  if missing:
    sys.exit(
      f"{prog}: fetal label maps not found under {data_dir}\n"
      f"  missing: {', '.join(missing)}\n"
      f"  pass --data DIR (the folder holding {'/'.join(SUBJECTS)})"
    )
  return paths


def timed(fn, repeats: int):
  """`(first_call_s, median_s, times)` of `fn()` (a JAX computation, waited for): the first
  call compiles, the median is over `repeats` more."""
  import jax
  import numpy as np

  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return first, float(np.median(times)), times
