"""Side-by-side CPU benchmark: synthjax against peer label-to-image generators.

Every contender turns one fetal label map (FeTA labels 0..7, 0.5 mm) into a synthetic MRI
with the SynthSeg recipe: affine + elastic deformation of the labels, one Gaussian per
label, bias field, gamma, resolution simulation (blur + down/upsampling) and noise. The
contenders are

* ``synthjax``: ``synthjax.presets.synthseg(range(8), shape, (0.5,) * 3,
  noise={"prob": 1.0, "std": (0.02, 0.06)})``; per sample ``sample_params`` then
  ``synthesize`` (jitted; the first call, which compiles, is reported separately);
* ``cornucopia``: ``cc.SynthFromLabelTransform`` configured as close to SynthSeg as
  cornucopia allows (SVF integrated in 7 squarings, linear splines, no GMM texture
  smoothing, Gaussian noise at full resolution, min-max output scaling);
* ``cornucopia-default``: ``cc.SynthFromLabelTransform()`` with its own defaults, for
  reference (cubic splines, no SVF integration, GMM texture smoothing, chi noise with a
  g-factor map, quantile scaling);
* ``torchio``: ``tio.Compose`` of RandomFlip, RandomAffineElasticDeformation (one
  SimpleITK resampling of the label map), RandomLabelsToImage, RandomBiasField,
  Clamp + RescaleIntensity, RandomGamma, RandomBlur + RandomAnisotropy, RandomNoise,
  RescaleIntensity.

FetalSynthGen is not benchmarked: it is not on PyPI (see ``benchmarks/results/peers.md``).

Each contender runs in its own subprocess (so that its peak RSS, ``VmHWM``, is its own and
the libraries do not share thread pools). Per contender: one first call (for synthjax:
trace + compile + run), one more warm-up call, then ``--repeats`` timed samples, each with
fresh random parameters and the next of the three subjects. At output shapes below 256^3
synthjax crops the 256^3 map itself (a random crop position is one of its parameters); the
peers get a random crop of the map, cut before the timed call.

CPU contention: the CPU used by *other* processes is measured during each phase (from
/proc/stat minus this process's own CPU time). Before each phase the worker waits up to
``--wait-quiet`` seconds for other processes to use < 0.25 cores, and a timed phase that was
disturbed (>= 0.25 other cores) is run again up to ``--retries`` times; the other-core usage
of every attempt is recorded.

Usage (from the repository root)::

    python benchmarks/bench_peers.py --shape 160 --repeats 8 \
        --json benchmarks/results/peers_160.json
    python benchmarks/bench_peers.py --shape 256 --repeats 5 \
        --json benchmarks/results/peers_256.json
    python benchmarks/bench_peers.py --shape 96 --repeats 3 --only synthjax,torchio
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import QUIET_THRESHOLD, CpuMeter, label_paths, parse_shape, summarize, wait_quiet

DEFAULT_DATA = Path("../shared/data/fetal")  # relative to the repository root
LABELS = tuple(range(8))
SPACING = 0.5
CONTENDERS = ("synthjax", "cornucopia", "torchio", "cornucopia-default")


def rss_mib(field: str = "VmRSS") -> float:
  """`VmRSS` (current) or `VmHWM` (peak) of this process in MiB, from /proc/self/status."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  import resource

  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Recorder:
  """Runs one contender's first call, warm-up and timed phase; keeps what it measured.

  `prepare(i)` builds the inputs of sample `i` (not timed); `run(inputs)` produces one
  sample and must return only when the result is computed.
  """

  def __init__(self, repeats: int, wait: float, retries: int):
    self.repeats, self.wait, self.retries = repeats, wait, retries
    self.info: dict = {}

  def measure(self, prepare, run, warmup: int = 1) -> list:
    self.info["rss_before_first_call_mib"] = rss_mib()
    waited = wait_quiet(self.wait)
    inp = prepare(0)
    meter = CpuMeter().start()
    c0, t0 = time.process_time(), time.perf_counter()
    run(inp)
    self.info["first_call_s"] = time.perf_counter() - t0
    self.info["first_call_cpu_s"] = time.process_time() - c0
    self.info["first_call_phase"] = {**meter.stop(), "waited_s": waited}
    for w in range(warmup):
      run(prepare(1 + w))
    start = 1 + warmup

    attempts = []
    for attempt in range(self.retries + 1):
      waited = wait_quiet(self.wait)
      times, cpu_times = [], []
      meter = CpuMeter().start()
      for i in range(self.repeats):
        inp = prepare(start + i)
        c0, t0 = time.process_time(), time.perf_counter()
        run(inp)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
      phase = {**meter.stop(), "waited_s": waited, "times": times, "cpu_times": cpu_times}
      attempts.append(phase)
      start += self.repeats
      other = phase.get("other_cores", 0.0)
      print(
        f"    [{attempt}] median {statistics.median(times):7.3f} s/sample   "
        f"other processes {other:.2f} cores (waited {waited:.0f} s)",
        flush=True,
      )
      if other < QUIET_THRESHOLD:
        break
    kept = attempts[-1]
    self.info["timed_phase"] = {k: v for k, v in kept.items() if k not in ("times",)}
    self.info["attempts_other_cores"] = [a.get("other_cores") for a in attempts]
    self.info["disturbed"] = kept.get("other_cores", 0.0) >= QUIET_THRESHOLD
    if len(attempts) > 1:
      self.info["discarded_attempts"] = [
        {"other_cores": a.get("other_cores"), "times": a["times"]} for a in attempts[:-1]
      ]
    self.info["cpu_times"] = kept["cpu_times"]
    return kept["times"]


# ---------------------------------------------------------------------------------------
# Inputs


def load_maps(data_dir: Path) -> list:
  """The three 256^3 maps as uint8 numpy arrays (each contender converts per sample)."""
  import nibabel as nib
  import numpy as np

  out = []
  for p in label_paths(data_dir, "bench_peers"):
    a = np.asarray(nib.load(str(p)).dataobj)
    r = np.rint(a)
    if not np.array_equal(r, a) or r.min() < 0 or r.max() > 255:
      sys.exit(f"bench_peers: {p} does not hold integer labels in 0..255")
    out.append(r.astype(np.uint8))
  return out


def cropper(maps, shape, seed):
  """`crop(i)`: a random `shape` window of map `i % 3` (the whole map if it fits exactly)."""
  import numpy as np

  rng = np.random.default_rng(seed)

  def crop(i):
    m = maps[i % len(maps)]
    if tuple(m.shape) == tuple(shape):
      return m
    if any(s > n for s, n in zip(shape, m.shape)):
      raise ValueError(f"output shape {shape} is larger than the label map {m.shape}")
    o = [int(rng.integers(0, n - s + 1)) for s, n in zip(shape, m.shape)]
    return m[o[0] : o[0] + shape[0], o[1] : o[1] + shape[1], o[2] : o[2] + shape[2]]

  return crop


# ---------------------------------------------------------------------------------------
# Contenders: each returns the per-sample times (seconds) of its timed phase


def bench_synthjax(maps, shape, rec: Recorder, seed: int = 0) -> list:
  import jax
  import jax.numpy as jnp
  import numpy as np

  import synthjax

  cfg = synthjax.presets.synthseg(
    LABELS, shape, (SPACING,) * 3, noise={"prob": 1.0, "std": (0.02, 0.06)}
  )
  rec.info["library"] = {"jax": jax.__version__, "synthjax": synthjax.__version__}
  root = jax.random.key(seed)

  def prepare(i):
    k1, k2 = jax.random.split(jax.random.fold_in(root, i))
    labels = jnp.asarray(maps[i % len(maps)].astype(np.int32))  # full 256^3: synthjax crops
    return k1, k2, labels.block_until_ready()

  def run(inp):
    k1, k2, labels = inp
    p = synthjax.sample_params(k1, cfg)
    image, seg = synthjax.synthesize(k2, p, labels, cfg)
    image.block_until_ready()
    seg.block_until_ready()

  return rec.measure(prepare, run)


def _cornucopia_transform(shape, defaults: bool):
  import cornucopia as cc
  from cornucopia.random import LogNormal, RandInt, Uniform

  if defaults:
    return cc.SynthFromLabelTransform()
  n = min(shape)
  synth = cc.SynthFromLabelTransform(
    # spatial: affine (rotation ±15°, zoom ±0.2, shear ±0.012, no translation) and a
    # stationary velocity field on <= 0.04 * shape nodes, integrated in 7 squarings
    # (cornucopia integrates at full resolution), linear splines as SynthSeg
    order=1,
    translations=False,
    rotation=15,
    shears=0.012,
    zooms=0.2,
    elastic=0.05,
    elastic_nodes=max(3, round(0.04 * n)),
    elastic_steps=7,
    bound="zeros",
    gmm_fwhm=False,  # SynthSeg has no within-label texture smoothing
    sample_in_background=True,  # SynthSeg draws a Gaussian for the background too
  )
  # Intensity chain in SynthSeg's order, from cornucopia's own transforms. The stock
  # IntensityTransform adds a motion blur, puts chi noise (with a g-factor map) into the
  # low-resolution space, uses the same resolution range for slices and iso, and ends with
  # a quantile scaling; here: bias (p 0.95) -> min-max -> gamma -> resolution (p 0.95:
  # thick slices up to 16 voxels = 8 mm with p 0.9, isotropic up to 8 voxels = 4 mm with
  # p 0.1, Gaussian slice profile) -> Gaussian noise (std 0.02-0.06) -> min-max.
  bias = cc.RandomMulFieldTransform(
    RandInt(2, max(3, round(0.025 * n))), vmax=Uniform(0, 0.5), symmetric=1, order=1
  )
  res = cc.SwitchTransform(
    [cc.RandomLowResSliceTransform(Uniform(1, 16)), cc.RandomLowResTransform(Uniform(1, 8))],
    prob=[0.9, 0.1],
  )
  synth.intensity = cc.SequentialTransform(
    [
      cc.MaybeTransform(bias, 0.95),
      cc.MinMaxTransform(),
      cc.RandomGammaTransform(LogNormal(0, 0.5)),
      cc.MaybeTransform(res, 0.95),
      cc.RandomGaussianNoiseTransform(Uniform(0.02, 0.06)),
      cc.MinMaxTransform(),
    ]
  )
  return synth


def _bench_cornucopia(maps, shape, rec: Recorder, seed: int, defaults: bool) -> list:
  import random

  import cornucopia as cc
  import torch

  torch.set_num_threads(2)
  torch.manual_seed(seed)
  random.seed(seed)
  crop = cropper(maps, shape, seed)
  transform = _cornucopia_transform(shape, defaults)
  # SynthSeg's left/right flip (p 0.5) of the label map, before synthesis (axis 1 of the
  # (C, X, Y, Z) tensor = output axis 0, as synthjax's flip axis)
  flip = cc.MaybeTransform(cc.FlipTransform(axis=1), 0.5)
  rec.info["library"] = {
    "torch": torch.__version__,
    "cornucopia": cc.__version__,
    "torch_threads": torch.get_num_threads(),
  }
  rec.info["transform"] = repr(transform)

  def prepare(i):
    return torch.from_numpy(crop(i).astype("int64"))[None]  # (1, X, Y, Z) long

  def run(lab):
    with torch.no_grad():
      image, label = transform(flip(lab))
    assert image.shape[1:] == lab.shape[1:], (image.shape, lab.shape)

  return rec.measure(prepare, run)


def bench_cornucopia(maps, shape, rec: Recorder, seed: int = 0) -> list:
  return _bench_cornucopia(maps, shape, rec, seed, defaults=False)


def bench_cornucopia_default(maps, shape, rec: Recorder, seed: int = 0) -> list:
  return _bench_cornucopia(maps, shape, rec, seed, defaults=True)


def _torchio_transform():
  import torchio as tio

  spatial = tio.RandomAffineElasticDeformation(
    affine_kwargs={
      "scales": 0.2,
      "degrees": 15,
      "translation": 0,
      "label_interpolation": "nearest",
      "default_pad_label": 0,
    },
    elastic_kwargs={
      "num_control_points": 7,
      "max_displacement": 4 * SPACING,
      "locked_borders": 2,
      "label_interpolation": "nearest",
    },
  )
  return tio.Compose(
    [
      # spatial, on the label map only (no image exists yet)
      tio.RandomFlip(axes=(0,), flip_probability=0.5),
      spatial,
      # labels -> image: one Gaussian per label, SynthSeg's ranges
      tio.RandomLabelsToImage(
        label_key="label", image_key="image", default_mean=(0.0, 250.0), default_std=(0.0, 30.0)
      ),
      # intensity (scalar images only)
      tio.RandomBiasField(coefficients=0.5, order=3, p=0.95),
      tio.Clamp(out_min=0.0, out_max=300.0),
      tio.RescaleIntensity(out_min_max=(0.0, 1.0)),
      tio.RandomGamma(log_gamma=(-0.5, 0.5)),
      tio.Compose(
        [
          tio.RandomBlur(std=(0.0, 2.5)),  # mm; SynthSeg sigma = 0.75 * thickness / spacing
          tio.RandomAnisotropy(axes=(0, 1, 2), downsampling=(1.0, 16.0)),
        ],
        p=0.95,
      ),
      tio.RandomNoise(std=(0.02, 0.06)),
      tio.RescaleIntensity(out_min_max=(0.0, 1.0)),
    ]
  )


def bench_torchio(maps, shape, rec: Recorder, seed: int = 0) -> list:
  import numpy as np
  import torch
  import torchio as tio

  torch.set_num_threads(2)
  torch.manual_seed(seed)
  crop = cropper(maps, shape, seed)
  transform = _torchio_transform()
  affine = np.diag([SPACING, SPACING, SPACING, 1.0])
  rec.info["library"] = {
    "torch": torch.__version__,
    "torchio": tio.__version__,
    "torch_threads": torch.get_num_threads(),
  }
  try:
    import SimpleITK as sitk

    rec.info["library"]["SimpleITK"] = sitk.Version_VersionString()
    rec.info["library"]["sitk_threads"] = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
  except Exception:  # pragma: no cover
    pass
  rec.info["transform"] = repr(transform)

  def prepare(i):
    return torch.from_numpy(crop(i).astype("int64"))[None]

  def run(lab):
    subject = tio.Subject(label=tio.LabelMap(tensor=lab, affine=affine))
    out = transform(subject)
    image = out["image"].data
    assert image.shape == lab.shape, (image.shape, lab.shape)

  return rec.measure(prepare, run)


BENCHES = {
  "synthjax": bench_synthjax,
  "cornucopia": bench_cornucopia,
  "cornucopia-default": bench_cornucopia_default,
  "torchio": bench_torchio,
}


# ---------------------------------------------------------------------------------------
# Driver


def parse_only(text: str) -> tuple:
  names = tuple(n.strip() for n in text.split(",") if n.strip())
  bad = [n for n in names if n not in BENCHES]
  if bad or not names:
    raise argparse.ArgumentTypeError(
      f"--only wants names from {', '.join(CONTENDERS)}; got {text!r}"
    )
  return names


def parse_repeats_for(text: str) -> dict:
  out = {}
  for item in (t.strip() for t in text.split(",")):
    if not item:
      continue
    name, _, n = item.partition("=")
    if name not in BENCHES or not n.isdigit() or int(n) < 1:
      raise argparse.ArgumentTypeError(
        f"--repeats-for wants NAME=N,... with NAME from "
        f"{', '.join(CONTENDERS)} and N >= 1; got {item!r}"
      )
    out[name] = int(n)
  return out


def worker(args) -> None:
  """Runs one contender in this process and writes its record to `args.worker_out`."""
  t0 = time.perf_counter()
  maps = load_maps(args.data)
  rec = Recorder(args.repeats, args.wait_quiet, args.retries)
  rec.info["load_s"] = time.perf_counter() - t0
  rec.info["rss_after_load_mib"] = rss_mib()
  error = None
  try:
    times = BENCHES[args.worker](maps, args.shape, rec, seed=args.seed)
    rec.info["times"] = times
    rec.info["summary"] = summarize(times)
  except Exception as e:  # recorded, so that one failing peer does not lose the others
    import traceback

    traceback.print_exc()
    error = f"{type(e).__name__}: {e}"
  rec.info["error"] = error
  rec.info["peak_rss_mib"] = rss_mib("VmHWM")
  with open(args.worker_out, "w") as f:
    json.dump(rec.info, f, indent=1, default=str)


def versions() -> dict:
  out = {"python": platform.python_version()}
  for mod in (
    "numpy",
    "jax",
    "jaxlib",
    "torch",
    "torchio",
    "cornucopia",
    "SimpleITK",
    "nibabel",
    "synthjax",
  ):
    try:
      m = __import__(mod)
      out[mod] = getattr(m, "__version__", None) or m.Version_VersionString()
    except Exception as e:
      out[mod] = f"unavailable ({type(e).__name__})"
  return out


def synthjax_digest() -> str | None:
  """SHA-256 over synthjax's .py files (the library changes between runs; compare numbers
  only between runs with the same digest)."""
  import hashlib

  try:
    import importlib.util

    spec = importlib.util.find_spec("synthjax")
    pkg = Path(spec.origin).parent
  except Exception:
    return None
  h = hashlib.sha256()
  for f in sorted(pkg.rglob("*.py")):
    h.update(str(f.relative_to(pkg)).encode())
    h.update(f.read_bytes())
  return h.hexdigest()[:16]


def machine() -> dict:
  info = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
  try:
    txt = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in txt.splitlines():
      if line.startswith("Model name:"):
        info["cpu_model"] = line.split(":", 1)[1].strip()
  except OSError:
    pass
  try:
    with open("/proc/meminfo") as f:
      info["mem_total_kib"] = int(f.readline().split()[1])
  except OSError:
    pass
  return info


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(
    description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  ap.add_argument(
    "--data",
    type=Path,
    default=DEFAULT_DATA,
    help="folder with sub-sta{21,30,38}/anat/*_dseg.nii.gz "
    "(default: ../shared/data/fetal, relative to the repository root)",
  )
  ap.add_argument(
    "--shape",
    type=lambda t: parse_shape(t, 8),
    default=(160, 160, 160),
    help="output shape, N or X,Y,Z (default 160)",
  )
  ap.add_argument("--repeats", type=int, default=8, help="timed samples per contender")
  ap.add_argument(
    "--repeats-for",
    type=parse_repeats_for,
    default={},
    metavar="NAME=N,...",
    help="per-contender override of --repeats, e.g. cornucopia-default=3",
  )
  ap.add_argument(
    "--only",
    type=parse_only,
    default=CONTENDERS,
    help=f"comma-separated contenders (default: {','.join(CONTENDERS)})",
  )
  ap.add_argument(
    "--wait-quiet",
    type=float,
    default=30.0,
    metavar="S",
    help="wait up to S s before each phase for other processes to use "
    f"< {QUIET_THRESHOLD} cores (default 30)",
  )
  ap.add_argument(
    "--retries",
    type=int,
    default=1,
    help="re-runs of a timed phase disturbed by other processes (default 1)",
  )
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--json", type=Path, default=None, metavar="OUT", help="write results here")
  ap.add_argument("--worker", choices=sorted(BENCHES), help=argparse.SUPPRESS)
  ap.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  if args.repeats < 1:
    ap.error("--repeats must be >= 1")
  args.data = args.data.resolve()
  label_paths(args.data, "bench_peers")  # fail fast

  if args.worker:
    worker(args)
    return {}

  results = {
    "date": datetime.datetime.now().isoformat(timespec="seconds"),
    "argv": sys.argv if argv is None else ["bench_peers.py", *argv],
    "machine": machine(),
    "versions": versions(),
    "synthjax_source_sha256": synthjax_digest(),
    "shape": list(args.shape),
    "spacing_mm": SPACING,
    "repeats": args.repeats,
    "repeats_for": args.repeats_for,
    "data": str(args.data),
    "quiet_threshold_cores": QUIET_THRESHOLD,
    "wait_quiet_s": args.wait_quiet,
    "retries": args.retries,
    "fetalsyngen": "not benchmarked: `pip download --no-deps fetalsyngen` finds no "
    "distribution (not on PyPI)",
    "contenders": {},
  }
  print(
    f"# shape {args.shape}, {args.repeats} repeats, contenders {', '.join(args.only)}", flush=True
  )
  script = str(Path(__file__).resolve())
  for name in args.only:
    print(f"== {name}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
      out = Path(tmp) / "rec.json"
      cmd = [
        sys.executable,
        script,
        "--worker",
        name,
        "--worker-out",
        str(out),
        "--data",
        str(args.data),
        "--shape",
        ",".join(map(str, args.shape)),
        "--repeats",
        str(args.repeats_for.get(name, args.repeats)),
        "--wait-quiet",
        str(args.wait_quiet),
        "--retries",
        str(args.retries),
        "--seed",
        str(args.seed),
      ]
      t0 = time.perf_counter()
      proc = subprocess.run(cmd)
      wall = time.perf_counter() - t0
      if out.exists():
        rec = json.loads(out.read_text())
      else:
        rec = {"error": f"worker exited with status {proc.returncode} and wrote nothing"}
    rec["worker_wall_s"] = wall
    rec["worker_returncode"] = proc.returncode
    results["contenders"][name] = rec
    if rec.get("summary"):
      s = rec["summary"]
      print(
        f"   {name:20s} median {s['median']:8.3f} s  IQR {s['iqr']:.3f} s  "
        f"first call {rec['first_call_s']:.2f} s  peak RSS {rec['peak_rss_mib']:.0f} MiB",
        flush=True,
      )
    else:
      print(f"   {name}: FAILED ({rec.get('error')})", flush=True)

  results["synthjax_source_sha256_at_end"] = synthjax_digest()
  base = results["contenders"].get("synthjax", {}).get("summary")
  if base:
    for rec in results["contenders"].values():
      if rec.get("summary"):
        rec["ratio_vs_synthjax"] = rec["summary"]["median"] / base["median"]
  print(
    "\n| contender | median s/sample | IQR s | x synthjax | peak RSS MiB | first call s |"
    " other cores |\n|---|---|---|---|---|---|---|"
  )
  for name, rec in results["contenders"].items():
    if not rec.get("summary"):
      print(f"| {name} | failed | | | | | |")
      continue
    s = rec["summary"]
    ratio = rec.get("ratio_vs_synthjax")
    print(
      f"| {name} | {s['median']:.3f} | {s['iqr']:.3f} | "
      f"{'' if ratio is None else f'{ratio:.1f}'} | {rec['peak_rss_mib']:.0f} | "
      f"{rec['first_call_s']:.2f} | "
      f"{rec['timed_phase'].get('other_cores', float('nan')):.2f} |"
    )
  if args.json:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, default=str))
    print(f"# wrote {args.json}")
  return results


if __name__ == "__main__":
  main()
