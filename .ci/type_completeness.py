"""CI: every exported symbol of synthjax has a type that pyright knows.

Runs `pyright --verifytypes synthjax --ignoreexternal` and fails when an exported symbol's type
is unknown (or ambiguous), unless `ALLOWED` names it. Pyright's own exit status cannot be the
check: it fails for the allowed symbols too. An entry of `ALLOWED` whose symbol has become
known fails as well, so that the list only holds what is still true.

Usage (from the repository root, as `.ci/run` calls it): `python .ci/type_completeness.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Exported symbols whose type pyright cannot know, and why. Grain ships no `py.typed`, so
# `--verifytypes` sees its classes as unknown, and `--ignoreexternal` does not cover a base
# class or a metaclass: a subclass of a Grain class is unknown however it is annotated.
ALLOWED = {
  # Subclasses of `grain.transforms.Map` (what Grain's pipelines take as a transform).
  "synthjax.data.ExtractPatches": "base class grain.transforms.Map",
  "synthjax.data.SeedPatches": "base class grain.transforms.Map",
  "synthjax.data.SynthesizeTransform": "base class grain.transforms.Map",
  # Returns a `SeedPatches`.
  "synthjax.data.seed_patches": "returns SeedPatches",
  # A `grain.DatasetIterator` (what Grain's checkpointing saves and restores).
  "synthjax.data.BatchIterator": "base class grain.DatasetIterator",
}


def main() -> int:
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ, PYTHONPATH=root, PYRIGHT_PYTHON_IGNORE_WARNINGS="1")
  command = ["pyright", "--verifytypes", "synthjax", "--ignoreexternal", "--outputjson"]
  # Exit status 1 means an incomplete score: the report says which symbols.
  done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
  try:
    report = json.loads(done.stdout)["typeCompleteness"]
  except (ValueError, KeyError):
    sys.stderr.write(done.stdout + done.stderr)
    print(f"type_completeness: pyright gave no report (exit status {done.returncode})")
    return 1
  symbols = report["symbols"]
  unknown = {s["name"] for s in symbols if s["isExported"] and not s["isTypeKnown"]}
  # An exported name re-exports a symbol of `synthjax._src`, which carries the diagnostics.
  source_of = {alt: s["name"] for s in symbols for alt in s.get("alternateNames", [])}

  def reasons(name: str) -> list[str]:
    """The diagnostics of `name`'s symbol and of its members whose types are unknown."""
    src = source_of.get(name, name)
    return [
      f"{s['name']}: {' '.join(d['message'].split())}"
      for s in symbols
      if not s["isTypeKnown"] and (s["name"] in (name, src) or s["name"].startswith(src + "."))
      for d in s["diagnostics"]
    ]

  counts = report["exportedSymbolCounts"]
  total = sum(counts.values())
  print(
    f"type_completeness: {counts['withKnownType']}/{total} exported symbols of synthjax have "
    f"a known type; {len(unknown & set(ALLOWED))} allowed unknown (ALLOWED)"
  )
  failed = False
  for name in sorted(set(unknown) - set(ALLOWED)):
    failed = True
    print(f"  unknown type: {name}")
    for line in reasons(name):
      print(f"    {line}")
  for name in sorted(set(ALLOWED) - set(unknown)):
    failed = True
    print(f"  known now, remove it from ALLOWED: {name}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
