"""Test-session hygiene shared by every test module."""

import gc
import os

import pytest

# The suite compiles several hundred XLA programs, and compiling dominates its time. XLA's
# older CPU code emitters compile them about a quarter faster and give the same bits here
# (checked on the golden cases, which tests/test_golden.py renders in a process with the
# default emitters). Set before JAX starts its CPU backend; subprocesses inherit it.
FAST_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"


def with_fast_compile(flags=""):
  """`flags` (an XLA_FLAGS value) with the suite's compile-time flag added."""
  return flags if "xla_cpu_use_fusion_emitters" in flags else f"{flags} {FAST_COMPILE_FLAG}".strip()


os.environ["XLA_FLAGS"] = with_fast_compile(os.environ.get("XLA_FLAGS", ""))

# XLA's CPU backend maps its generated code in many small regions (about 2000 for one
# compiled fetal-preset program), and they stay mapped while the executable is cached.
# A long test session compiles hundreds of programs and would reach the kernel's limit on
# memory maps (vm.max_map_count, 65530 by default), where LLVM aborts the process. Clearing
# JAX's caches when the count gets high unmaps them.
_MAPS_LIMIT = 25000


def _num_maps():
  try:
    with open("/proc/self/maps") as f:
      return sum(1 for _ in f)
  except OSError:
    return 0


@pytest.fixture(autouse=True)
def _bound_compiled_code_maps():
  yield
  if _num_maps() > _MAPS_LIMIT:
    import jax
    jax.clear_caches()
    gc.collect()


# Programs that take a noticeable time to compile (the presets' generators, the recipe's
# train steps) are compiled again by every test process: both xdist workers and each CLI
# or training subprocess. One persistent compilation cache for the session lets each be
# compiled once; the executables are XLA's own, so results are bit for bit the same.
_CACHE_MIN_COMPILE_SECS = 0.3


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """The session's persistent compilation cache folder, shared by the xdist workers (their
  base temp folders share a parent) and by subprocesses (through the environment)."""
  import jax
  from jax._src import compilation_cache as cc
  base = tmp_path_factory.getbasetemp()
  folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "jax-cache"
  folder.mkdir(exist_ok=True)
  settings = {"jax_compilation_cache_dir": str(folder),
              "jax_persistent_cache_min_compile_time_secs": _CACHE_MIN_COMPILE_SECS,
              "jax_persistent_cache_min_entry_size_bytes": 0}
  before_config = {n: getattr(jax.config, n) for n in settings}
  before_env = {n.upper(): os.environ.get(n.upper()) for n in settings}
  cc.reset_cache()
  for name, value in settings.items():
    jax.config.update(name, value)
    os.environ[name.upper()] = str(value)
  yield str(folder)
  cc.reset_cache()
  for name, value in before_config.items():
    jax.config.update(name, value)
  for name, value in before_env.items():
    if value is None:
      os.environ.pop(name, None)
    else:
      os.environ[name] = value


# pytest-xdist (`-n 2 --dist loadfile`) hands out whole modules in collection order; the
# suite ends sooner when the longest modules start first instead of last.
_LONGEST_FIRST = ("test_segmentation_training.py", "test_stages_wired.py",
                  "test_synthesize.py", "test_cli.py", "test_subclusters.py",
                  "test_sim2real.py", "test_golden.py")


def pytest_collection_modifyitems(session, config, items):
  rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept within


def three_labels(n=16):
  """A small label map on `(n,) * 3` (n = 16): a box (1) around a core (2), a slab (3)
  crossing both, and background (0)."""
  import numpy as np
  s = n / 16
  box = lambda lo, hi: slice(int(lo * s), int(hi * s))
  lab = np.zeros((n, n, n), np.int32)
  lab[box(3, 13), box(3, 13), box(3, 13)] = 1
  lab[box(6, 10), box(6, 10), box(6, 10)] = 2
  lab[box(5, 8), box(9, 12), box(4, 12)] = 3
  return lab
