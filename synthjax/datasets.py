"""Datasets on disk as the `synthjax` command writes them, from Python.

Read a run's inputs (`load_sources` or `demo_sources`, a config from `preset_config` or
`load_config`, checked by `check_sources`, seed maps by `with_seed_maps`), then write a run
folder of samples (`generate`), view pairs (`generate_views`) or label ensembles
(`generate_ensembles`), in one process or as shards of many (`generate(..., shard=)`, then
`check_run`); replay a sample into a folder (`replay_to`) or describe a label map
(`label_map_info`). For reading datasets into training, see `synthjax.data`.

Examples:
  >>> from synthjax import datasets
  >>> sources, spacing = datasets.demo_sources((32, 32, 32), 6.0)
  >>> cfg = datasets.preset_config("synthseg", datasets.label_values(sources), (32,) * 3,
  ...                              spacing)
  >>> datasets.check_sources(sources, cfg)
  >>> datasets.generate("out", sources, cfg, n=4, seed=5)           # doctest: +SKIP
  [0, 1, 2, 3]
"""

from synthjax._src.datasets import generate, generate_ensembles, generate_manifest, generate_views
from synthjax._src.inputs import (
  PRESETS,
  InputError,
  Source,
  check_fits,
  check_sources,
  demo_sources,
  label_values,
  load_config,
  load_sources,
  preset_config,
  uses_seed_maps,
  with_seed_maps,
)
from synthjax._src.label_info import format_label_map_info, label_map_info
from synthjax._src.replay import replay_to
from synthjax._src.runs import FolderError, RunStatus, check_run

__all__ = [
  "Source",
  "InputError",
  "PRESETS",
  "demo_sources",
  "load_sources",
  "label_values",
  "load_config",
  "preset_config",
  "check_sources",
  "uses_seed_maps",
  "with_seed_maps",
  "check_fits",
  "generate",
  "generate_views",
  "generate_ensembles",
  "generate_manifest",
  "check_run",
  "RunStatus",
  "FolderError",
  "replay_to",
  "label_map_info",
  "format_label_map_info",
]
