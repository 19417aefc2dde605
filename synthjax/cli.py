"""The `synthjax` command: generate datasets, replay samples, preview and inspect label maps,
train a segmentation network and segment real scans with it."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys


class UserError(Exception):
  """An error caused by the user's input: printed as one line, exit status 2."""


def _expand_sources(patterns):
  from synthjax._src.data.sources import expand_paths
  try:
    return expand_paths(patterns)
  except (ValueError, FileNotFoundError) as e:
    raise UserError(str(e)) from e


def _load_sources(args):
  import numpy as np
  from synthjax._src import nifti, phantom, samples
  if args.demo:
    if args.labels:
      raise UserError("give either --demo or LABELS, not both")
    labels, affine = phantom.brain_phantom(tuple(args.demo_shape), args.demo_spacing)
    spacing = (args.demo_spacing,) * 3
    src = {"demo": {"shape": list(args.demo_shape), "spacing": args.demo_spacing},
           "labels_sha256": samples.content_digest(labels)}
    return [(labels, affine, src)], spacing
  if not args.labels:
    raise UserError("no label maps given: pass LABELS (files, folders or globs) or --demo")
  sources, spacing = [], None
  for path in _expand_sources(args.labels):
    try:
      labels, affine, sp = nifti.load_label_map(path)
    except (ValueError, FileNotFoundError) as e:
      raise UserError(str(e)) from e
    if spacing is None:
      spacing = sp
    elif not np.allclose(sp, spacing, rtol=1e-4):
      raise UserError(f"{path}: spacing {sp} differs from the first label map's {spacing}")
    sources.append((labels, affine, {"path": os.path.abspath(path),
                                     "labels_sha256": samples.content_digest(labels)}))
  return sources, spacing


def _make_config(args, label_values, shape, spacing):
  from synthjax import presets
  from synthjax._src.config import SynthConfig
  if args.config:
    try:
      with open(args.config) as f:
        cfg = SynthConfig.from_dict(json.load(f))
    except (OSError, ValueError, TypeError) as e:
      raise UserError(f"{args.config}: not a valid config ({e})") from e
    return cfg
  if args.preset == "fetal":
    return presets.fetal(tuple(label_values), tuple(shape), tuple(spacing),
                         seeds=bool(getattr(args, "seeds", None)))
  if getattr(args, "seeds", None):
    raise UserError("--seeds needs --preset fetal or a --config using seed subclusters")
  build = {"synthseg": presets.synthseg, "anatomix_views": presets.anatomix_views}[args.preset]
  return build(tuple(label_values), tuple(shape), tuple(spacing))


def _sources_and_config(args):
  """Loads the label maps, builds the config on their union of labels, validates them."""
  import numpy as np
  sources, spacing = _load_sources(args)
  values = sorted(set().union(*(np.unique(s[0]).tolist() for s in sources)))
  shape = tuple(args.shape) if args.shape else sources[0][0].shape
  config = _make_config(args, values, shape, spacing)
  _validate_sources(sources, config)
  return sources, config


def _validate_sources(sources, config):
  """Refuses label values the config does not know; warns about maps that make a useless
  dataset (one label) or whose background is not label 0."""
  import numpy as np
  import synthjax
  for labels, _, src in sources:
    name = src.get("path", "demo")
    try:
      synthjax.validate_labels(labels, config, name=name)
    except ValueError as e:
      raise UserError(str(e)) from e
    present = np.unique(labels)
    if present.size == 1:
      print(f"synthjax: warning: {name}: holds a single label value ({int(present[0])}); every "
            "sample will show one class", file=sys.stderr)
    if config.background != 0 and 0 not in config.label_values:
      print(f"synthjax: warning: {name}: has no label 0, so label {config.background} is taken "
            "as the background (padding, and the label zeroed by prob_background_zero)",
            file=sys.stderr)


def _check_memory(config, sources, *, batch=1, extra_bytes=0):
  """Refuses, before compiling or creating anything, a shape that cannot fit (`memory`)."""
  from synthjax._src import memory
  largest = max((s[0].shape for s in sources), key=math.prod)
  try:
    memory.check_fits(config, largest, batch=batch, extra_bytes=extra_bytes)
  except ValueError as e:
    raise UserError(str(e)) from e


def _load_seeds(sources, config, seeds_root):
  """Adds each label map's seed maps to its source (FetalSynthGen layout under seeds_root)."""
  from synthjax._src import samples
  from synthjax._src.data import seeds as seed_io
  sc = config.subclusters
  uses = sc.enabled and sc.source == "seeds"
  if not uses:
    if seeds_root:
      raise UserError("--seeds given but the config's subclusters do not use seed maps")
    return [(lab, aff, src, None) for lab, aff, src in sources]
  if not seeds_root:
    raise UserError("the config uses seed subclusters: pass --seeds DIR (FetalSynthGen's "
                    "derivatives/seeds folder)")
  out = []
  for lab, aff, src in sources:
    if "path" not in src:
      raise UserError("seed maps need label map files, not --demo")
    try:
      seeds = seed_io.load_seed_maps(src["path"], seeds_root, num_subclusters=sc.num_subclusters[1],
                                     num_meta=sc.num_meta)
    except (ValueError, FileNotFoundError) as e:
      raise UserError(str(e)) from e
    if seeds.shape[1:] != lab.shape:
      raise UserError(f"{src['path']}: seed maps have shape {seeds.shape[1:]}, the label map "
                      f"{lab.shape}")
    out.append((lab, aff, dict(src, seeds=os.path.abspath(seeds_root),
                               seeds_sha256=samples.content_digest(seeds)), seeds))
  return out


PRESETS = ("synthseg", "fetal", "anatomix_views")


def _versions():
  import jax
  import numpy as np
  import synthjax
  return {"synthjax": synthjax.__version__, "jax": jax.__version__, "numpy": np.__version__}


def _start_run(out, manifest, overwrite):
  """Makes OUT ready for this run and records its manifest (`runs.start_run`); the folder's
  lock is held until the process ends."""
  from synthjax._src import runs
  global _RUN_LOCK
  _RUN_LOCK = runs.start_run(out, manifest, overwrite)


_RUN_LOCK = None


def _release_run_lock():
  global _RUN_LOCK
  if _RUN_LOCK is not None:
    _RUN_LOCK.close()
    _RUN_LOCK = None


def _write_all(writer, n, make, what, out, quiet):
  """Writes samples 0..n-1 through `write_dataset` (the one resume rule: a sample whose
  params JSON exists is complete and skipped) and says what it did."""
  from synthjax._src.data import writers
  written = writers.write_dataset(writer, range(n), make, progress=not quiet)
  skipped = n - len(written)
  print(f"wrote {len(written)} {what} to {out}" + (f" ({skipped} already there)" if skipped else ""))


def cmd_generate(args):
  import numpy as np
  import synthjax
  from synthjax._src import runs, samples
  from synthjax._src.data import arrayrecord, nifti_folder

  if args.shape and min(args.shape) < 2:
    raise UserError(f"--shape sizes must be >= 2, got {args.shape}")
  if args.workers < 1:
    raise UserError(f"--workers must be >= 1, got {args.workers}")
  sources, config = _sources_and_config(args)
  sources = _load_seeds(sources, config, args.seeds)
  # Host copies awaiting the writer threads: an image and a seg per pending sample.
  _check_memory(config, sources, extra_bytes=8 * math.prod(config.shape) * (args.workers + 1))

  manifest = {"format": runs.RUN_FORMAT, "command": "generate", "seed": args.seed,
              "config": config.to_dict(), "sources": [s[2] for s in sources],
              "output_format": args.format,
              "source_of_sample": "sources[index % len(sources)]", "n": args.n,
              "versions": _versions()}
  out = args.output
  _start_run(out, manifest, args.overwrite)

  if args.format == "nifti":
    writer = nifti_folder.NiftiWriter(out, max_pending=args.workers)
  else:
    writer = arrayrecord.ArrayRecordWriter(os.path.join(out, runs.ARRAYRECORD_PREFIX))

  def make(i):
    labels, affine, src, seeds = sources[i % len(sources)]
    pkey, skey = samples.sample_keys(args.seed, i)
    params = synthjax.sample_params(pkey, config)
    image, seg = synthjax.synthesize(skey, params, labels, config, seeds=seeds)
    return {"index": i, "image": np.asarray(image), "seg": np.asarray(seg, np.int32),
            "affine": samples.output_affine(affine, labels.shape, config.shape,
                                            np.asarray(params["crop"]["position"])),
            "sidecar": samples.make_sidecar(seed=args.seed, index=i, synth_key=skey,
                                            params_key=pkey, params=params, config=config,
                                            source=src, version=synthjax.__version__)}

  _write_all(writer, args.n, make, "samples", out, args.quiet)


def cmd_views(args):
  import numpy as np
  import synthjax
  from synthjax._src import runs, samples
  from synthjax._src.data import nifti_folder

  sources, config = _sources_and_config(args)
  _check_memory(config, sources, batch=2)
  shared = not args.independent_spatial
  manifest = {"format": runs.RUN_FORMAT, "command": "views", "seed": args.seed,
              "config": config.to_dict(), "sources": [src for _, _, src in sources],
              "output_format": "nifti-views", "shared_spatial": shared,
              "source_of_sample": "sources[index % len(sources)]", "n": args.n,
              "versions": _versions()}
  out = args.output
  _start_run(out, manifest, args.overwrite)

  def make(i):
    stem = os.path.join(out, f"sample_{i:05d}")
    labels, affine, src = sources[i % len(sources)]
    pkey, skey = samples.sample_keys(args.seed, i)
    params = synthjax.sample_view_params(pkey, config, shared_spatial=shared)
    images, segs = synthjax.synthesize_views(skey, params, labels, config, shared_spatial=shared)
    files = {}
    for v in range(2):
      aff = samples.output_affine(affine, labels.shape, config.shape,
                                  np.asarray(params["crop"]["position"][v]))
      files[f"{stem}_view{v}_image.nii.gz"] = (np.asarray(images[v]), aff)
      if v == 0 or not shared:
        name = f"{stem}_seg.nii.gz" if shared else f"{stem}_view{v}_seg.nii.gz"
        files[name] = (np.asarray(segs[v], np.int32), aff)
    side = samples.make_sidecar(seed=args.seed, index=i, synth_key=skey, params_key=pkey,
                                params=params, config=config, source=src,
                                version=synthjax.__version__, shared_spatial=shared)
    return {"index": i, "files": files, "sidecar": side}

  _write_all(nifti_folder.NiftiFilesWriter(out), args.n, make, "view pairs", out, True)


def cmd_ensemble(args):
  import numpy as np
  import synthjax
  from synthjax import ensembles
  from synthjax._src import runs, samples
  from synthjax._src.data import nifti_folder

  overrides = {"shape": tuple(args.shape)}
  if args.num_templates:
    overrides["num_templates"] = tuple(args.num_templates)
  try:
    cfg = ensembles.EnsembleConfig(**overrides)
  except (ValueError, TypeError) as e:
    raise UserError(str(e)) from e
  templates, paths = None, None
  if args.templates:
    try:
      templates, paths = ensembles.load_templates(args.templates, crop_foreground=True,
                                                  return_paths=True)
    except (ValueError, FileNotFoundError) as e:
      raise UserError(str(e)) from e
  manifest = {"format": runs.RUN_FORMAT, "command": "ensemble", "seed": args.seed,
              "config": cfg.to_dict(), "sources": paths or "random shapes",
              "output_format": "nifti-labels", "n": args.n, "versions": _versions()}
  out = args.output
  _start_run(out, manifest, args.overwrite)

  def make(i):
    stem = os.path.join(out, f"sample_{i:05d}")
    pkey, skey = samples.sample_keys(args.seed, i)
    params = ensembles.sample_ensemble_params(pkey, cfg)
    labels = np.asarray(ensembles.render_ensemble(skey, params, templates, cfg), np.int32)
    side = samples.make_ensemble_sidecar(seed=args.seed, index=i, synth_key=skey,
                                         params_key=pkey, params=params, config=cfg,
                                         templates=paths, version=synthjax.__version__)
    return {"index": i, "files": {stem + "_labels.nii.gz": (labels, np.eye(4))},
            "sidecar": side}

  _write_all(nifti_folder.NiftiFilesWriter(out), args.n, make, "label ensembles", out, True)


def cmd_preview(args):
  import numpy as np
  from synthjax._src import preview
  args.demo = args.labels == "demo"
  args.labels = [] if args.demo else [args.labels]
  sources, spacing = _load_sources(args)
  labels = sources[0][0]
  values = sorted(np.unique(labels).tolist())
  shape = tuple(args.shape) if args.shape else labels.shape
  config = _make_config(args, values, shape, spacing)
  _validate_sources(sources, config)
  _check_memory(config, sources)
  if os.path.exists(args.output) and not args.overwrite:
    raise UserError(f"{args.output}: exists; pass --overwrite to replace it")
  rgb = preview.preview(labels, config, n=args.n, seed=args.seed)
  tmp = args.output + ".tmp-preview"
  preview.save_png(tmp, rgb)
  os.replace(tmp, args.output)
  print(f"wrote {args.output} ({rgb.shape[1]}x{rgb.shape[0]} pixels, {args.n} samples)")


def cmd_info(args):
  import numpy as np
  import nibabel as nib
  from synthjax._src import nifti, presets
  try:
    labels, affine, spacing = nifti.load_label_map(args.file)
  except (ValueError, FileNotFoundError) as e:
    raise UserError(str(e)) from e
  values, counts = np.unique(labels, return_counts=True)
  print(f"file:        {args.file}")
  print(f"shape:       {labels.shape}")
  print(f"spacing:     {tuple(round(s, 4) for s in spacing)} mm")
  print(f"orientation: {''.join(nib.aff2axcodes(affine))}")
  print(f"labels:      {len(values)} values")
  for v, c in zip(values.tolist(), counts.tolist()):
    print(f"  {v:>6d}  {c:>10d} voxels  {100.0 * c / labels.size:6.2f}%")
  for name, known in (("synthseg", presets.FREESURFER_LABELS), ("fetal", presets.FETA_LABELS)):
    unknown = sorted(set(values.tolist()) - set(known))
    verdict = "knows every label" if not unknown else f"does not know {unknown}"
    print(f"preset {name + ':':<10s}{verdict}")
  pairs = presets.freesurfer_flip_pairs(values.tolist())
  print(f"left/right pairs (FreeSurfer): {list(pairs) if pairs else 'none'}")


def cmd_replay(args):
  """Replays through `synthjax.replay`; a changed input is refused unless --force."""
  import warnings
  from synthjax._src import nifti, replay
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", replay.InputChangedWarning)
    try:
      sample = replay.load_sample(args.params, force=args.force)
    except replay.InputChangedError as e:
      raise UserError(f"{e.detail}; pass --force to replay anyway") from e
    except (ValueError, FileNotFoundError) as e:
      raise UserError(str(e)) from e
  for w in caught:
    if isinstance(w.message, replay.InputChangedWarning):
      print(f"synthjax replay: warning: {w.message.detail}; replaying anyway (--force)",
            file=sys.stderr)
    else:
      warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
  image, seg, affine = replay.replay(sample)
  index = sample.index
  os.makedirs(args.output, exist_ok=True)
  stem = os.path.join(args.output, f"sample_{index:05d}")
  nifti.save_nifti(stem + "_image.nii.gz", image, affine, overwrite=args.overwrite)
  nifti.save_nifti(stem + "_seg.nii.gz", seg, affine, overwrite=args.overwrite)
  print(f"replayed sample {index} to {stem}_image.nii.gz")


def _run_recipe(name, args):
  """Runs the recipe's driver `synthjax._src.train.<name>` on the parsed arguments; its bad
  input (and a missing `train` extra) becomes a `UserError`."""
  import importlib
  from synthjax._src import scans
  from synthjax._src.train import cli as recipe
  driver = importlib.import_module(f"synthjax._src.train.{name}")
  # The recipe records its arguments in run.json and compares them on --resume: only its own.
  own = argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in ("command", "func")})
  try:
    recipe.require_extra()
    if name == "train":
      driver.run(own, driver.build_parser())
    else:
      driver.run(own)
  except (recipe.UserError, scans.ScanError) as e:
    raise UserError(str(e)) from e


def cmd_train(args):
  _run_recipe("train", args)


def cmd_segment(args):
  _run_recipe("segment", args)


def _option(*flags, parents=(), **kwargs):
  """A parent parser (for `parents=`) declaring one option, after its own `parents`."""
  parser = argparse.ArgumentParser(add_help=False, parents=list(parents))
  parser.add_argument(*flags, **kwargs)
  return parser


def _shared_options():
  """Parent parsers of the options several subcommands take, each declared once here."""
  demo_grid = _option("--demo-shape", type=int, nargs=3, default=(96, 96, 96),
                      help=argparse.SUPPRESS)
  demo_grid = _option("--demo-spacing", type=float, default=2.0, help=argparse.SUPPRESS,
                      parents=[demo_grid])
  return {
      "seed": _option("--seed", type=int, default=0),
      "demo_grid": demo_grid,  # preview takes 'demo' as LABELS instead of --demo
      "demo": _option("--demo", action="store_true", help="use the built-in brain phantom",
                      parents=[demo_grid]),
      "quiet": _option("--quiet", action="store_true", help="no progress bar"),
      "no_cache": _option("--no-cache", action="store_true",
                          help="do not keep compiled programs in ~/.cache/synthjax "
                               "(also: SYNTHJAX_NO_CACHE=1)"),
      "overwrite_run": _option("--overwrite", action="store_true",
                               help="replace a previous run of another command in OUT"),
      "shape": lambda **kw: _option("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), **kw),
  }


def _run_arguments(*, what: str, preset: str):
  """A parent parser of the arguments every command that renders label maps takes."""
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument("labels", nargs="*", metavar="LABELS",
                      help="label maps: files, folders or globs")
  parser.add_argument("-o", "--output", required=True, help="output folder")
  parser.add_argument("-n", type=int, default=1, help=f"number of {what}")
  parser.add_argument("--preset", choices=PRESETS, default=preset)
  parser.add_argument("--config", help="a config JSON (SynthConfig.to_json) instead of a preset")
  return parser


def build_parser():
  parser = argparse.ArgumentParser(
      prog="synthjax", description="Synthetic images from label maps, with exact replay.")
  parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
  sub = parser.add_subparsers(dest="command", required=True)
  o = _shared_options()

  g = sub.add_parser("generate", help="write N synthetic samples (image, seg, params JSON)",
                     parents=[_run_arguments(what="samples", preset="synthseg"), o["seed"],
                              o["shape"](help="output shape (default: the first label map's)"),
                              o["demo"], o["overwrite_run"], o["quiet"], o["no_cache"]])
  g.add_argument("--seeds", metavar="DIR",
                 help="FetalSynthGen seed maps (its derivatives/seeds folder): sub-label "
                      "intensity classes from seeds (with --preset fetal)")
  g.add_argument("--workers", type=int, default=4,
                 help="background threads writing (compressing) samples")
  g.add_argument("--format", choices=("nifti", "arrayrecord"), default="nifti")
  g.set_defaults(func=cmd_generate)

  v = sub.add_parser("preview", help="PNG montage of the input labels and N samples",
                     parents=[o["seed"], o["shape"](), o["demo_grid"], o["no_cache"]])
  v.add_argument("labels", metavar="LABELS", help="a label map, or 'demo' for the phantom")
  v.add_argument("-o", "--output", required=True, help="the PNG to write")
  v.add_argument("-n", type=int, default=8, help="number of samples")
  v.add_argument("--preset", choices=PRESETS, default="synthseg")
  v.add_argument("--config", help="a config JSON instead of a preset")
  v.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
  v.set_defaults(func=cmd_preview)

  e = sub.add_parser("ensemble", help="write N synthetic label maps (anatomix label ensembles)",
                     parents=[o["seed"], o["shape"](default=(128, 128, 128)),
                              o["overwrite_run"], o["no_cache"]])
  e.add_argument("-o", "--output", required=True, help="output folder")
  e.add_argument("-n", type=int, default=1, help="number of label maps")
  e.add_argument("--templates", nargs="+", metavar="PATH",
                 help="template label maps (files, folders or globs); default: random shapes")
  e.add_argument("--num-templates", type=int, nargs=2, metavar=("LO", "HI"),
                 help="range of the number of templates per map (default 20 39)")
  e.set_defaults(func=cmd_ensemble)

  w = sub.add_parser("views", help="write N pairs of contrastive views (anatomix step 2)",
                     parents=[_run_arguments(what="pairs", preset="anatomix_views"), o["seed"],
                              o["shape"](), o["demo"], o["overwrite_run"], o["no_cache"]])
  w.add_argument("--independent-spatial", action="store_true",
                 help="draw the spatial transform per view (default: shared, voxel-aligned)")
  w.set_defaults(func=cmd_views)

  i = sub.add_parser("info", help="shape, spacing, orientation and labels of a label map")
  i.add_argument("file", help="a NIfTI label map")
  i.set_defaults(func=cmd_info)

  r = sub.add_parser("replay", help="regenerate one sample bit for bit from its params JSON",
                     parents=[o["no_cache"]])
  r.add_argument("params", help="a sample_XXXXX_params.json written by generate")
  r.add_argument("-o", "--output", required=True, help="output folder")
  r.add_argument("--overwrite", action="store_true", help="replace existing files")
  r.add_argument("--force", action="store_true",
                 help="replay even if the label map or seed maps changed since the sample "
                      "was written")
  r.set_defaults(func=cmd_replay)

  # The recipe's own parsers add these arguments too (--no-cache included), so the two
  # command lines cannot drift apart. Importing the drivers needs no `train` extra.
  from synthjax._src.train import segment, train
  for name, driver, func, text in (
      ("train", train, cmd_train, "train a U-Net on synthetic images (the 'train' extra)"),
      ("segment", segment, cmd_segment, "segment real scans with a trained run")):
    t = sub.add_parser(name, help=text, description=driver.__doc__.splitlines()[0])
    driver.add_arguments(t)
    t.set_defaults(func=func)
    for action in t._actions:
      if action.dest == "debug":
        # Its default would overwrite `synthjax --debug train`'s: without one, either works.
        action.default = argparse.SUPPRESS
  return parser


def main(argv=None):
  from synthjax._src.stops import Terminated, check, handled
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    with handled():
      _run(args)
      check()  # a stop swallowed after the last unit of work still reports as one
  except (KeyboardInterrupt, Terminated) as e:
    what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
    then = {"train": "checkpoints are kept, re-run the same command with --resume to "
                     "continue the run",
            "segment": "finished scans are kept, re-run with the remaining scans"}.get(
                args.command, "finished files are kept, re-run the same command to complete "
                              "the set")
    print(f"synthjax {args.command}: {what}; {then}", file=sys.stderr)
    return 143 if isinstance(e, Terminated) else 130
  except Exception as e:  # one line for the user; --debug shows the traceback
    if args.debug:
      raise
    from synthjax._src.runs import FolderError
    known = isinstance(e, (UserError, FolderError, FileExistsError, FileNotFoundError))
    text = str(e) if known else f"{type(e).__name__}: {e}"
    print(f"synthjax {args.command}: error: {text}", file=sys.stderr)
    return 2
  finally:
    _release_run_lock()
  return 0


def _run(args):
  seed = getattr(args, "seed", 0)
  if not 0 <= seed < (1 << 32):
    raise UserError(f"--seed must be in [0, 2**32), got {seed}")
  if getattr(args, "n", 1) < 1:  # generate, preview, ensemble, views
    raise UserError(f"-n must be >= 1, got {args.n}")
  if getattr(args, "no_cache", None) is False:
    from synthjax._src import compile_cache
    compile_cache.enable()
  args.func(args)


if __name__ == "__main__":
  sys.exit(main())
