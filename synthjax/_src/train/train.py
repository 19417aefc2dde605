"""Train a U-Net to segment real scans from synthetic images rendered in the train step.

  synthjax train LABELS... -o RUN [--preset fetal|synthseg]
      [--config cfg.json] [--shape X Y Z] [--down F | --spacing MM] [--priors FILE]
      [--seeds DIR]
      [--dim 2|3] [--steps N] [--batch B]
      [--seed S] [--val IMAGE:LABELS ...] [--eval-every K] [--ckpt-every K] [--resume]
      [--strength-start S --strength-ramp N]

The Grain pipeline cuts label patches (or whole maps) in CPU workers; each train step
renders the images on the device (`synthjax.data.synthesize_batch`), runs the U-Net and
updates it with Adam on a DiceCE loss, as one XLA program. Every `--ckpt-every` steps
Orbax saves the weights, optimizer state and Grain iterator position; `--resume` after a
crash or `kill -9` continues the run, and on CPU the losses that follow are bit-identical
to those of an uninterrupted run. Every `--eval-every` steps the net segments the
`--val` scans by sliding windows and the Dice per label is recorded; the best weights are
kept in `RUN/best`.

Outputs: `RUN/run.json` (everything needed to rebuild the net and the generator),
`RUN/metrics.jsonl` (one JSON object per step and per validation), `RUN/curves.png`
(redrawn at every checkpoint and validation), `RUN/checkpoints/`, `RUN/best/`. run.json
also records the versions of the stack, the git commit of the synthjax source and the
SHA-256 of every label map; `--resume` refuses maps that changed since.

Seed maps: `--preset fetal --seeds DIR` draws the sub-label intensity classes from
FetalSynthGen's seed maps (`DIR/subclasses_K/.../<map>_mlabel_M.nii.gz`) instead of the
procedural split; the Grain workers bring each map's seeds to the training grid as its
labels (`--down`, `--spacing`) and cut them with every label patch
(`synthjax.data.seed_patches`).

Curriculum: `--strength-start S --strength-ramp N` renders the first steps at augmentation
strength S (`synthjax.sample_params(..., strength=)`: 0 is the plain label Gaussians on
unmoved labels) and raises it linearly to the config's full ranges over N steps, in the
same compiled step. The strength follows the optimizer's step count, so a resumed run
continues the ramp exactly; each step's strength is in `metrics.jsonl`.

Devices and hosts: the batch is split over every local device (set
`XLA_FLAGS=--xla_force_host_platform_device_count=N` to try it on a CPU), and with
`--coordinator HOST:PORT --num-processes N --process-id I` over N processes, each of which
feeds its Grain shard.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from synthjax._src import scans, stops
from synthjax._src.train import runinfo

if TYPE_CHECKING:
  from synthjax._src.config import SynthConfig
  from synthjax._src.train.steps import Predictor
from synthjax._src.train.cli import UserError, add_cache_option, atomic_write

# Arguments that may differ when a run is resumed; every other one must match run.json.
RESUMABLE = ("steps", "workers", "quiet", "resume", "eval_every", "ckpt_every", "no_cache")


def add_arguments(p):
  """Adds the arguments of `synthjax train` to the parser `p` (its own, or a subparser)."""
  p.add_argument("labels", nargs="*", help="label maps: NIfTI files, folders or globs")
  p.add_argument("-o", "--out", required=True, help="run folder")
  p.add_argument("--preset", choices=("fetal", "synthseg"), default="synthseg")
  p.add_argument("--config", help="a SynthConfig JSON (instead of --preset)")
  p.add_argument("--shape", type=int, nargs=3, help="training patch (default: the maps' shape)")
  p.add_argument(
    "--down",
    type=int,
    default=1,
    help="coarsen the label maps by this integer factor (majority vote)",
  )
  p.add_argument(
    "--spacing",
    type=float,
    nargs="+",
    metavar="MM",
    help="bring every label map to this spacing (one or three values; soft "
    "majority vote), so that maps of different voxel sizes train together",
  )
  p.add_argument(
    "--priors",
    metavar="FILE",
    help="intensity priors of real scans (synthjax.priors JSON, "
    "benchmarks/estimate_priors.py) for the preset",
  )
  p.add_argument(
    "--seeds",
    metavar="DIR",
    help="FetalSynthGen's seed maps (the folder holding subclasses_1, ...): "
    "the fetal preset's sub-label classes come from them",
  )
  p.add_argument("--dim", type=int, choices=(2, 3), default=3)
  p.add_argument("--slices", type=int, default=8, help="2-D: slices per rendered volume")
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--batch", type=int, default=2, help="volumes per step (global)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--lr", type=float, default=1e-3)
  p.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
  p.add_argument("--warmup", type=int, default=0)
  p.add_argument("--features", type=int, nargs="+", default=[8, 16, 32, 64])
  p.add_argument("--convs", type=int, default=2, help="convolutions per level")
  p.add_argument("--norm", choices=("instance", "group", "none"), default="instance")
  p.add_argument("--activation", choices=("leaky_relu", "elu", "relu"), default="leaky_relu")
  p.add_argument("--upsample", choices=("transpose", "resize"), default="transpose")
  p.add_argument(
    "--conv-impl",
    choices=("auto", "im2col", "xla"),
    default="auto",
    help="convolution form (auto: im2col on CPU where it fits, else XLA's)",
  )
  p.add_argument("--patches-per-volume", type=int, default=1)
  p.add_argument(
    "--val",
    nargs="*",
    default=[],
    metavar="IMAGE:LABELS",
    help="real scans with their label maps for validation",
  )
  p.add_argument("--eval-every", type=int, default=0, help="0: only at the end")
  p.add_argument(
    "--real",
    nargs="*",
    default=[],
    metavar="IMAGE:LABELS",
    help="real scans with labels to fine-tune on (FetalSynthSeg's real-image "
    "fine-tuning), augmented by the generator's spatial and intensity stages",
  )
  p.add_argument(
    "--real-every", type=int, default=5, help="with --real: every K-th step trains on a real batch"
  )
  p.add_argument(
    "--strength-start",
    type=float,
    default=None,
    metavar="S",
    help="augmentation curriculum: the generator's strength starts at S in "
    "[0, 1] (0: plain label Gaussians on unmoved labels) and rises "
    "linearly to 1 (the config's ranges) over --strength-ramp steps",
  )
  p.add_argument(
    "--strength-ramp",
    type=int,
    default=1000,
    metavar="N",
    help="with --strength-start: steps to reach full strength",
  )
  p.add_argument("--ckpt-every", type=int, default=100)
  p.add_argument("--workers", type=int, default=0, help="Grain worker processes")
  p.add_argument("--resume", action="store_true", help="continue the run in --out")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  p.add_argument("--coordinator", help="HOST:PORT of process 0 (multi-host)")
  p.add_argument("--num-processes", type=int, default=1)
  p.add_argument("--process-id", type=int, default=0)
  p.add_argument("--debug", action="store_true", help="show tracebacks")
  add_cache_option(p)
  return p


def build_parser() -> argparse.ArgumentParser:
  """The command line of `synthjax train` on its own (`main`); `run` takes what it parses."""
  return add_arguments(
    argparse.ArgumentParser(prog="synthjax train", description=(__doc__ or "").splitlines()[0])
  )


def expand_paths(patterns):
  """Files, folders (their .nii/.nii.gz) and globs, as absolute paths in a stable order."""
  from synthjax.data import expand_paths as expand

  try:
    return [os.path.abspath(p) for p in expand(patterns)]
  except (ValueError, FileNotFoundError) as e:
    raise UserError(str(e)) from e


def load_config(
  args: argparse.Namespace, values: Sequence[int], spacing: Sequence[float], shape: Sequence[int]
) -> SynthConfig:
  """The SynthConfig of the run: a preset on the maps' labels, or the --config JSON."""
  import synthjax

  if args.config:
    try:
      with open(args.config) as f:
        cfg = synthjax.SynthConfig.from_dict(json.load(f))
    except (OSError, ValueError, TypeError) as e:
      raise UserError(f"{args.config}: not a valid config ({e})") from e
    if not np.allclose(cfg.spacing, spacing, rtol=1e-3):
      raise UserError(
        f"{args.config}: spacing {cfg.spacing} differs from the label maps' "
        f"{tuple(spacing)} (after --down {args.down})"
      )
    sub = cfg.subclusters
    uses_seeds = sub.enabled and sub.source == "seeds"
    if uses_seeds and not getattr(args, "seeds", None):
      raise UserError(
        f"{args.config}: its sub-label classes come from seed maps "
        f"(subclusters.source 'seeds'); give their folder with --seeds"
      )
    if getattr(args, "seeds", None) and not uses_seeds:
      raise UserError(
        f"--seeds: {args.config} draws no sub-label classes from seed maps "
        f"(subclusters.source 'seeds')"
      )
    return cfg.replace(shape=tuple(shape)) if args.shape else cfg
  build = {"fetal": synthjax.presets.fetal, "synthseg": synthjax.presets.synthseg}[args.preset]
  kwargs = {}
  if getattr(args, "seeds", None):
    if args.preset != "fetal":
      raise UserError(
        f"--seeds: FetalSynthGen's seed maps are for --preset fetal, not {args.preset}"
      )
    kwargs["seeds"] = True
  priors = None
  try:
    priors = synthjax.priors.load(args.priors) if getattr(args, "priors", None) else None
    return build(tuple(values), tuple(shape), tuple(spacing), priors=priors, **kwargs)
  except ValueError as e:
    raise UserError(f"{e}" if priors is None else f"{args.priors}: {e}") from e


def strength_schedule(args):
  """The generator's augmentation strength as a function of the step (None: full)."""
  if args.strength_start is None:
    return None
  if not 0.0 <= args.strength_start <= 1.0:
    raise UserError(f"--strength-start must be in [0, 1], got {args.strength_start}")
  if args.strength_ramp < 1:
    raise UserError(f"--strength-ramp must be a positive integer, got {args.strength_ramp}")
  from synthjax._src.train import steps

  return steps.linear_ramp(args.strength_start, args.strength_ramp)


def model_config(args) -> dict[str, Any]:
  return {
    "dim": args.dim,
    "features": list(args.features),
    "convs_per_level": args.convs,
    "norm": args.norm,
    "activation": args.activation,
    "upsample": args.upsample,
    "conv_impl": args.conv_impl,
  }


def check_resume_args(args, parser, stored: dict[str, Any]):
  defaults = vars(parser.parse_args(["-o", "x"]))
  for name, value in vars(args).items():
    if name in RESUMABLE or name in ("out", "coordinator", "num_processes", "process_id", "debug"):
      continue
    if value not in (defaults.get(name), []) and value != stored.get(name):
      raise UserError(
        f"--resume: --{name.replace('_', '-')} {value!r} differs from the run's "
        f"{stored.get(name)!r} ({os.path.join(args.out, 'run.json')}); drop it "
        f"or start a new run"
      )
  merged = dict(stored)
  for name in RESUMABLE:
    if vars(args)[name] != defaults.get(name):
      merged[name] = vars(args)[name]
  merged["out"], merged["resume"] = args.out, True
  for name in ("coordinator", "num_processes", "process_id", "debug"):
    merged[name] = vars(args)[name]
  return argparse.Namespace(**merged)


def absolute_inputs(args):
  """LABELS expanded to absolute file paths and --val pairs made absolute, so a run
  resumes from any working directory."""
  args.labels = expand_paths(args.labels) if args.labels else []
  for name in ("val", "real"):
    pairs = scans.parse_pairs(getattr(args, name))
    setattr(args, name, [f"{os.path.abspath(i)}:{os.path.abspath(l)}" for i, l in pairs])
  for name in ("priors", "seeds"):
    if getattr(args, name, None):
      setattr(args, name, os.path.abspath(getattr(args, name)))
  return args


def prepare_run(args, parser):
  """Checks the run folder; on --resume, returns the stored arguments."""
  args = absolute_inputs(args)
  run_json = os.path.join(args.out, "run.json")
  if args.resume:
    if not os.path.exists(run_json):
      raise UserError(f"{args.out}: no run to resume (no run.json)")
    with open(run_json) as f:
      stored = json.load(f)
    args = check_resume_args(args, parser, stored["args"])
    runinfo.check_labels(stored, run_json)
    return args, stored
  if os.path.exists(run_json):
    raise UserError(
      f"{args.out}: holds a run already; pass --resume to continue it or choose another folder"
    )
  if os.path.isdir(args.out) and os.listdir(args.out):
    raise UserError(f"{args.out}: folder is not empty; choose a new or empty folder")
  return args, None


class MetricsLog:
  """`metrics.jsonl`: appended and flushed line by line; on resume, cut back to the
  checkpoint's step so the file matches an uninterrupted run."""

  def __init__(self, path, *, keep_until=None, enabled=True):
    from synthjax._src.train.plot import read_metrics

    self.path, self.enabled = path, enabled
    if not enabled:
      return
    records = read_metrics(path) if keep_until is not None else []
    records = [r for r in records if r["step"] <= (keep_until or 0)]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in records))
    self.file = open(path, "a")  # noqa: SIM115 (held across steps; close() closes it)

  def write(self, record):
    if self.enabled:
      self.file.write(json.dumps(record) + "\n")
      self.file.flush()

  def close(self):
    if self.enabled:
      self.file.close()


def validate(predict, params, val_scans, classes, cfg, args):
  """Segments every validation scan; returns `{"dice": {label: mean}, "mean_dice", ...}`."""
  from synthjax._src.train import metrics

  per_scan = []
  labels = [c for c in classes if c != 0]
  for scan, truth in val_scans:
    seg, _ = segment_scan(predict, params, scan, classes, cfg, args)
    per_scan.append(metrics.score_scan(seg, truth, labels))
  mean = metrics.mean_over_scans(per_scan)
  return {
    "dice": mean["per_label"],
    "mean_dice": mean["mean_dice"],
    "per_scan": [s["per_label"] for s in per_scan],
  }


def segment_scan(
  predict: Predictor,
  params: Any,
  scan: scans.Scan,
  classes: Sequence[int],
  cfg: SynthConfig,
  args: argparse.Namespace,
  *,
  tta: bool = False,
  batch_size: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
  """`(segmentation, confidence)` of a `scans.Scan` on its own grid."""
  from synthjax._src.train import steps

  perm = steps.flip_permutation(classes, cfg.flip_pairs, cfg.output_labels, cfg.label_values)
  probs = steps.segment_array(
    predict,
    params,
    scan.image,
    dim=args.dim,
    patch=cfg.shape,
    batch_size=batch_size,
    flip_axes=(0,) if tta else (),
    flip_perm=perm,
  )
  native = scan.to_native(probs, order=1)
  index = np.argmax(native, axis=-1)
  seg = np.asarray(sorted(classes), np.int32)[index]
  confidence = np.take_along_axis(native, index[..., None], -1)[..., 0]
  return seg, np.clip(confidence, 0.0, 1.0).astype(np.float32)


@dataclasses.dataclass
class TrainResult:
  """What a call of `run` did (in this process).

  Attributes:
    step: the last step done.
    losses: the loss of each step this call ran.
    samples: for each of those steps, the global indices of this process's samples.
    validations: the validation records of this call.
    params: the final weights (numpy pytree).
  """

  step: int
  losses: list[float]
  samples: list[np.ndarray]
  # JSON-like records (`{"step", "dice", "mean_dice", ...}`): their values are of several types.
  validations: list[dict[str, Any]]
  params: object


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> TrainResult:
  """Trains as the command line does, from parsed arguments (`build_parser`)."""
  parser = parser or build_parser()
  import jax

  if args.coordinator:
    jax.distributed.initialize(
      args.coordinator, num_processes=args.num_processes, process_id=args.process_id
    )
  # Every process checks the folder before any of them writes to it.
  args, stored = prepare_run(args, parser)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("synthjax train: run folder checked")
  from flax import nnx

  import synthjax
  from synthjax import data as sdata
  from synthjax._src.train import checkpoints, model, plot, steps

  pid, nproc = jax.process_index(), jax.process_count()
  main_process = pid == 0
  if args.steps < 1 or args.batch < 1:
    raise UserError(f"--steps and --batch must be positive, got {args.steps} and {args.batch}")
  if args.batch % jax.device_count():
    raise UserError(f"--batch {args.batch} must be a multiple of the {jax.device_count()} devices")
  if args.down < 1:
    raise UserError(f"--down must be a positive integer, got {args.down}")
  strength = strength_schedule(args)

  # Label maps and the generator.
  paths = args.labels
  if not paths:
    raise UserError("no label maps given: pass LABELS (files, folders or globs)")
  spacing = getattr(args, "spacing", None)
  if spacing is not None:
    if args.down != 1:
      raise UserError("give --down or --spacing, not both")
    try:
      spacing = scans.spacing_option(spacing)
    except scans.ScanError as e:
      raise UserError(str(e)) from e
  if args.config and getattr(args, "priors", None):
    raise UserError(
      "--priors sets a preset's ranges; with --config, put them in the config "
      "(synthjax.priors.apply)"
    )
  if args.real and getattr(args, "seeds", None):
    raise UserError(
      "--real: real-image fine-tuning takes the real image's intensities, "
      "not seed maps; drop --seeds or --real"
    )
  reader = scans.LabelReader(down=args.down, spacing=spacing)
  try:
    source = sdata.NiftiSource.from_files(paths, reader=reader, cache=True)
    maps = [source[i]["labels"].read() for i in range(len(source))]
  except ValueError as e:
    raise UserError(str(e)) from e
  spacings = [tuple(source[i]["spacing"]) for i in range(len(source))]
  for path, sp in zip(paths, spacings):
    if not np.allclose(sp, spacings[0], rtol=1e-3):
      raise UserError(
        f"{path}: spacing {tuple(round(float(s), 4) for s in sp)} differs "
        f"from {paths[0]}'s {tuple(round(float(s), 4) for s in spacings[0])}; "
        f"resample the maps to one spacing"
      )
  values = sorted(set().union(*(np.unique(m).tolist() for m in maps)))
  shape = tuple(args.shape) if args.shape else maps[0].shape
  cfg = (
    synthjax.SynthConfig.from_dict(stored["synth_config"])
    if stored
    else load_config(args, values, spacings[0], shape)
  )
  if cfg.num_channels != 1:
    raise UserError(
      f"the config renders {cfg.num_channels} channels (num_channels); the "
      f"recipe's net and its real scans take one: set num_channels to 1"
    )
  for path, m in zip(paths, maps):
    try:
      synthjax.validate_labels(m, cfg, name=path)
    except ValueError as e:
      raise UserError(str(e)) from e
  # Seed maps of every label map are found before anything is written.
  names = ("labels", "key")
  transforms = []
  if cfg.subclusters.enabled and cfg.subclusters.source == "seeds":
    try:
      transforms.append(sdata.seed_patches(source, args.seeds, cfg, to_grid=reader.layer))
    except (ValueError, FileNotFoundError) as e:
      raise UserError(str(e)) from e
    names += ("seeds",)
  classes = sorted(set(cfg.segmentation_values))
  factor = 2 ** (len(args.features) - 1)
  spatial = cfg.shape[:2] if args.dim == 2 else cfg.shape
  if any(n % factor for n in spatial):
    raise UserError(
      f"the patch {cfg.shape} must be divisible by {factor} (2 ** (levels - 1) "
      f"for {len(args.features)} levels) along "
      f"{'x and y' if args.dim == 2 else 'every axis'}"
    )
  if args.dim == 2 and not 1 <= args.slices <= cfg.shape[2]:
    raise UserError(f"--slices must be in [1, {cfg.shape[2]}], got {args.slices}")

  val_scans = []
  for image_path, label_path in scans.parse_pairs(args.val):
    scan = scans.load_scan(image_path, cfg.spacing)
    truth = scans.load_truth(label_path, scan)
    unknown = sorted(set(np.unique(truth).tolist()) - set(classes))
    if unknown:
      raise UserError(
        f"{label_path}: label values {unknown} are not among the net's output classes {classes}"
      )
    val_scans.append((scan, truth))

  real_source, real_cfg = None, None
  if args.real:
    if args.real_every < 1:
      raise UserError(f"--real-every must be a positive integer, got {args.real_every}")
    # Not `names`: that tuple holds the batch fields of the synthetic steps.
    labels_list, images, real_names = [], [], []
    for image_path, label_path in scans.parse_pairs(args.real):
      scan, grid = scans.load_pair(image_path, label_path, cfg.spacing)
      try:
        synthjax.validate_labels(grid, cfg, name=label_path)
      except ValueError as e:
        raise UserError(str(e)) from e
      labels_list.append(grid)
      images.append(scan.image)
      real_names.append(image_path)
    real_source = scans.ArraySource(labels_list, images, real_names, cfg.spacing)
    # The real image replaces the generator's intensities; the spatial and intensity
    # stages (bias, gamma, resolution, noise...) then augment it.
    real_cfg = cfg.replace(image_intensity={"prob": 1.0, "enabled": True})

  os.makedirs(args.out, exist_ok=True)
  if main_process and not stored:
    record = {
      "args": {
        k: v
        for k, v in vars(args).items()
        if k not in ("coordinator", "num_processes", "process_id", "debug")
      },
      "synth_config": cfg.to_dict(),
      "model": model_config(args),
      "classes": classes,
      "label_paths": paths,
      "spacing": list(cfg.spacing),
      **runinfo.provenance(paths),
    }
    try:
      atomic_write(os.path.join(args.out, "run.json"), json.dumps(record, indent=1))
    except OSError as e:
      if e.errno not in (errno.ENOSPC, errno.EDQUOT):
        raise
      raise UserError(
        f"{args.out}: no space left on the device for run.json "
        f"({os.strerror(e.errno)}); free some space and run the same command "
        f"again"
      ) from e

  # Model, optimizer, devices.
  net = model.build(model_config(args), len(classes), seed=args.seed)
  graphdef, state = nnx.split(net)
  params = nnx.to_pure_dict(state)
  tx = steps.make_optimizer(args.lr, args.steps, schedule=args.schedule, warmup=args.warmup)
  opt_state = tx.init(params)
  mesh = steps.data_mesh()
  params, opt_state = steps.replicate(mesh, (params, opt_state))
  train_step = steps.make_train_step(
    graphdef,
    tx,
    synth_config=cfg,
    classes=classes,
    dim=args.dim,
    slices_per_volume=args.slices,
    mesh=mesh,
    strength=strength,
  )
  predict = steps.make_predictor(graphdef, dim=args.dim)

  ds = sdata.pipeline(
    source,
    patch_size=cfg.shape,
    batch_size=args.batch // nproc,
    seed=args.seed,
    workers=args.workers,
    patches_per_volume=args.patches_per_volume,
    pad_small=True,
    shard=(pid, nproc) if nproc > 1 else None,
    pad_label=cfg.background,
    transforms=transforms,
  )
  it = iter(ds)
  real_it, real_step = None, None
  if real_source is not None:
    real_ds = sdata.pipeline(
      real_source,
      patch_size=cfg.shape,
      batch_size=args.batch // nproc,
      seed=(args.seed + 1) % (1 << 32),
      workers=0,
      pad_small=True,
      shard=(pid, nproc) if nproc > 1 else None,
      pad_label=cfg.background,
    )
    real_it = iter(real_ds)
    real_step = steps.make_train_step(
      graphdef,
      tx,
      synth_config=real_cfg,
      classes=classes,
      dim=args.dim,
      slices_per_volume=args.slices,
      mesh=mesh,
      strength=strength,
    )
  ckpt = checkpoints.Checkpoints(args.out, real=real_source is not None)
  start = 0
  if args.resume and ckpt.latest_step() is not None:
    start, params, opt_state = ckpt.restore(params, opt_state, it, real_it)
  log = MetricsLog(
    os.path.join(args.out, "metrics.jsonl"),
    keep_until=start if args.resume else None,
    enabled=main_process,
  )

  def draw_curves():
    plot.plot_curves(
      log.path,
      os.path.join(args.out, "curves.png"),
      title=os.path.basename(os.path.abspath(args.out)),
    )

  bar = None
  if main_process and not args.quiet:
    from tqdm import tqdm

    bar = tqdm(total=args.steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
  losses, samples, validations = [], [], []
  step = saved_step = start
  try:
    for step in range(start + 1, args.steps + 1):
      stops.check()
      t0 = time.perf_counter()
      real_now = real_it is not None and step % args.real_every == 0
      local = next(real_it) if real_it is not None and real_now else next(it)
      samples.append(np.asarray(local["index"]))
      if real_now and real_step is not None:
        batch = steps.global_batch(mesh, local, names + ("image",))
        params, opt_state, out = real_step(params, opt_state, batch)
      else:
        batch = steps.global_batch(mesh, local, names)
        params, opt_state, out = train_step(params, opt_state, batch)
      loss = float(steps.to_host(out["loss"]))
      dt = time.perf_counter() - t0
      losses.append(loss)
      log.write(
        {
          "step": step,
          "loss": loss,
          "dice": float(steps.to_host(out["dice"])),
          "samples_per_s": args.batch / dt,
          "seconds": dt,
          **({"strength": float(steps.to_host(out["strength"]))} if "strength" in out else {}),
          **({"real": True} if real_now else {}),
        }
      )
      if bar is not None:
        bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{args.batch / dt:.2f}")
        bar.update(1)
      saved = step % args.ckpt_every == 0 or step == args.steps
      if saved:
        ckpt.save(step, params, opt_state, it, real_it)
        saved_step = step
      evaluate = val_scans and (
        (args.eval_every and step % args.eval_every == 0) or step == args.steps
      )
      if evaluate:
        local_params = jax.device_put(steps.host_tree(params), jax.local_devices()[0])
        result = validate(predict, local_params, val_scans, classes, cfg, args)
        validations.append({"step": step, **result})
        log.write({"step": step, **result})
        ckpt.save_best(step, steps.host_tree(params), result["mean_dice"])
        if bar is not None:
          bar.write(f"step {step}: validation mean Dice {result['mean_dice']:.4f}")
      if (saved or evaluate) and main_process:
        # Redrawn as the run goes, so a long or killed run shows its curves so far.
        draw_curves()
  except OSError as e:
    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
      raise
    kept = (
      f"the checkpoint of step {saved_step} is kept"
      if saved_step
      else "no checkpoint was written yet"
    )
    raise UserError(
      f"{args.out}: no space left on the device at step {step} "
      f"({os.strerror(e.errno)}: {e.filename or e}); {kept}: free some space "
      f"and continue the run with --resume"
    ) from e
  finally:
    if bar is not None:
      bar.close()
    log.close()
    ckpt.close()
    for iterator in (it, real_it):
      close = getattr(iterator, "close", None)
      if close is not None:
        close()
  if main_process and step == start:
    draw_curves()  # nothing left to train (a resume of a finished run)
  return TrainResult(
    step=step,
    losses=losses,
    samples=samples,
    validations=validations,
    params=steps.host_tree(params),
  )


def main(argv: Sequence[str] | None = None) -> int:
  """`synthjax train ARGS...` without the other commands: returns the exit status."""
  from synthjax._src.train import cli

  return cli.main("synthjax train", build_parser(), run, argv)
