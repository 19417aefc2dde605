"""synthjax: synthetic medical images from label maps in JAX, with exact replay."""

from synthjax import appearance, ensembles, phantom, presets, priors, realism
from synthjax._src.config import (
  AffineConfig,
  BiasConfig,
  BlurCortexConfig,
  BoundaryConfig,
  DeformationConfig,
  FlipConfig,
  GammaConfig,
  GhostingConfig,
  GibbsConfig,
  GMMConfig,
  GrowLabelsConfig,
  ImageIntensityConfig,
  MotionConfig,
  NoiseConfig,
  ResolutionConfig,
  RicianConfig,
  SliceStackConfig,
  SpikeConfig,
  StructNoiseConfig,
  SubclusterConfig,
  SynthConfig,
  TextureConfig,
)
from synthjax._src.labelmaps import validate_labels
from synthjax._src.rendering import synthesize
from synthjax._src.replay import InputChangedError, InputChangedWarning, Sample, load_sample, replay
from synthjax._src.sampling import sample_params
from synthjax._src.serialize import (
  key_from_json,
  key_to_json,
  params_from_json,
  params_to_dict,
  params_to_json,
)
from synthjax._src.sharding import synthesize_sharded
from synthjax._src.views import sample_view_params, synthesize_views
from synthjax._src.warp import tta_predict, unwarp, warp

__version__ = "0.1.0"

__all__ = [
  "SynthConfig",
  "AffineConfig",
  "DeformationConfig",
  "FlipConfig",
  "GMMConfig",
  "GrowLabelsConfig",
  "BiasConfig",
  "GammaConfig",
  "ResolutionConfig",
  "NoiseConfig",
  "SpikeConfig",
  "GhostingConfig",
  "GibbsConfig",
  "RicianConfig",
  "SubclusterConfig",
  "ImageIntensityConfig",
  "MotionConfig",
  "SliceStackConfig",
  "TextureConfig",
  "StructNoiseConfig",
  "BlurCortexConfig",
  "BoundaryConfig",
  "sample_params",
  "synthesize",
  "validate_labels",
  "synthesize_sharded",
  "warp",
  "unwarp",
  "tta_predict",
  "sample_view_params",
  "synthesize_views",
  "load_sample",
  "replay",
  "Sample",
  "InputChangedError",
  "InputChangedWarning",
  "params_to_json",
  "params_from_json",
  "params_to_dict",
  "key_to_json",
  "key_from_json",
  "presets",
  "phantom",
  "ensembles",
  "priors",
  "appearance",
  "realism",
]
