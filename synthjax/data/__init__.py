"""The data side: NIfTI sources, patch sampling and Grain pipelines (no JAX in workers)."""

from synthjax._src.data.arrayrecord import ArrayRecordSamples, ArrayRecordWriter, read_arrayrecord
from synthjax._src.data.grid import assemble, grid_patches, sliding_window
from synthjax._src.data.keys import sample_key_data
from synthjax._src.data.nifti_folder import NiftiFilesWriter, NiftiWriter
from synthjax._src.data.pipeline import (
  BatchIterator,
  ExtractPatches,
  batch_nbytes,
  pipeline,
  shm_free_bytes,
  shm_in_flight,
)
from synthjax._src.data.records import decode_record, encode_record
from synthjax._src.data.samplers import LabelSampler, UniformSampler, WeightedSampler, extract_patch
from synthjax._src.data.seeds import SeedPatches, load_seed_maps, seed_map_paths, seed_patches
from synthjax._src.data.sources import NiftiSource, Volume, expand_paths
from synthjax._src.data.splits import MixedSource, Subset, train_val_split
from synthjax._src.data.synth import SynthesizeTransform, synthesize_batch
from synthjax._src.data.writers import write_dataset

__all__ = [
  "NiftiSource",
  "Volume",
  "expand_paths",
  "pipeline",
  "ExtractPatches",
  "sample_key_data",
  "BatchIterator",
  "batch_nbytes",
  "shm_in_flight",
  "shm_free_bytes",
  "UniformSampler",
  "LabelSampler",
  "WeightedSampler",
  "extract_patch",
  "train_val_split",
  "Subset",
  "MixedSource",
  "grid_patches",
  "assemble",
  "sliding_window",
  "synthesize_batch",
  "SynthesizeTransform",
  "load_seed_maps",
  "seed_map_paths",
  "seed_patches",
  "SeedPatches",
  "NiftiWriter",
  "NiftiFilesWriter",
  "ArrayRecordWriter",
  "ArrayRecordSamples",
  "read_arrayrecord",
  "encode_record",
  "decode_record",
  "write_dataset",
]
