"""What the recipe's commands share: one-line errors with exit status 2."""

from __future__ import annotations

import importlib
import os
import sys

from synthjax._src import scans, stops

# The modules of the `train` extra that the recipe imports (pyproject.toml).
EXTRA_MODULES = ("flax", "optax", "orbax.checkpoint", "scipy", "matplotlib")


class UserError(Exception):
  """Bad input: printed as one line with exit status 2."""


def atomic_write(path, text: str):
  """Writes `text` to `path` through a temporary name and a rename, so that the file is
  either the old one or the whole new one, even if the process is stopped; the temporary
  file is removed if writing fails or is interrupted."""
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def add_cache_option(parser):
  parser.add_argument(
    "--no-cache",
    action="store_true",
    help="do not keep compiled programs in ~/.cache/synthjax (also: SYNTHJAX_NO_CACHE=1)",
  )


def require_extra():
  """Raises `UserError` naming the `train` extra if one of its modules cannot be imported,
  so that a missing install is one line rather than a traceback from deep in a run."""
  missing = []
  for name in EXTRA_MODULES:
    try:
      importlib.import_module(name)
    except ImportError:
      missing.append(name)
  if missing:
    raise UserError(
      f"needs the 'train' extra ({', '.join(missing)} missing): pip install 'synthjax[train]'"
    )


def main(prog: str, parser, run, argv=None) -> int:
  """Parses `argv`, turns on the persistent compilation cache (`--no-cache`), calls
  `run(args, parser)`; bad input is one line on stderr, status 2 (`--debug` shows the
  traceback)."""
  args = parser.parse_args(argv)
  try:
    require_extra()
    if not getattr(args, "no_cache", False):
      from synthjax._src import compile_cache

      compile_cache.enable()
    with stops.handled():
      run(args, parser)
      stops.check()
  except (KeyboardInterrupt, stops.Terminated) as e:
    return stops.report(prog, prog.split()[-1], e)
  except (UserError, scans.ScanError) as e:
    if getattr(args, "debug", False):
      raise
    print(f"{prog}: error: {e}", file=sys.stderr)
    return 2
  return 0
