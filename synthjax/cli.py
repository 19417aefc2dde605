"""The `synthjax` command: generate datasets, replay samples, preview and inspect label maps,
train a segmentation network and segment real scans with it: argparse over the library
(`synthjax.datasets`, `synthjax.replay`, `synthjax.preview`, the training recipe)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

# An error in the user's input, the library's or the command line's: one line, exit status 2.
from synthjax._src.inputs import InputError as UserError


def _sources_and_config(args):
  """Loads the label maps, builds the config on their union of labels, validates them."""
  from synthjax._src import inputs

  if args.demo:
    if args.labels:
      raise UserError("give either --demo or LABELS, not both")
    sources, spacing = inputs.demo_sources(tuple(args.demo_shape), args.demo_spacing)
  elif not args.labels:
    raise UserError("no label maps given: pass LABELS (files, folders or globs) or --demo")
  else:
    sources, spacing = inputs.load_sources(args.labels)
    assert spacing is not None  # LABELS named at least one file (or load_sources raised)
  shape = tuple(args.shape) if args.shape else sources[0].labels.shape
  seeds = bool(getattr(args, "seeds", None))
  if seeds and not args.config and args.preset != "fetal":
    raise UserError("--seeds needs --preset fetal or a --config using seed subclusters")
  config = (
    inputs.load_config(args.config)
    if args.config
    else inputs.preset_config(
      args.preset, inputs.label_values(sources), shape, spacing, seeds=seeds
    )
  )
  inputs.check_sources(sources, config)
  return sources, config


def _with_seed_maps(args, sources, config):
  """The sources with their seed maps when the config uses them (`--seeds DIR`)."""
  from synthjax._src import inputs

  uses = inputs.uses_seed_maps(config)
  if args.seeds and not uses:
    raise UserError("--seeds given but the config's subclusters do not use seed maps")
  if uses and not args.seeds:
    raise UserError(
      "the config uses seed subclusters: pass --seeds DIR (FetalSynthGen's "
      "derivatives/seeds folder)"
    )
  if uses and args.demo:
    raise UserError("seed maps need label map files, not --demo")
  return inputs.with_seed_maps(sources, config, args.seeds) if uses else sources


def _report(written, n, what, out):
  skipped = f" ({n - len(written)} already there)" if len(written) < n else ""
  print(f"wrote {len(written)} {what} to {out}{skipped}")


def _shard_size(args):
  """How many of the run's `-n` samples this process writes."""
  return args.n if args.shard is None else len(range(args.shard[0], args.n, args.shard[1]))


def cmd_generate(args: argparse.Namespace) -> int:
  """`synthjax generate`: writes `-n` samples of the label maps (or the demo phantom) to
  `--output` through `synthjax.datasets.generate`, resuming a run interrupted there; with
  `--shard I/N` only the samples `j % N == I`; with `--check`, writes nothing and returns 1
  unless the run's `-n` samples are all complete."""
  from synthjax._src import datasets

  if args.shape and min(args.shape) < 2:
    raise UserError(f"--shape sizes must be >= 2, got {args.shape}")
  if args.workers < 1:
    raise UserError(f"--workers must be >= 1, got {args.workers}")
  if args.check and (args.shard or args.overwrite):
    raise UserError("--check checks the whole run: give it without --shard and --overwrite")
  sources, config = _sources_and_config(args)
  sources = _with_seed_maps(args, sources, config)
  if args.check:
    from synthjax._src import runs

    manifest = datasets.generate_manifest(
      sources, config, n=args.n, seed=args.seed, output_format=args.format
    )
    status = runs.check_run(args.output, manifest, n=args.n)
    print(status.describe())
    return 0 if status.is_complete else 1
  written = datasets.generate(
    args.output,
    sources,
    config,
    n=args.n,
    seed=args.seed,
    output_format=args.format,
    workers=args.workers,
    overwrite=args.overwrite,
    progress=not args.quiet,
    shard=args.shard,
  )
  _report(written, _shard_size(args), "samples", args.output)
  return 0


def cmd_views(args: argparse.Namespace) -> None:
  """`synthjax views`: writes `-n` pairs of contrastive views to `--output`
  (`synthjax.datasets.generate_views`)."""
  from synthjax._src import datasets

  sources, config = _sources_and_config(args)
  written = datasets.generate_views(
    args.output,
    sources,
    config,
    n=args.n,
    seed=args.seed,
    shared_spatial=not args.independent_spatial,
    overwrite=args.overwrite,
  )
  _report(written, args.n, "view pairs", args.output)


def cmd_ensemble(args: argparse.Namespace) -> None:
  """`synthjax ensemble`: writes `-n` synthetic label maps to `--output`
  (`synthjax.datasets.generate_ensembles`); a bad `EnsembleConfig` field is a `UserError`."""
  from synthjax import ensembles
  from synthjax._src import datasets

  overrides: dict[str, Any] = {"shape": tuple(args.shape)}
  if args.num_templates:
    overrides["num_templates"] = tuple(args.num_templates)
  try:
    cfg = ensembles.EnsembleConfig(**overrides)
  except (ValueError, TypeError) as e:
    raise UserError(str(e)) from e
  written = datasets.generate_ensembles(
    args.output, cfg, n=args.n, seed=args.seed, templates=args.templates, overwrite=args.overwrite
  )
  _report(written, args.n, "label ensembles", args.output)


def cmd_preview(args: argparse.Namespace) -> None:
  """`synthjax preview`: writes a PNG montage of a label map (or `demo`) and `-n` samples.

  The PNG is written under a temporary name and renamed, so an existing one is never left
  half-written.
  """
  from synthjax._src import inputs, preview

  args.demo = args.labels == "demo"
  args.labels = [] if args.demo else [args.labels]
  sources, config = _sources_and_config(args)
  inputs.check_fits(config, sources)
  if os.path.exists(args.output) and not args.overwrite:
    raise UserError(f"{args.output}: exists; pass --overwrite to replace it")
  rgb = preview.preview(sources[0].labels, config, n=args.n, seed=args.seed)
  tmp = args.output + ".tmp-preview"
  preview.save_png(tmp, rgb)
  os.replace(tmp, args.output)
  print(f"wrote {args.output} ({rgb.shape[1]}x{rgb.shape[0]} pixels, {args.n} samples)")


def cmd_info(args: argparse.Namespace) -> None:
  """`synthjax info`: prints a label map's grid and labels (`synthjax.datasets.label_map_info`),
  or how complete a run folder is (`synthjax.datasets.check_run`)."""
  from synthjax._src import label_info, runs

  if os.path.isdir(args.file):
    print(runs.check_run(args.file).describe())
    return
  print(label_info.format_label_map_info(label_info.label_map_info(args.file)))


def cmd_replay(args: argparse.Namespace) -> None:
  """Replays through `synthjax.replay`; a changed input is refused unless --force."""
  import warnings

  from synthjax._src import replay

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
      print(
        f"synthjax replay: warning: {w.message.detail}; replaying anyway (--force)", file=sys.stderr
      )
    else:
      warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
  image_path, _ = replay.replay_to(sample, args.output, overwrite=args.overwrite)
  print(f"replayed sample {sample.index} to {image_path}")


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
    driver.run(own, *([driver.build_parser()] if name == "train" else []))
  except (recipe.UserError, scans.ScanError) as e:
    raise UserError(str(e)) from e


def build_parser() -> argparse.ArgumentParser:
  """The `synthjax` command line (`synthjax._src.cli_parser`), running the commands above."""
  from synthjax._src import cli_parser

  return cli_parser.build_parser(
    {
      "generate": cmd_generate,
      "preview": cmd_preview,
      "ensemble": cmd_ensemble,
      "views": cmd_views,
      "info": cmd_info,
      "replay": cmd_replay,
      "recipe": _run_recipe,
    }
  )


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the `synthjax` command line (`argv`, default `sys.argv[1:]`); returns the exit status.

  0 on success; 1 when `generate --check` finds samples missing; 2 on an error, printed as
  one line (with `--debug` it is raised instead, with its traceback); 130 on Ctrl-C and 143
  on SIGTERM, after a line saying what was kept.
  """
  from synthjax._src.stops import Terminated, check, handled, report

  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    with handled():
      code = _run(args)
      check()  # a stop swallowed after the last unit of work still reports as one
  except (KeyboardInterrupt, Terminated) as e:
    return report(f"synthjax {args.command}", args.command, e)
  except Exception as e:  # one line for the user; --debug shows the traceback
    if args.debug:
      raise
    from synthjax._src.runs import FolderError

    known = isinstance(e, (UserError, FolderError, FileExistsError, FileNotFoundError))
    text = str(e) if known else f"{type(e).__name__}: {e}"
    print(f"synthjax {args.command}: error: {text}", file=sys.stderr)
    return 2
  return code or 0


def _run(args):
  seed = getattr(args, "seed", 0)
  if not 0 <= seed < (1 << 32):
    raise UserError(f"--seed must be in [0, 2**32), got {seed}")
  if getattr(args, "n", 1) < 1:  # generate, preview, ensemble, views
    raise UserError(f"-n must be >= 1, got {args.n}")
  if getattr(args, "no_cache", None) is False:
    from synthjax._src import compile_cache

    compile_cache.enable()
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
