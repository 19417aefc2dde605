"""Benchmark of the synthjax generator (SynthSeg preset) on the fetal label maps.

Measures, for `synthjax.presets.synthseg(range(8), shape, spacing=(0.5,) * 3)`:

* compile time: wall time of the first `sample_params` and `synthesize` calls (trace,
  lower, compile and run), and for `synthesize` the split `lower()` / `compile()` time;
* time per sample after compilation, one sample per call (median, IQR), fresh keys,
  params and label maps (cycling over the three subjects) every repeat;
* batched time per sample for `jax.jit(jax.vmap(synthesize))` at several batch sizes;
* whether calling again with new keys / params / labels recompiles (`_cache_size()`);
* an optional per-stage profile: every stage forced on (`fixed={... "applied": True}`),
  then each stage switched off in the config (`cfg.replace(stage={"enabled": False})`),
  with XLA's cost analysis (flops, bytes) of each compiled program;
* the peak RSS of the process.

The fetal maps are 256^3 at 0.5 mm; with a smaller output shape the generator crops them
at a random position, with a larger one it pads.

Usage (from the repository root)::

    python benchmarks/bench_generator.py                       # 160^3, batches 1, 2, 4
    python benchmarks/bench_generator.py --shape 96 --json out/bench_96.json
    python benchmarks/bench_generator.py --shape 256 --batch-sizes "" --no-profile

Only timings on the same machine are comparable. Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

from common import CpuMeter, label_paths, parse_shape, summarize, wait_quiet

DEFAULT_DATA = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "fetal"
LABELS = tuple(range(8))
# Stages whose application is random; the profile forces all of them on.
APPLIED_STAGES = ("affine", "deformation", "flip", "bias", "gamma", "resolution")
# Stages that can be switched off in the config (gmm is always rendered).
ABLATE_STAGES = ("affine", "deformation", "flip", "bias", "gamma", "resolution")


# ---------------------------------------------------------------------------------------
# Helpers


def parse_batches(text: str) -> tuple[int, ...]:
  try:
    out = tuple(int(p) for p in text.split(",") if p.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(f"--batch-sizes wants e.g. 1,2,4, got {text!r}") from None
  if any(b < 1 for b in out):
    raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
  return out


def peak_rss_mib() -> float:
  """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux)."""
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def measured(run, quiet: float, retries: int, threshold: float = 0.25):
  """Runs a timed phase `run()`; if other processes used >= `threshold` cores meanwhile,
  waits for quiet and runs it again (at most `retries` more times). Returns
  `(run's result, cpu of the kept attempt, other_cores of every attempt)`."""
  history = []
  for attempt in range(retries + 1):
    wait_quiet(quiet, threshold, verbose=True)
    meter = CpuMeter().start()
    out = run()
    cpu = meter.stop()
    history.append(cpu.get("other_cores"))
    if not cpu or cpu["other_cores"] < threshold:
      break
    if attempt < retries:
      print(
        f"                (other processes used {cpu['other_cores']:.2f} cores; "
        f"repeating the phase)"
      )
  return out, cpu, history


def print_cpu(cpu: dict):
  if cpu:
    warn = "  WARNING: other processes competed for the CPU" if cpu["other_cores"] > 0.25 else ""
    print(
      f"                cpu: this process {cpu['own_cores']:.2f} cores, other processes "
      f"{cpu['other_cores']:.2f} cores{warn}"
    )


def fmt_ms(s: float) -> str:
  return f"{1e3 * s:9.1f} ms"


def cost(compiled) -> dict:
  """Flops and bytes accessed from XLA's cost analysis (None where unavailable)."""
  try:
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
      ca = ca[0] if ca else {}
    return {
      "gflops": ca.get("flops", float("nan")) / 1e9,
      "gbytes_accessed": ca.get("bytes accessed", float("nan")) / 1e9,
    }
  except Exception as e:  # pragma: no cover - backend dependent
    return {"gflops": None, "gbytes_accessed": None, "error": repr(e)}


def source_digest(pkg_dir: Path) -> str:
  """SHA-256 over the package's .py files (the library may change between runs)."""
  import hashlib

  h = hashlib.sha256()
  for f in sorted(pkg_dir.rglob("*.py")):
    h.update(str(f.relative_to(pkg_dir)).encode())
    h.update(f.read_bytes())
  return h.hexdigest()[:16]


def load_labels(data_dir: Path, dtype) -> tuple[list, list]:
  import nibabel as nib
  import numpy as np

  paths = label_paths(data_dir, "bench_generator")
  out = []
  for p in paths:
    arr = np.asarray(nib.load(str(p)).dataobj)
    out.append(arr)
  return out, [str(p) for p in paths]


# ---------------------------------------------------------------------------------------
# Benchmark


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(
    description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  ap.add_argument(
    "--data",
    type=Path,
    default=DEFAULT_DATA,
    help="folder with sub-sta{21,30,38}/anat/*_dseg.nii.gz "
    "(default: ../shared/data/fetal relative to the repository root)",
  )
  ap.add_argument(
    "--shape",
    type=parse_shape,
    default=(160, 160, 160),
    help="output shape, N or X,Y,Z (default 160)",
  )
  ap.add_argument("--spacing", type=float, default=0.5, help="voxel spacing in mm (default 0.5)")
  ap.add_argument(
    "--repeats",
    type=int,
    default=20,
    help="timed repeats for the single-sample measurement (default 20)",
  )
  ap.add_argument(
    "--batch-repeats",
    type=int,
    default=None,
    help="timed repeats per batch size (default: max(3, repeats // 2))",
  )
  ap.add_argument(
    "--batch-sizes",
    type=parse_batches,
    default=(1, 2, 4),
    help="comma-separated vmap batch sizes, '' to skip (default 1,2,4)",
  )
  ap.add_argument(
    "--profile-repeats",
    type=int,
    default=None,
    help="timed repeats per profile config (default: max(3, repeats // 2))",
  )
  ap.add_argument("--no-profile", action="store_true", help="skip the per-stage profile")
  ap.add_argument(
    "--label-dtype",
    choices=("int32", "uint8"),
    default="int32",
    help="dtype the label maps are passed in (default int32, as validate_labels)",
  )
  ap.add_argument(
    "--wait-quiet",
    type=float,
    default=0.0,
    metavar="S",
    help="before each timed phase wait up to S seconds until other processes "
    "use < 0.25 cores (default 0: do not wait)",
  )
  ap.add_argument(
    "--retries",
    type=int,
    default=0,
    metavar="K",
    help="repeat a timed phase (up to K times) when other processes used "
    ">= 0.25 cores during it (default 0)",
  )
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--json", type=Path, default=None, metavar="OUT", help="write results here")
  args = ap.parse_args(argv)
  if args.repeats < 1:
    ap.error("--repeats must be >= 1")
  batch_repeats = args.batch_repeats or max(3, args.repeats // 2)
  profile_repeats = args.profile_repeats or max(3, args.repeats // 2)

  data_dir = args.data.resolve()
  label_paths(data_dir, "bench_generator")  # fail fast, before importing JAX

  t_import = time.perf_counter()
  import jax
  import jax.numpy as jnp
  import jaxlib
  import numpy as np

  import synthjax

  t_import = time.perf_counter() - t_import

  results: dict = {
    "date": datetime.datetime.now().isoformat(timespec="seconds"),
    "argv": sys.argv if argv is None else ["bench_generator.py", *argv],
    "versions": {
      "python": platform.python_version(),
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "numpy": np.__version__,
      "synthjax": getattr(synthjax, "__version__", "?"),
    },
    "machine": {
      "platform": platform.platform(),
      "cpu_count": os.cpu_count(),
      "devices": [str(d) for d in jax.devices()],
    },
    "shape": list(args.shape),
    "spacing": args.spacing,
    "label_dtype": args.label_dtype,
    "repeats": args.repeats,
    "batch_repeats": batch_repeats,
    "profile_repeats": profile_repeats,
    "import_s": t_import,
    "synthjax_source_sha256": source_digest(Path(synthjax.__file__).parent),
  }
  run_meter = CpuMeter().start()
  print(
    f"# synthjax {results['versions']['synthjax']}  jax {jax.__version__}  "
    f"devices {results['machine']['devices']}"
  )

  # --- data --------------------------------------------------------------------------
  cfg = synthjax.presets.synthseg(LABELS, args.shape, spacing=(args.spacing,) * 3)
  t0 = time.perf_counter()
  raw, paths = load_labels(data_dir, args.label_dtype)
  host_labels = [
    synthjax.validate_labels(a, cfg, name=p).astype(args.label_dtype) for a, p in zip(raw, paths)
  ]
  del raw
  labels = [jax.device_put(a) for a in host_labels]
  jax.block_until_ready(labels)
  results["load_s"] = time.perf_counter() - t0
  results["input_shape"] = list(host_labels[0].shape)
  print(
    f"# labels: {len(labels)} maps {host_labels[0].shape} {args.label_dtype} "
    f"-> output {args.shape} at {args.spacing} mm (load {results['load_s']:.1f} s)"
  )
  results["rss_after_load_mib"] = peak_rss_mib()

  def cache_size() -> int:
    """Entries in synthesize's jit cache (-1 if the library does not expose it)."""
    fn = getattr(getattr(synthjax._src.rendering, "_synthesize_jit", None), "_cache_size", None)
    return fn() if callable(fn) else -1

  root = jax.random.key(args.seed)
  pkey_root, skey_root = jax.random.split(root)
  counter = iter(range(10**9))

  def fresh_keys():
    i = next(counter)
    return jax.random.fold_in(pkey_root, i), jax.random.fold_in(skey_root, i)

  # --- compile: cold first calls and AOT lower/compile -------------------------------
  # Every attempt starts from cleared caches, so it can be repeated when other processes
  # competed for the CPU (then the first attempt also paid one-off Python warm-up costs).
  def compile_phase():
    jax.clear_caches()
    res = {}
    pk, sk = fresh_keys()
    t0 = time.perf_counter()
    params = jax.block_until_ready(synthjax.sample_params(pk, cfg))
    sp_first = time.perf_counter() - t0
    sp_times = []
    for _ in range(max(5, args.repeats)):
      t0 = time.perf_counter()
      jax.block_until_ready(synthjax.sample_params(fresh_keys()[0], cfg))
      sp_times.append(time.perf_counter() - t0)
    res["sample_params"] = {"first_call_s": sp_first, "per_call": summarize(sp_times)}

    size0 = cache_size()
    t0 = time.perf_counter()
    out = synthjax.synthesize(sk, params, labels[0], cfg)
    t_dispatch = time.perf_counter() - t0
    jax.block_until_ready(out)
    first = time.perf_counter() - t0
    image, seg = out
    res["synthesize_first_call"] = {
      "wall_s": first,
      "until_dispatch_s": t_dispatch,
      "cache_size_before": size0,
      "cache_size_after": cache_size(),
      "output": {
        "image": [list(image.shape), str(image.dtype)],
        "seg": [list(seg.shape), str(seg.dtype)],
        "image_min": float(image.min()),
        "image_max": float(image.max()),
      },
    }

    # A fresh jit around the public function (works whether `synthesize` is itself a jit
    # object or a Python wrapper around one); nested jits are inlined, so this compiles
    # the same program. Caches are cleared first so nothing is reused.
    jax.clear_caches()
    aot = jax.jit(lambda k, p, l: synthjax.synthesize(k, p, l, cfg))
    t0 = time.perf_counter()
    lowered = aot.lower(sk, params, labels[0])
    t_lower = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = lowered.compile()
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(sk, params, labels[0]))
    res["synthesize_aot"] = {
      "lower_s": t_lower,
      "compile_s": t_compile,
      "first_run_s": time.perf_counter() - t0,
      **cost(compiled),
    }
    return res, params, pk, sk

  (res, params, pk, sk), cpu, hist = measured(compile_phase, args.wait_quiet, args.retries)
  results.update(res)
  results["cpu_compile_phase"] = cpu
  results["cpu_compile_attempts_other_cores"] = hist
  sp, fc, aot = res["sample_params"], res["synthesize_first_call"], res["synthesize_aot"]
  print(
    f"sample_params   first call {sp['first_call_s']:7.2f} s   then median "
    f"{fmt_ms(sp['per_call']['median'])}"
  )
  print(
    f"synthesize      first call {fc['wall_s']:7.2f} s   (returned after "
    f"{fc['until_dispatch_s']:.2f} s; cache {fc['cache_size_before']} -> "
    f"{fc['cache_size_after']})"
  )
  print(
    f"synthesize AOT  lower {aot['lower_s']:5.2f} s  compile {aot['compile_s']:5.2f} s  "
    f"first run {aot['first_run_s']:5.2f} s  ({aot['gflops']:.2f} GFLOP)"
  )
  print_cpu(cpu)
  # After clear_caches the jit path and sample_params compile again (from the AOT caches
  # for synthesize); warm both before the timed loops.
  jax.block_until_ready(synthjax.synthesize(sk, params, labels[0], cfg))
  jax.block_until_ready(synthjax.sample_params(pk, cfg))

  # --- single sample, steady state ----------------------------------------------------
  def single_phase():
    size_before = cache_size()
    times, cpu_times, applied = [], [], []
    for i in range(args.repeats):
      pk, sk = fresh_keys()
      p = jax.block_until_ready(synthjax.sample_params(pk, cfg))
      lab = labels[i % len(labels)]
      c0, t0 = time.process_time(), time.perf_counter()
      jax.block_until_ready(synthjax.synthesize(sk, p, lab, cfg))
      times.append(time.perf_counter() - t0)
      cpu_times.append(time.process_time() - c0)
      applied.append({s: bool(p[s]["applied"]) for s in APPLIED_STAGES})
    return times, cpu_times, applied, size_before, cache_size()

  (times, cpu_times, applied, size_before, size_after), cpu, hist = measured(
    single_phase, args.wait_quiet, args.retries
  )
  single = summarize(times)
  single["process_cpu_s"] = summarize(cpu_times)
  single["cpu_attempts_other_cores"] = hist
  single["applied"] = applied
  res_on = [t for t, a in zip(times, applied) if a["resolution"]]
  res_off = [t for t, a in zip(times, applied) if not a["resolution"]]
  single["median_resolution_applied"] = statistics.median(res_on) if res_on else None
  single["median_resolution_skipped"] = statistics.median(res_off) if res_off else None
  single["cpu"] = cpu
  results["single"] = single
  results["rss_after_single_mib"] = peak_rss_mib()
  print(
    f"single sample   median {fmt_ms(single['median'])}  IQR {fmt_ms(single['iqr'])}  "
    f"(n={args.repeats}, min {fmt_ms(single['min'])}, max {fmt_ms(single['max'])}; "
    f"process CPU time median {fmt_ms(single['process_cpu_s']['median'])})"
  )
  print_cpu(single["cpu"])
  if res_on and res_off:
    print(
      f"                median with resolution applied {fmt_ms(statistics.median(res_on))}"
      f" (n={len(res_on)}), skipped {fmt_ms(statistics.median(res_off))} (n={len(res_off)})"
    )

  # --- recompilation checks -----------------------------------------------------------
  checks = {"timed_loop_new_keys_params_labels": [size_before, size_after]}
  pk, sk = fresh_keys()
  p = synthjax.sample_params(pk, cfg)
  s0 = cache_size()
  jax.block_until_ready(synthjax.synthesize(sk, p, labels[1], cfg))
  checks["new_key_params_labels"] = [s0, cache_size()]
  s0 = cache_size()
  jax.block_until_ready(synthjax.synthesize(sk, p, host_labels[2], cfg))
  checks["numpy_labels"] = [s0, cache_size()]
  s0 = cache_size()
  q = synthjax.params_from_json(synthjax.params_to_json(p), cfg)
  jax.block_until_ready(synthjax.synthesize(sk, q, labels[0], cfg))
  checks["params_json_round_trip"] = [s0, cache_size()]
  s0 = cache_size()
  fixed = {"affine": {"rotation": [0.0, 0.0, 10.0]}, "flip": {"applied": False}}
  q = synthjax.sample_params(pk, cfg, fixed=fixed)
  jax.block_until_ready(synthjax.synthesize(sk, q, labels[0], cfg))
  checks["params_with_fixed"] = [s0, cache_size()]
  s0 = cache_size()
  same_cfg = synthjax.presets.synthseg(LABELS, args.shape, spacing=(args.spacing,) * 3)
  jax.block_until_ready(synthjax.synthesize(sk, p, labels[0], same_cfg))
  checks["equal_config_rebuilt"] = [s0, cache_size()]
  results["recompilation"] = {
    name: {"cache_before": a, "cache_after": b, "recompiled": b != a}
    for name, (a, b) in checks.items()
  }
  bad = [n for n, v in results["recompilation"].items() if v["recompiled"]]
  print(
    "recompilation   "
    + ("none: " if not bad else f"RECOMPILED in {bad}: ")
    + ", ".join(f"{n} {a}->{b}" for n, (a, b) in checks.items())
  )

  # --- batched ------------------------------------------------------------------------
  results["batched"] = {}
  for b in args.batch_sizes:
    fn = jax.jit(jax.vmap(lambda k, p, l: synthjax.synthesize(k, p, l, cfg)))
    batch_labels = jnp.stack([labels[i % len(labels)] for i in range(b)])

    def batch_inputs(b=b):
      i = next(counter)
      pks = jax.random.split(jax.random.fold_in(pkey_root, i), b)
      sks = jax.random.split(jax.random.fold_in(skey_root, i), b)
      return sks, jax.block_until_ready(synthjax.sample_params(pks, cfg))

    sks, ps = batch_inputs()
    t0 = time.perf_counter()
    jax.block_until_ready(fn(sks, ps, batch_labels))
    b_first = time.perf_counter() - t0
    cache0 = fn._cache_size()

    def batch_phase(fn=fn, batch_labels=batch_labels):
      bt, ct = [], []
      for r in range(batch_repeats):
        sks, ps = batch_inputs()
        # New label contents every other repeat: roll the subjects.
        lab = batch_labels if r % 2 == 0 else jnp.roll(batch_labels, 1, axis=0)
        lab = jax.block_until_ready(lab)
        c0, t0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn(sks, ps, lab))
        bt.append(time.perf_counter() - t0)
        ct.append(time.process_time() - c0)
      return bt, ct

    (bt, ct), cpu, hist = measured(batch_phase, args.wait_quiet, args.retries)
    s = summarize(bt)
    s["process_cpu_s"] = summarize(ct)
    s["cpu"] = cpu
    s["cpu_attempts_other_cores"] = hist
    per = {k: s[k] / b for k in ("median", "iqr", "q25", "q75", "mean", "min", "max")}
    results["batched"][str(b)] = {
      "first_call_s": b_first,
      "per_batch": s,
      "per_sample": per,
      "cache_size": [cache0, fn._cache_size()],
      "rss_after_mib": peak_rss_mib(),
    }
    print(
      f"vmap batch {b:2d}   first call {b_first:6.2f} s   per sample median "
      f"{fmt_ms(per['median'])}  IQR {fmt_ms(per['iqr'])}  (per batch "
      f"{fmt_ms(s['median'])}; process CPU per sample "
      f"{fmt_ms(s['process_cpu_s']['median'] / b)}; cache {cache0}->{fn._cache_size()})"
    )
    print_cpu(s["cpu"])
    # The defaults of batch_phase hold the batch too: drop them all before the next size.
    del fn, batch_labels, batch_phase

  # --- per-stage profile --------------------------------------------------------------
  if not args.no_profile:
    results["profile"] = profile(
      cfg, labels, profile_repeats, pkey_root, skey_root, counter, args.wait_quiet, args.retries
    )

  results["peak_rss_mib"] = peak_rss_mib()
  results["cpu_whole_run"] = run_meter.stop()
  print_cpu(results["cpu_whole_run"])
  print(f"peak RSS        {results['peak_rss_mib']:.0f} MiB")

  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"# wrote {args.json}")
  return results


def profile(cfg, labels, repeats, pkey_root, skey_root, counter, quiet=0.0, retries=0) -> dict:
  """Times the full program with every stage applied, then with each stage disabled.

  Every random `applied` switch is fixed to True so that each config does all its work;
  `delta` is the time the disabled stage accounted for. `only_gmm` keeps just the
  spatial resampling (coordinate map, nearest gather, label lookup), the per-label
  Gaussians and the final normalisation.
  """
  import jax

  import synthjax

  def forced_for(c):
    # Only enabled stages can be forced on (fixing a disabled stage's `applied` is an error).
    return {s: {"applied": True} for s in APPLIED_STAGES if getattr(c, s).enabled}

  configs = {"all_applied": cfg}
  for s in ABLATE_STAGES:
    configs[f"no_{s}"] = cfg.replace(**{s: {"enabled": False}})
  configs["only_gmm"] = cfg.replace(**{s: {"enabled": False} for s in ABLATE_STAGES})

  out = {}
  print(f"profile (all stages applied; {repeats} repeats each; delta = all_applied - config)")
  for name, c in configs.items():
    i = next(counter)
    pk = jax.random.fold_in(pkey_root, i)
    sk = jax.random.fold_in(skey_root, i)
    p = synthjax.sample_params(pk, c, fixed=forced_for(c))
    compiled = (
      jax.jit(lambda k, p, l, c=c: synthjax.synthesize(k, p, l, c))
      .lower(sk, p, labels[0])
      .compile()
    )
    jax.block_until_ready(compiled(sk, p, labels[0]))

    def phase(c=c, compiled=compiled):
      ts, cs = [], []
      for r in range(repeats):
        i = next(counter)
        p = jax.block_until_ready(
          synthjax.sample_params(jax.random.fold_in(pkey_root, i), c, fixed=forced_for(c))
        )
        sk = jax.random.fold_in(skey_root, i)
        c0, t0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(compiled(sk, p, labels[r % len(labels)]))
        ts.append(time.perf_counter() - t0)
        cs.append(time.process_time() - c0)
      return ts, cs

    (ts, cs), cpu, hist = measured(phase, quiet, retries)
    out[name] = {
      "time": summarize(ts),
      "process_cpu_s": summarize(cs),
      **cost(compiled),
      "cpu": cpu,
      "cpu_attempts_other_cores": hist,
    }
  base = out["all_applied"]["time"]["median"]
  base_cpu = out["all_applied"]["process_cpu_s"]["median"]
  for name, v in out.items():
    v["delta_s"] = base - v["time"]["median"]
    v["delta_process_cpu_s"] = base_cpu - v["process_cpu_s"]["median"]
    print(
      f"  {name:14s} median {fmt_ms(v['time']['median'])}  IQR {fmt_ms(v['time']['iqr'])}"
      f"  delta {fmt_ms(v['delta_s'])}  CPU {fmt_ms(v['process_cpu_s']['median'])}"
      f" (delta {fmt_ms(v['delta_process_cpu_s'])})  {v['gflops']:.2f} GFLOP  "
      f"{v['gbytes_accessed']:.2f} GB accessed"
      + (f"  [other procs {v['cpu']['other_cores']:.2f} cores]" if v.get("cpu") else "")
    )
  return out


if __name__ == "__main__":
  main()
