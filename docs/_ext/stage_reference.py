"""Sphinx extension: the stage reference page, generated from the registry at build time.

`synthjax._src.registry.STAGES` is the one list of the generator's stages. This extension
writes `stage_reference.md` from it before Sphinx reads the sources: for each stage its name,
its module, its render phase (where the record has one), its `SynthConfig` field and config
class with every field's default and description (from the class's `Attributes:` section),
and the module's docstring. The page cannot drift from the code: a stage added, renamed or
given a new field shows up on the next build.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import textwrap

OUTPUT = "stage_reference.md"

# Fields every stage config has, and most do not describe one by one.
_COMMON = {
  "prob": "probability that the stage is applied to a sample.",
  "enabled": "`False` removes the stage from the compiled program (its params record "
  "`applied: False`).",
}


def _doc_sections(doc: str) -> tuple[str, dict[str, str]]:
  """The summary of a Google docstring, and its `Attributes:` entries by name."""
  doc = inspect.cleandoc(doc or "")
  head, _, rest = doc.partition("\nAttributes:")
  fields: dict[str, str] = {}
  name = None
  for line in rest.splitlines():
    if line and not line.startswith(" "):
      break  # the next section
    entry = re.match(r"^  (\w+)(?: \([^)]*\))?: ?(.*)$", line)
    if entry:
      name = entry.group(1)
      fields[name] = entry.group(2).strip()
    elif name and line.strip():
      fields[name] += " " + line.strip()
  return head.strip(), fields


def _cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", " ")


def _default(value) -> str:
  text = repr(value)
  if len(text) > 60:
    text = text[:57] + "..."
  return "`" + text.replace("`", "'") + "`"


def _module_doc(module) -> str:
  """A module docstring as Markdown: paragraphs kept, indented blocks as plain lines."""
  doc = inspect.cleandoc(module.__doc__ or "")
  # Docstrings indent continuation lines by 2 or 4 spaces; Markdown would read 4 as code.
  return "\n".join(line.strip() for line in doc.splitlines())


def config_fields(config_class) -> list[tuple[str, object, str]]:
  """`(name, default, description)` of each field of a stage's config class."""
  _, described = _doc_sections(config_class.__doc__)
  rows = []
  for f in dataclasses.fields(config_class):
    if f.default is not dataclasses.MISSING:
      default = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
      default = f.default_factory()  # type: ignore[misc]
    else:
      default = "(required)"
    rows.append((f.name, default, described.get(f.name, _COMMON.get(f.name, ""))))
  return rows


def render() -> str:
  """The Markdown of the stage reference page."""
  import synthjax
  from synthjax._src import registry

  stage_configs = {
    f.name: type(f.default)
    for f in dataclasses.fields(synthjax.SynthConfig)
    if dataclasses.is_dataclass(f.default)
  }
  out = [
    "# Stage reference",
    "",
    "Generated from the registry (`synthjax._src.registry.STAGES`) when the documentation",
    "is built, in render order. Each stage's config is a field of `SynthConfig` of the",
    'same name: `cfg.replace(bias={"std": (0.0, 0.3)})` changes a range,',
    '`cfg.replace(bias={"enabled": False})` removes the stage from the compiled program.',
    "The defaults below are the config classes' own; the presets set their own values",
    "([stages and defaults](stages.md)).",
    "",
    "| stage | module | phase | config |",
    "|---|---|---|---|",
  ]
  for stage in registry.STAGES:
    module = inspect.getmodule(stage.sample)
    config = stage_configs.get(stage.name)
    out.append(
      f"| {{ref}}`{stage.name} <stage-{stage.name}>` | `{module.__name__}` | "
      f"`{stage.phase}` | "
      f"{'`' + config.__name__ + '`' if config else '(none)'} |"
    )
  out.append("")
  shown = set()
  for stage in registry.STAGES:
    module = inspect.getmodule(stage.sample)
    config = stage_configs.get(stage.name)
    out += [f"(stage-{stage.name})=", f"## `{stage.name}`", ""]
    facts = [f"Module: `{module.__name__}`.", f"Phase: `{stage.phase}`."]
    if config is None:
      facts.append("No `SynthConfig` field: the stage always applies.")
    else:
      facts.append(f"Config: `SynthConfig.{stage.name}` (`{config.__name__}`).")
    out += [" ".join(facts), ""]
    if config is not None:
      summary, _ = _doc_sections(config.__doc__)
      if summary:
        out += ["\n".join(line.strip() for line in summary.splitlines()), ""]
      out += ["| field | default | meaning |", "|---|---|---|"]
      for name, default, text in config_fields(config):
        out.append(f"| `{name}` | {_cell(_default(default))} | {_cell(text)} |")
      out.append("")
    if module.__name__ in shown:
      first = next(s.name for s in registry.STAGES if inspect.getmodule(s.sample) is module)
      out += [f"The module's docstring is under {{ref}}`{first} <stage-{first}>`.", ""]
    else:
      shown.add(module.__name__)
      # A colon fence: a backtick fence's info string may not hold the title's backticks.
      out += [
        f":::{{admonition}} `{module.__name__}`",
        ":class: note",
        "",
        _module_doc(module),
        ":::",
        "",
      ]
  return "\n".join(out) + "\n"


def _write(app) -> None:
  path = os.path.join(app.srcdir, OUTPUT)
  text = render()
  old = None
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      old = f.read()
  if old != text:  # an unchanged page is not rebuilt
    with open(path, "w", encoding="utf-8") as f:
      f.write(text)


def setup(app):
  app.connect("builder-inited", _write)
  return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
  print(textwrap.dedent(render()))
