"""Segment real scans with a trained run.

  synthjax segment RUN IMAGE... -o OUT [--last] [--tta]

Each scan (any NIfTI of any size, spacing and orientation) is reoriented to RAS, brought
to the training spacing and normalised like the training images, segmented by
Gaussian-blended sliding windows of the training patch (slice by slice for a 2-D net),
and mapped back to its own grid. `OUT/<name>_seg.nii.gz` holds the labels and
`OUT/<name>_conf.nii.gz` the softmax maximum (in [0, 1]), both with the scan's affine.
`OUT/<name>_volumes.json` holds each label's voxel count and volume in mL on the scan's
grid, and `OUT/<name>_qc.png` three orthogonal slices through the segmented region with
the labels outlined and their volumes. `--tta` averages the prediction with that of the
left/right mirror image (swapping left/right labels).

The run's provenance (synthjax version and commit, classes, spacing, the generator config's
SHA-256, the package versions, the label maps' SHA-256) is printed to stderr; a run folder
without run.json or weights, or whose run.json another major version of synthjax wrote,
and any scan that cannot be segmented (read in full and checked: 3-D, a sane spacing,
finite and not constant intensities, class probabilities that fit in the memory
available) are refused before anything is written. Existing outputs are refused unless
`--overwrite` is given; each file is written under a temporary name and renamed, and a
scan stopped between its files (Ctrl-C, SIGTERM, a full disk) keeps none of them.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from synthjax._src import scans, stops
from synthjax._src.train import metrics, qc, runinfo
from synthjax._src.train.cli import UserError, add_cache_option

if TYPE_CHECKING:
  from synthjax._src.config import SynthConfig
  from synthjax._src.train.steps import Predictor

# What `synthjax segment` writes for each scan, after its name.
OUTPUTS = ("_seg.nii.gz", "_conf.nii.gz", "_volumes.json", "_qc.png")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
  """Adds the arguments of `synthjax segment` to the parser `p` (its own, or a subparser)."""
  p.add_argument("run", help="a run folder written by `synthjax train`")
  p.add_argument("images", nargs="+", help="NIfTI scans")
  p.add_argument("-o", "--out", required=True, help="output folder")
  add_cache_option(p)
  p.add_argument(
    "--last",
    action="store_true",
    help="use the latest checkpoint (default: the best by validation Dice)",
  )
  p.add_argument("--tta", action="store_true", help="average with the mirrored scan")
  p.add_argument("--batch-size", type=int, default=4, help="patches per forward pass")
  p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  p.add_argument("--debug", action="store_true", help="show tracebacks")
  return p


def build_parser() -> argparse.ArgumentParser:
  """The command line of `synthjax segment` on its own (`main`); `run` takes what it parses."""
  return add_arguments(
    argparse.ArgumentParser(prog="synthjax segment", description=(__doc__ or "").splitlines()[0])
  )


def _stem(path):
  name = os.path.basename(path)
  for ext in (".nii.gz", ".nii"):
    if name.endswith(ext):
      return name[: -len(ext)]
  return name


class Segmenter:
  """A trained run, ready to segment scans: `seg, conf = Segmenter(run)(scan_path)`."""

  def __init__(self, run_dir: str, *, best: bool = True) -> None:
    import jax
    from flax import nnx

    import synthjax
    from synthjax._src.train import checkpoints, model, runinfo, steps

    run_json = os.path.join(run_dir, "run.json")
    if not os.path.exists(run_json):
      raise UserError(f"{run_json}: no such file; {run_dir} is not a run folder")
    try:
      with open(run_json) as f:
        # The run's JSON record (`runinfo`): its values are whatever JSON holds.
        self.record: dict[str, Any] = json.load(f)
    except (OSError, ValueError) as e:
      raise UserError(f"{run_json}: cannot read the run record ({e})") from e
    runinfo.check_record(self.record, run_json)
    # Checked before Orbax opens the folder: its managers would create missing folders.
    if not (
      _has_steps(os.path.join(run_dir, "checkpoints"))
      or (best and _has_steps(os.path.join(run_dir, "best")))
    ):
      raise UserError(
        f"{os.path.join(run_dir, 'checkpoints')}: no checkpoint (the run's "
        f"weights); train the run first"
      )
    self.run_dir = run_dir
    self.args: argparse.Namespace = argparse.Namespace(**self.record["args"])
    self.config: SynthConfig = synthjax.SynthConfig.from_dict(self.record["synth_config"])
    self.classes: list[int] = self.record["classes"]
    net = model.build(self.record["model"], len(self.classes), seed=0)
    graphdef, state = nnx.split(net)
    params = nnx.to_pure_dict(state)
    a = self.args
    tx = steps.make_optimizer(a.lr, a.steps, schedule=a.schedule, warmup=a.warmup)
    ckpt = checkpoints.Checkpoints(run_dir)
    self.step: int
    try:
      self.step, params = ckpt.restore_params(params, tx.init(params), best=best)
    except FileNotFoundError as e:
      raise UserError(f"{run_dir}: {e}") from e
    finally:
      ckpt.close()
    # The net's weights (`nnx.to_pure_dict`'s nesting), on the first local device.
    self.params: dict[str, Any] = jax.device_put(params, jax.local_devices()[0])
    self.predict: Predictor = steps.make_predictor(graphdef, dim=self.record["model"]["dim"])

  def __call__(
    self, image_path: str, *, tta: bool = False, batch_size: int = 4
  ) -> tuple[np.ndarray, np.ndarray, scans.Scan]:
    from synthjax._src.train.train import segment_scan

    scan = scans.load_scan(image_path, self.config.spacing)
    seg, conf = segment_scan(
      self.predict,
      self.params,
      scan,
      self.classes,
      self.config,
      self.args,
      tta=tta,
      batch_size=batch_size,
    )
    return seg, conf, scan


# Float32 class probabilities held on the host at once while a scan is segmented, in
# volumes of the scan on the training grid: the sliding windows' outputs before they are
# blended (about 2.4 with a quarter-patch overlap in 3-D), the blend, and with --tta the
# mirror's; then on the scan's own grid, mapped back and the argmax's working copy.
_TRAINING_GRID_COPIES, _SCAN_GRID_COPIES = 6, 2


def check_fits(image: str, spacing: Sequence[float], num_classes: int) -> None:
  """Refuses, naming the scan and its shapes, a scan whose class probabilities cannot fit
  in the host memory available (read from its header)."""
  import math

  import nibabel as nib

  from synthjax._src import memory

  img = scans.load(image)
  shape = tuple(int(n) for n in img.shape[:3])
  # Along each stored axis: its voxel size (the affine's) and the run's spacing along the
  # RAS axis it becomes.
  affine = np.asarray(img.affine, np.float64)  # checked by `scans.check_image` before
  zooms = scans.spacing_of(affine)
  ras_axis = nib.orientations.io_orientation(affine)[:, 0].astype(int)
  grid = tuple(
    math.ceil(n * z / float(spacing[a])) for n, z, a in zip(shape, zooms, ras_axis, strict=True)
  )
  need = (
    4
    * num_classes
    * (_TRAINING_GRID_COPIES * math.prod(grid) + _SCAN_GRID_COPIES * math.prod(shape))
  )
  have = memory.host_available_bytes()
  if have is not None and need > have:
    raise UserError(
      f"{image}: {shape} voxels of {' x '.join(f'{z:g}' for z in zooms)} mm are {grid} on the "
      f"run's {' x '.join(f'{s:g}' for s in spacing)} mm grid; segmenting them needs about "
      f"{need / 2**30:.1f} GiB for {num_classes} classes, and {have / 2**30:.1f} GiB is "
      "available: crop the scan to the region to segment"
    )


def _has_steps(folder):
  """Whether `folder` holds a finished Orbax step (a folder named by its step number)."""
  return os.path.isdir(folder) and any(
    n.isdigit() and os.path.isdir(os.path.join(folder, n)) for n in os.listdir(folder)
  )


def save(path, array, affine):
  """Writes a NIfTI atomically (temporary name, then rename), with the umask's mode."""
  import nibabel as nib

  tmp = f"{path}.tmp-{os.getpid()}.nii.gz"
  img = nib.Nifti1Image(array, affine)
  img.header.set_xyzt_units("mm")
  try:
    nib.save(img, tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def run(args: argparse.Namespace) -> list[list[str]]:
  """Segments `args.images` with the run `args.run` (`build_parser`); returns, for each
  scan, the paths written (segmentation, confidence, volumes JSON, QC picture)."""
  outputs = []
  for image in args.images:
    if not os.path.exists(image):
      raise UserError(f"{image}: no such file")
    # Read and checked in full (3-D, spacing, intensities), so that a bad scan is refused
    # before any output is written.
    scans.check_image(image)
    stem = _stem(image)
    paths = tuple(os.path.join(args.out, f"{stem}{suffix}") for suffix in OUTPUTS)
    if not args.overwrite:
      for p in paths:
        if os.path.exists(p):
          raise UserError(f"{p}: exists; pass --overwrite to replace it")
    outputs.append((image, paths))
  stems = [_stem(i) for i in args.images]
  dups = sorted({s for s in stems if stems.count(s) > 1})
  if dups:
    raise UserError(
      f"two scans share the output name {dups[0]!r}; segment them into separate folders"
    )
  segmenter = Segmenter(args.run, best=not args.last)
  print(f"synthjax segment: {runinfo.summary(segmenter.record, args.run)}", file=sys.stderr)
  for image, _ in outputs:
    check_fits(image, segmenter.config.spacing, len(segmenter.classes))
  os.makedirs(args.out, exist_ok=True)
  bar = None
  if not args.quiet:
    from tqdm import tqdm

    bar = tqdm(total=len(outputs), desc="predict", unit="scan", dynamic_ncols=True)
  try:
    for image, (seg_path, conf_path, volumes_path, qc_path) in outputs:
      stops.check()
      seg, conf, scan = segmenter(image, tta=args.tta, batch_size=args.batch_size)
      dtype = np.uint8 if max(segmenter.classes) < 256 else np.int32
      seg = seg.astype(dtype)
      written = []
      try:
        save(seg_path, seg, scan.affine)
        written.append(seg_path)
        save(conf_path, conf, scan.affine)
        written.append(conf_path)
        volumes = metrics.label_volumes(seg, scan.affine, segmenter.classes)
        qc.write_json(
          volumes_path,
          {"scan": os.path.abspath(image), "segmentation": os.path.abspath(seg_path), **volumes},
        )
        written.append(volumes_path)
        qc.qc_picture(image, seg, volumes, qc_path, title=os.path.basename(image))
      except BaseException as e:
        # Stopped (Ctrl-C, SIGTERM, a full disk) between this scan's files: none of them is
        # kept, so that a re-run without --overwrite finds only whole sets.
        for p in written:
          os.remove(p)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
          raise UserError(
            f"{args.out}: no space left on the device while writing the "
            f"outputs of {image} ({os.strerror(e.errno)}); the scans before "
            f"it are done"
          ) from e
        raise
      if bar is not None:
        bar.update(1)
  finally:
    if bar is not None:
      bar.close()
  return [p for _, p in outputs]


def main(argv: Sequence[str] | None = None) -> int:
  """`synthjax segment ARGS...` without the other commands: returns the exit status."""
  from synthjax._src.train import cli

  return cli.main("synthjax segment", build_parser(), lambda args, _: run(args), argv)
