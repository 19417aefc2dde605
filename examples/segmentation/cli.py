"""What the recipe's scripts share: one-line errors with exit status 2."""

from __future__ import annotations

import sys

from examples.segmentation import scans


class UserError(Exception):
  """Bad input: printed as one line with exit status 2."""


def add_cache_option(parser):
  parser.add_argument("--no-cache", action="store_true",
                      help="do not keep compiled programs in ~/.cache/synthjax "
                           "(also: SYNTHJAX_NO_CACHE=1)")


def main(prog: str, parser, run, argv=None) -> int:
  """Parses `argv`, turns on the persistent compilation cache (`--no-cache`), calls
  `run(args, parser)`; bad input is one line on stderr, status 2 (`--debug` shows the
  traceback)."""
  args = parser.parse_args(argv)
  if not getattr(args, "no_cache", False):
    from synthjax._src import compile_cache
    compile_cache.enable()
  try:
    run(args, parser)
  except (UserError, scans.ScanError) as e:
    if getattr(args, "debug", False):
      raise
    print(f"{prog}: error: {e}", file=sys.stderr)
    return 2
  return 0
