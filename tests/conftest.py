"""Test-session hygiene shared by every test module."""

import gc

import pytest

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


# pytest-xdist (`-n 2 --dist loadfile`) hands out whole modules in collection order; the
# suite ends sooner when the longest modules start first instead of last.
_LONGEST_FIRST = ("test_segmentation_training.py", "test_stages_wired.py",
                  "test_synthesize.py", "test_cli.py", "test_subclusters.py",
                  "test_sim2real.py", "test_golden.py")


def pytest_collection_modifyitems(session, config, items):
  rank = {name: i for i, name in enumerate(_LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: order kept within
