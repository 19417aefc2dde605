"""The documentation runs: the package's docstring examples, and the Python blocks of the
README and of the documentation pages (docs/*.md), each in a fresh temporary folder.

Run it by its path, `python -m pytest -q -n 2 tests/test_docs_snippets.py` (a step of
.ci/run): the suite's own run leaves it out (`addopts` in pyproject.toml).

A Markdown block runs unless the line before its fence is a `<!-- not-run: why -->` comment;
`NOT_RUN` lists every such block, so a new exclusion is a visible edit here. Shell blocks
(```bash) are commands for a terminal and are not run; the command line has its own tests.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import io
import pathlib
import re
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MARKDOWN = ["README.md"] + sorted(
  str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md") if p.name != "stage_reference.md"
)  # generated at build time, holds no Python

# Markdown blocks that are not run, by file: each needs data that is not in the repository.
NOT_RUN = {
  "docs/generation.md": 1,  # a FeTA label map and FetalSynthGen's seed maps
}

# Modules whose docstring examples are not run yet (a module named here is left out whole).
# Empty: every module's examples run; single examples that need data not in the repository
# carry `# doctest: +SKIP` (the seed maps of `seed_patches`).
DOCTEST_SKIP_MODULES: tuple[str, ...] = ()

_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_RUN_MARK = "<!-- not-run:"


def python_blocks(path: str) -> list[tuple[int, str, bool]]:
  """`(first line number, code, runs)` of each ```python block of a Markdown file."""
  lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
  blocks, i = [], 0
  while i < len(lines):
    m = _FENCE.match(lines[i])
    if not m or not m.group(1):
      i += 1
      continue
    start, lang = i, m.group(1)
    i += 1
    while i < len(lines) and lines[i].rstrip() != "```":
      i += 1
    if i == len(lines):
      raise ValueError(f"{path}:{start + 1}: unclosed code block")
    if lang == "python":
      before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
      runs = not before.strip().startswith(_NOT_RUN_MARK)
      blocks.append((start + 2, "\n".join(lines[start + 1 : i]), runs))
    i += 1
  return blocks


def _modules_with_examples() -> list[str]:
  names = []
  for p in sorted((ROOT / "synthjax").rglob("*.py")):
    if ">>>" in p.read_text(encoding="utf-8"):
      rel = p.relative_to(ROOT).with_suffix("")
      parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
      names.append(".".join(parts))
  return names


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  return tmp_path


@pytest.mark.parametrize("path", MARKDOWN)
def test_markdown_python_blocks_run(path, in_tmp, monkeypatch):
  """The blocks of one page run in order in one namespace, as a reader would paste them."""
  # A real module: dataclasses defined in a block look their module up in sys.modules.
  module = types.ModuleType("synthjax_docs_page")
  monkeypatch.setitem(sys.modules, module.__name__, module)
  for line, code, runs in python_blocks(path):
    if runs:
      # Leading newlines make a traceback name the Markdown file's own line numbers.
      code = compile("\n" * (line - 1) + code, str(ROOT / path), "exec")
      exec(code, module.__dict__)  # noqa: S102


def test_not_run_blocks_are_the_listed_ones():
  skipped = {p: sum(not runs for _, _, runs in python_blocks(p)) for p in MARKDOWN}
  assert {p: n for p, n in skipped.items() if n} == NOT_RUN


def test_block_parser_finds_blocks_and_marks():
  """The extraction itself: a marked block is kept out, other languages are ignored."""
  text = (
    "x\n```python\na = 1\n```\n<!-- not-run: needs data -->\n```python\nb = 2\n```\n"
    "```bash\nls\n```\n"
  )
  path = ROOT / "tests" / "_docs_snippets_probe.md"
  try:
    path.write_text(text, encoding="utf-8")
    assert python_blocks(str(path.relative_to(ROOT))) == [(3, "a = 1", True), (7, "b = 2", False)]
  finally:
    path.unlink()


@pytest.mark.parametrize(
  "module", [m for m in _modules_with_examples() if m not in DOCTEST_SKIP_MODULES]
)
def test_docstring_examples(module, in_tmp):
  mod = importlib.import_module(module)
  finder = doctest.DocTestFinder(exclude_empty=True)
  flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
  out = io.StringIO()
  runner = doctest.DocTestRunner(optionflags=flags)
  tests = [t for t in finder.find(mod, module) if t.examples]
  assert tests, f"{module} has '>>>' but no docstring example was found"
  for t in tests:
    runner.run(t, out=out.write)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, out.getvalue()


def test_readme_is_a_landing_page():
  text = (ROOT / "README.md").read_text(encoding="utf-8")
  assert len(text.splitlines()) <= 200
  for target in re.findall(r"\]\(([^)#\s]+)", text):
    if "://" not in target:
      assert (ROOT / target).exists(), f"README.md links to a missing file: {target}"


def test_ci_runs_the_readme_test_command():
  """The README's second command (install and test) is the one `.ci/run` runs."""
  readme = (ROOT / "README.md").read_text(encoding="utf-8")
  first = readme.index("```bash")
  block = readme[first : readme.index("```\n", first + 7)]
  commands = [line for line in block.splitlines()[1:] if line and not line.startswith("#")]
  assert len(commands) == 2, commands
  install, test = commands[1].split(" && ")
  ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
  assert test in ci.splitlines(), f"{test!r} is not a line of .ci/run"
  # CI installs the README's extras and may add its own (docs, lint).
  extras = lambda line: set(re.search(r'"\.\[([a-z,]+)\]"', line).group(1).split(","))
  ci_install = [line for line in ci.splitlines() if line.startswith("pip install -e")]
  assert len(ci_install) == 1 and extras(install) <= extras(ci_install[0]), ci_install


def test_stage_reference_lists_every_stage_and_field():
  """The generated page follows the registry: every stage, and each config field's default."""
  import importlib.util

  # The Sphinx extension is a file of the docs, not a package: loaded by its path.
  spec = importlib.util.spec_from_file_location(
    "stage_reference", ROOT / "docs" / "_ext" / "stage_reference.py"
  )
  assert spec is not None and spec.loader is not None
  stage_reference = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(stage_reference)
  from synthjax._src import registry
  from synthjax._src.stages.bias import BiasConfig

  page = stage_reference.render()
  for stage in registry.STAGES:
    assert f"(stage-{stage.name})=\n## `{stage.name}`" in page
  for f in dataclasses.fields(BiasConfig):
    assert f"| `{f.name}` | `{f.default!r}` |" in page
  assert page.index("## `affine`") < page.index("## `gmm`") < page.index("## `boundary`")
