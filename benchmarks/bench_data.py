"""Patch throughput of `synthjax.data.pipeline` vs TorchIO's `Queue` on the fetal maps.

Both cut uniform random patches from the same three 256^3 label maps (`.nii.gz`, float32
on disk), `--per-volume` patches per loaded volume, in batches of `--batch`, with 0, 1 and 2
worker processes. The first batch (worker start-up, first loads) is timed apart; the rate is
measured over the next `--batches` batches. TorchIO needs the `bench` extra
(`pip install torch==2.13.0 && pip install -e ".[bench]"`); it is skipped if missing.

Run: python benchmarks/bench_data.py [--patch 96] [--batch 4] [--batches 24] [--json OUT]
"""

import argparse
import json
import os
import pathlib
import platform
import time

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "fetal"
PATTERN = "sub-sta*/anat/sub-sta*_rec-irtk_T2w_dseg.nii.gz"


def _time_batches(make_iter, n_batches):
  t0 = time.perf_counter()
  it = make_iter()
  first = next(it)
  t1 = time.perf_counter()
  shapes = None
  for _ in range(n_batches):
    batch = next(it)
    shapes = batch
  t2 = time.perf_counter()
  if hasattr(it, "close"):
    it.close()
  return t1 - t0, t2 - t1, first, shapes


def bench_synthjax(paths, patch, batch, per_volume, workers, n_batches, cache):
  from synthjax import data

  source = data.NiftiSource.from_files(paths, cache=cache)
  ds = data.pipeline(
    source,
    patch_size=patch,
    batch_size=batch,
    seed=0,
    workers=workers,
    patches_per_volume=per_volume,
  )
  first_s, steady_s, first, last = _time_batches(lambda: iter(ds), n_batches)
  assert last["labels"].shape == (batch, patch, patch, patch)
  return {
    "first_batch_s": first_s,
    "steady_s": steady_s,
    "patches_per_s": n_batches * batch / steady_s,
  }


def bench_torchio(paths, patch, batch, per_volume, workers, n_batches):
  import torch
  import torchio as tio

  torch.manual_seed(0)
  subjects = [tio.Subject(label=tio.LabelMap(p)) for p in paths]
  dataset = tio.SubjectsDataset(subjects)
  queue = tio.Queue(
    dataset,
    max_length=2 * per_volume,
    samples_per_volume=per_volume,
    sampler=tio.UniformSampler(patch),
    num_workers=workers,
    shuffle_subjects=True,
    shuffle_patches=True,
  )
  loader = torch.utils.data.DataLoader(queue, batch_size=batch, num_workers=0)

  def endless():
    while True:
      yield from loader

  first_s, steady_s, _, last = _time_batches(endless, n_batches)
  assert tuple(last["label"][tio.DATA].shape) == (batch, 1, patch, patch, patch)
  return {
    "first_batch_s": first_s,
    "steady_s": steady_s,
    "patches_per_s": n_batches * batch / steady_s,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", default=str(DEFAULT_DATA))
  parser.add_argument("--patch", type=int, default=96)
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--per-volume", type=int, default=8)
  parser.add_argument("--batches", type=int, default=24)
  parser.add_argument("--workers", default="0,1,2")
  parser.add_argument("--json")
  args = parser.parse_args()
  paths = sorted(str(p) for p in pathlib.Path(args.data).glob(PATTERN))
  if len(paths) != 3:
    raise SystemExit(
      f"{args.data}: expected the 3 fetal label maps ({PATTERN}), found {len(paths)}"
    )
  workers = [int(w) for w in args.workers.split(",")]
  results = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    "machine": platform.platform(),
    "cpus": os.cpu_count(),
    "args": vars(args),
    "rows": [],
  }
  common = (paths, args.patch, args.batch, args.per_volume)
  for w in workers:
    for cache in (False, True):
      r = bench_synthjax(*common, w, args.batches, cache)
      r.update(library="synthjax", workers=w, cache=cache)
      results["rows"].append(r)
      print(
        f"synthjax  workers {w}  cache {str(cache):5s}  first batch "
        f"{r['first_batch_s']:6.2f} s  {r['patches_per_s']:7.2f} patches/s",
        flush=True,
      )
    try:
      r = bench_torchio(*common, w, args.batches)
    except ImportError as e:
      print(f"torchio skipped ({e})")
      continue
    r.update(library="torchio", workers=w, cache=None)
    results["rows"].append(r)
    print(
      f"torchio   workers {w}               first batch {r['first_batch_s']:6.2f} s  "
      f"{r['patches_per_s']:7.2f} patches/s",
      flush=True,
    )
  try:
    import grain
    import torchio

    results["versions"] = {
      "torchio": torchio.__version__,
      "grain": grain.__version__ if hasattr(grain, "__version__") else "0.2.18",
    }
  except ImportError:
    pass
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()
