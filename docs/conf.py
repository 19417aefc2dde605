"""Sphinx configuration of the synthjax documentation (MyST Markdown, Google docstrings).

Build: `sphinx-build -W --keep-going -b html docs docs/_build/html` (warnings are errors).
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
# The checkout's package, not an installed copy: the pages document this tree.
sys.path.insert(0, os.path.dirname(_HERE))
sys.path.insert(0, os.path.join(_HERE, "_ext"))
# Importing the package for autodoc must not look for accelerators.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import synthjax  # noqa: E402

project = "synthjax"
author = "synthjax authors"
copyright = "synthjax authors"  # noqa: A001
release = synthjax.__version__
version = release

extensions = [
  "myst_parser",
  "sphinx.ext.autodoc",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "stage_reference",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# Docstrings write code as `name` (Markdown style): render single backticks as code.
default_role = "code"

autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False
# The training recipe's extra may be absent where only the docs are built.
autodoc_mock_imports: list[str] = []

napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes as a field list: the config dataclasses' fields are also class members, and two
# descriptions of one attribute would be a duplicate-object warning.
napoleon_use_ivar = True
napoleon_use_rtype = False

# Type hints name private modules and third-party types with no inventory here.
nitpicky = False

html_theme = "sphinx_book_theme"
html_title = "synthjax"
html_theme_options = {
  "show_toc_level": 2,
  "home_page_in_toc": True,
}
html_static_path: list[str] = []
