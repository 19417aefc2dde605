"""Skipping a test module whose optional dependencies are missing, without importing them
while the tests are collected: each xdist worker collects every module, and importing
flax, orbax or nilearn there costs seconds that only the worker running the module needs."""

import importlib.util

import pytest


def _installed(module):
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:  # its parent package is missing
    return False


def requires(*modules):
  """A `skipif` mark for the modules of `modules` that are not installed."""
  missing = [m for m in modules if not _installed(m)]
  return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")
