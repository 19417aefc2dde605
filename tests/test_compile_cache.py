"""The commands' persistent compilation cache: where it lives, how it is turned off, and a
second start that compiles nothing and writes the same bytes."""

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from synthjax import cli
from synthjax._src import compile_cache


def test_the_cache_lives_in_the_users_cache_folder(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert compile_cache.default_dir() == str(tmp_path / "xdg" / "synthjax")
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert compile_cache.default_dir() == str(tmp_path / "home" / ".cache" / "synthjax")


@pytest.mark.parametrize(
  "value,off",
  [("", False), ("0", False), ("false", False), ("1", True), ("yes", True), ("TRUE", True)],
)
def test_the_environment_turns_it_off(monkeypatch, value, off):
  monkeypatch.setenv(compile_cache.ENV_OFF, value)
  assert compile_cache.disabled_by_env() is off
  if off:
    assert compile_cache.enable() is None


def test_an_unusable_folder_leaves_it_off_with_one_line(tmp_path, capsys):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  assert compile_cache.prepare(blocker / "synthjax") is None
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "compilation cache off" in err
  assert compile_cache.prepare(tmp_path / "ok") == str(tmp_path / "ok")
  assert (tmp_path / "ok").is_dir()


def test_no_cache_option_skips_it(monkeypatch, tmp_path):
  calls = []
  monkeypatch.setattr(compile_cache, "enable", lambda *a: calls.append(a))
  argv = ["info", str(tmp_path / "missing.nii.gz")]
  cli.main(argv)  # info compiles nothing: no option, no cache
  demo = [
    "generate",
    "--demo",
    "--demo-shape",
    "8",
    "8",
    "8",
    "--demo-spacing",
    "8",
    "-o",
    str(tmp_path / "a"),
    "--quiet",
  ]
  assert cli.main(demo + ["--no-cache"]) == 0 and calls == []
  assert cli.main(demo[:-3] + ["-o", str(tmp_path / "b"), "--quiet"]) == 0 and len(calls) == 1


def _generate(out, cache_home):
  env = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith("JAX_PERSISTENT_CACHE")
    and k not in ("JAX_COMPILATION_CACHE_DIR", compile_cache.ENV_OFF)
  }
  env.update(XDG_CACHE_HOME=str(cache_home), JAX_PLATFORMS="cpu")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "synthjax.cli",
      "generate",
      "--demo",
      "--demo-shape",
      "16",
      "16",
      "16",
      "--demo-spacing",
      "8",
      "-n",
      "1",
      "-o",
      str(out),
      "--quiet",
    ],
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  return np.asarray(nib.load(str(out / "sample_00000_image.nii.gz")).dataobj)


def test_a_second_start_loads_every_program_and_writes_the_same_image(tmp_path):
  cache = tmp_path / "xdg" / "synthjax"
  first = _generate(tmp_path / "first", tmp_path / "xdg")
  entries = sorted(os.listdir(cache))
  assert entries, "the first run kept no compiled program"
  second = _generate(tmp_path / "second", tmp_path / "xdg")
  assert sorted(os.listdir(cache)) == entries  # nothing compiled anew
  assert first.tobytes() == second.tobytes()
