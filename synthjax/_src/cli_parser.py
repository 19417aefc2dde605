"""The grammar of the `synthjax` command line: its subcommands, their options and their
help. The commands themselves are `synthjax.cli`'s `cmd_*` functions, passed in by name."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping

from synthjax._src.inputs import PRESETS


def _shard_option(text: str) -> tuple[int, int]:
  """`--shard I/N` as `(I, N)`, with `0 <= I < N`."""
  try:
    i, n = (int(v) for v in text.split("/"))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/4), got {text!r}") from None
  if not 0 <= i < n:
    raise argparse.ArgumentTypeError(f"I/N needs 0 <= I < N, got {text!r}")
  return i, n


def _option(*flags, parents=(), **kwargs):
  """A parent parser (for `parents=`) declaring one option, after its own `parents`."""
  parser = argparse.ArgumentParser(add_help=False, parents=list(parents))
  parser.add_argument(*flags, **kwargs)
  return parser


def _cache_parent():
  """`--no-cache` as the recipe's commands declare it, as a parent parser."""
  from synthjax._src.train.cli import add_cache_option

  parser = argparse.ArgumentParser(add_help=False)
  add_cache_option(parser)
  return parser


def _shared_options():
  """Parent parsers of the options several subcommands take, each declared once here."""
  demo_grid = _option(
    "--demo-shape", type=int, nargs=3, default=(96, 96, 96), help=argparse.SUPPRESS
  )
  demo_grid = _option(
    "--demo-spacing", type=float, default=2.0, help=argparse.SUPPRESS, parents=[demo_grid]
  )
  return {
    "seed": _option("--seed", type=int, default=0),
    "demo_grid": demo_grid,  # preview takes 'demo' as LABELS instead of --demo
    "demo": _option(
      "--demo", action="store_true", help="use the built-in brain phantom", parents=[demo_grid]
    ),
    "quiet": _option("--quiet", action="store_true", help="no progress bar"),
    "no_cache": _cache_parent(),
    "overwrite_run": _option(
      "--overwrite", action="store_true", help="replace a previous run of another command in OUT"
    ),
    "shape": lambda **kw: _option("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), **kw),
  }


def _run_arguments(*, what: str, preset: str):
  """A parent parser of the arguments every command that renders label maps takes."""
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument(
    "labels", nargs="*", metavar="LABELS", help="label maps: files, folders or globs"
  )
  parser.add_argument("-o", "--output", required=True, help="output folder")
  parser.add_argument("-n", type=int, default=1, help=f"number of {what}")
  parser.add_argument("--preset", choices=PRESETS, default=preset)
  parser.add_argument("--config", help="a config JSON (SynthConfig.to_json) instead of a preset")
  return parser


def _rendering(o, *, what: str, preset: str, shape_help: str | None = None):
  """The parent parsers of the commands that render label maps (`generate`, `views`)."""
  shape = o["shape"](help=shape_help) if shape_help else o["shape"]()
  return [_run_arguments(what=what, preset=preset), o["seed"], shape, o["demo"], o["overwrite_run"]]


def build_parser(commands: Mapping[str, Callable]) -> argparse.ArgumentParser:
  """The `synthjax` command line: one subcommand per entry of `commands` (`generate`,
  `preview`, `ensemble`, `views`, `info`, `replay`), plus the recipe's `train` and `segment`,
  whose arguments come from their own drivers (so that `synthjax train` and the driver's own
  entry point take the same ones) and which run through `commands["recipe"](name, args)`.

  Each subcommand's parsed arguments carry the function that runs it as `func`.
  """
  parser = argparse.ArgumentParser(
    prog="synthjax", description="Synthetic images from label maps, with exact replay."
  )
  parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
  sub = parser.add_subparsers(dest="command", required=True)
  o = _shared_options()

  g = sub.add_parser(
    "generate",
    help="write N synthetic samples (image, seg, params JSON)",
    parents=[
      *_rendering(
        o,
        what="samples",
        preset="synthseg",
        shape_help="output shape (default: the first label map's)",
      ),
      o["quiet"],
      o["no_cache"],
    ],
  )
  g.add_argument(
    "--seeds",
    metavar="DIR",
    help="FetalSynthGen seed maps (its derivatives/seeds folder): sub-label "
    "intensity classes from seeds (with --preset fetal)",
  )
  g.add_argument(
    "--workers", type=int, default=4, help="background threads writing (compressing) samples"
  )
  g.add_argument("--format", choices=("nifti", "arrayrecord"), default="nifti")
  g.add_argument(
    "--shard",
    type=_shard_option,
    metavar="I/N",
    help="write only the samples j with j %% N == I (0-based), alongside the other shards' "
    "processes in the same OUT (a SLURM array, a Kubernetes indexed job)",
  )
  g.add_argument(
    "--check",
    action="store_true",
    help="write nothing; exit 0 if OUT holds all -n samples of this run, else 1 (naming the "
    "missing ones)",
  )
  g.set_defaults(func=commands["generate"])

  v = sub.add_parser(
    "preview",
    help="PNG montage of the input labels and N samples",
    parents=[o["seed"], o["shape"](), o["demo_grid"], o["no_cache"]],
  )
  v.add_argument("labels", metavar="LABELS", help="a label map, or 'demo' for the phantom")
  v.add_argument("-o", "--output", required=True, help="the PNG to write")
  v.add_argument("-n", type=int, default=8, help="number of samples")
  v.add_argument("--preset", choices=PRESETS, default="synthseg")
  v.add_argument("--config", help="a config JSON instead of a preset")
  v.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
  v.set_defaults(func=commands["preview"])

  e = sub.add_parser(
    "ensemble",
    help="write N synthetic label maps (anatomix label ensembles)",
    parents=[o["seed"], o["shape"](default=(128, 128, 128)), o["overwrite_run"], o["no_cache"]],
  )
  e.add_argument("-o", "--output", required=True, help="output folder")
  e.add_argument("-n", type=int, default=1, help="number of label maps")
  e.add_argument(
    "--templates",
    nargs="+",
    metavar="PATH",
    help="template label maps (files, folders or globs); default: random shapes",
  )
  e.add_argument(
    "--num-templates",
    type=int,
    nargs=2,
    metavar=("LO", "HI"),
    help="range of the number of templates per map (default 20 39)",
  )
  e.set_defaults(func=commands["ensemble"])

  w = sub.add_parser(
    "views",
    help="write N pairs of contrastive views (anatomix step 2)",
    parents=[*_rendering(o, what="pairs", preset="anatomix_views"), o["no_cache"]],
  )
  w.add_argument(
    "--independent-spatial",
    action="store_true",
    help="draw the spatial transform per view (default: shared, voxel-aligned)",
  )
  w.set_defaults(func=commands["views"])

  i = sub.add_parser(
    "info",
    help="shape, spacing, orientation and labels of a label map, or how complete a run folder is",
  )
  i.add_argument("file", help="a NIfTI label map, or a folder written by generate/views/ensemble")
  i.set_defaults(func=commands["info"])

  r = sub.add_parser(
    "replay", help="regenerate one sample bit for bit from its params JSON", parents=[o["no_cache"]]
  )
  r.add_argument("params", help="a sample_XXXXX_params.json written by generate")
  r.add_argument("-o", "--output", required=True, help="output folder")
  r.add_argument("--overwrite", action="store_true", help="replace existing files")
  r.add_argument(
    "--force",
    action="store_true",
    help="replay even if the label map or seed maps changed since the sample was written",
  )
  r.set_defaults(func=commands["replay"])

  # The recipe's own parsers add these arguments too (--no-cache included), so the two
  # command lines cannot drift apart. Importing the drivers needs no `train` extra.
  from synthjax._src.train import segment, train

  for name, driver, text in (
    ("train", train, "train a U-Net on synthetic images (the 'train' extra)"),
    ("segment", segment, "segment real scans with a trained run"),
  ):
    t = sub.add_parser(name, help=text, description=(driver.__doc__ or text).splitlines()[0])
    driver.add_arguments(t)
    t.set_defaults(func=functools.partial(commands["recipe"], name))
    for action in t._actions:
      if action.dest == "debug":
        # Its default would overwrite `synthjax --debug train`'s: without one, either works.
        action.default = argparse.SUPPRESS
  return parser
