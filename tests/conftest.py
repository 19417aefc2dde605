"""Test-session hygiene shared by every test module."""

import gc
import os

import pytest

# The suite compiles several thousand XLA programs, and compiling dominates its time. Two
# XLA flags shorten it: the older CPU code emitters, and XLA's lowest backend optimisation
# level (the suite's CPU time drops by about 30 %; the code runs slower, which only the few
# long runs notice). They are set before JAX starts its CPU backend, and subprocesses
# inherit them. What the tests check holds at any optimisation level: results against
# references within tolerances, and bitwise replay and resume, which run one program twice.
# The golden record (tests/test_golden.py) and the learning test
# (tests/test_segmentation_training.py) run in processes with XLA's default flags, which is
# what users run.
FAST_COMPILE_FLAGS = ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=0")


def with_fast_compile(flags=""):
  """`flags` (an XLA_FLAGS value) with the suite's compile-time flags added."""
  have = {f.split("=")[0] for f in flags.split()}
  return " ".join([flags] + [f for f in FAST_COMPILE_FLAGS if f.split("=")[0] not in have]).strip()


def without_fast_compile(flags):
  """`flags` (an XLA_FLAGS value) without the suite's compile-time flags: XLA's defaults."""
  return " ".join(f for f in flags.split() if f not in FAST_COMPILE_FLAGS)


os.environ["XLA_FLAGS"] = with_fast_compile(os.environ.get("XLA_FLAGS", ""))

from jax import monitoring  # noqa: E402 (after XLA_FLAGS: JAX reads them at its start)

# XLA's CPU backend maps its generated code in many small regions (about 2000 for one
# compiled fetal-preset program), and they stay mapped while the executable is cached.
# A long test session compiles hundreds of programs and would reach the kernel's limit on
# memory maps (vm.max_map_count, 65530 by default), where LLVM aborts the process. Clearing
# JAX's caches when the count gets high unmaps them. A worker's whole session peaks near
# 25000 maps (2026-12-05) and a clear costs about 5 s plus the recompiles after it, so the
# limit sits above that peak and 25000 maps below the kernel's.
_MAPS_LIMIT = 40000
# Counting the maps reads /proc/self/maps, which costs about 35 ms at 25000 maps, so the
# maps are counted after a test only once a few programs have been compiled or loaded from
# the persistent cache since the last count (JAX's backend-compile event times both): the
# programs left uncounted (at most 7, about 14000 maps if all were fetal-preset programs)
# stay within the margin to the kernel's limit.
_PROGRAMS_PER_COUNT = 8
_programs = [0, 0]  # programs compiled or loaded: in all, and at the last count


def _count_compiles(event, *args, **kwargs):
  if event == "/jax/core/compile/backend_compile_duration":
    _programs[0] += 1


def _num_maps():
  try:
    with open("/proc/self/maps", "rb") as f:
      return f.read().count(b"\n")
  except OSError:
    return 0


monitoring.register_event_duration_secs_listener(_count_compiles)


@pytest.fixture(autouse=True)
def _bound_compiled_code_maps():
  yield
  if _programs[0] - _programs[1] < _PROGRAMS_PER_COUNT:
    return
  _programs[1] = _programs[0]
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
  from jax.experimental.compilation_cache import compilation_cache as cc

  base = tmp_path_factory.getbasetemp()
  folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "jax-cache"
  folder.mkdir(exist_ok=True)
  settings = {
    "jax_compilation_cache_dir": str(folder),
    "jax_persistent_cache_min_compile_time_secs": _CACHE_MIN_COMPILE_SECS,
    "jax_persistent_cache_min_entry_size_bytes": 0,
  }
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


# `pytest -n 2 --dist loadfile` hands whole files to the two workers, by default the files
# with the most tests first. The longest files go first instead, so that no long file
# starts near the end while the other worker idles (the longest-first rule of scheduling;
# the list comes from the suite's junit durations, `benchmarks/RESULTS.md` section 10).
# The order of the tests within a file is kept, and xdist's reordering is turned off even
# when `--loadscope-reorder` is given.
LONGEST_FILES = (
  "test_segmentation_training.py",
  "test_golden.py",
  "test_synthesize.py",
  "test_pipeline.py",
  "test_bad_input.py",
  "test_stages_wired.py",
)


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.name
    return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)

  items.sort(key=rank)


def pytest_configure(config):
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False
