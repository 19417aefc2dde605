"""Static, hashable generator configuration.

Every field is a Python scalar or a tuple, so a `SynthConfig` can be passed as a static
argument to `jax.jit` and used as a dictionary key. Each stage config lives in its stage's
module (`synthjax/_src/stages/`) and carries the ranges that `sample_params` draws from and
the probability that the stage is applied; `enabled=False` removes a stage from the
compiled program altogether.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

from synthjax._src.checks import (
  JsonConfig,
  config_class,
  field,
  integer,
  integers,
  label_groups,
  optional,
  positives,
  real,
  sizes,
)
from synthjax._src.stages.bias import BiasConfig
from synthjax._src.stages.blur_cortex import BlurCortexConfig
from synthjax._src.stages.boundary import BoundaryConfig
from synthjax._src.stages.gamma import GammaConfig
from synthjax._src.stages.geometry import AffineConfig, DeformationConfig, FlipConfig
from synthjax._src.stages.gmm import GMMConfig
from synthjax._src.stages.grow_labels import GrowLabelsConfig, check_labels
from synthjax._src.stages.image_intensity import ImageIntensityConfig
from synthjax._src.stages.kspace import GhostingConfig, GibbsConfig, SpikeConfig
from synthjax._src.stages.motion import MotionConfig
from synthjax._src.stages.noise import NoiseConfig
from synthjax._src.stages.resolution import ResolutionConfig
from synthjax._src.stages.rician import RicianConfig
from synthjax._src.stages.slice_stack import SliceStackConfig
from synthjax._src.stages.struct_noise import StructNoiseConfig
from synthjax._src.stages.subclusters import SubclusterConfig
from synthjax._src.stages.texture import TextureConfig

__all__ = [
  "AffineConfig",
  "BiasConfig",
  "BlurCortexConfig",
  "BoundaryConfig",
  "DeformationConfig",
  "FlipConfig",
  "GammaConfig",
  "GhostingConfig",
  "GibbsConfig",
  "GMMConfig",
  "GrowLabelsConfig",
  "ImageIntensityConfig",
  "MotionConfig",
  "NoiseConfig",
  "ResolutionConfig",
  "RicianConfig",
  "SliceStackConfig",
  "StructNoiseConfig",
  "SubclusterConfig",
  "SynthConfig",
  "TextureConfig",
  "as_stage",
  "LABEL_MAX",
]


def _positive_prob(stage: dict[str, Any]) -> bool:
  try:
    return float(stage.get("prob", 0)) > 0
  except (TypeError, ValueError):
    return False  # the stage's own check names the bad value


def getattr_fields(obj) -> dict[str, Any]:
  """A dataclass's fields as a shallow dict (nested dataclasses kept as they are)."""
  return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


# Label values are stored as int32 on the device.
LABEL_MAX = 2**31 - 1


def as_stage(name: str, typ: type, value: Any):
  """A stage config from an instance of `typ` or a dict of its fields."""
  if isinstance(value, dict):
    known = {f.name for f in dataclasses.fields(typ)}
    unknown = sorted(set(value) - known)
    if unknown:
      raise TypeError(f"{name} has no field(s) {unknown}; its fields are {sorted(known)}")
    value = typ(**value)
  if not isinstance(value, typ):
    raise TypeError(f"{name} must be a {typ.__name__}, got {type(value).__name__}")
  return value


@config_class
class SynthConfig(JsonConfig):
  """Everything static about a generator: shapes, label tables and stage ranges.

  Attributes:
    shape: output shape `(X, Y, Z)`. Larger label maps are randomly cropped to it, smaller
      ones padded with `background`.
    label_values: the generation label values, in a fixed order (each gets a Gaussian).
    spacing: voxel spacing in mm of the label maps and of the output.
    noise_spacing: the voxel spacing in mm that the per-voxel standard deviations are
      given for (the GMM's and subclusters' stds, the noise stage's std), or None for
      `spacing`. Rendered on voxels of another volume, they scale by
      `sqrt(prod(noise_spacing) / prod(spacing))`: the spread of the mean of independent
      voxels, so a 2 mm voxel of a config given at 0.5 mm has the spread of 64 averaged
      0.5 mm voxels (`voxel_std_scale`).
    output_labels: the segmentation value of each generation label (same length as
      `label_values`), e.g. 0 for labels merged into background; `None` keeps them.
    flip_pairs: `(left, right)` generation-label pairs swapped by a left/right flip.
    background: the label value used for padding and for `prob_background_zero`.
    num_channels: contrasts rendered from one deformed label map (SynthSeg's
      `n_channels`): the spatial stages and their realisation are shared, and each channel
      draws its own label Gaussians, bias field and gamma (`channels.py`). Above 1 the
      image has shape `(num_channels, X, Y, Z)`.
    channel_correlation: in [0, 1], the correlation of each channel's label means with
      channel 0's (cornucopia's correlated channels), through a Gaussian copula, so each
      mean stays uniform on the GMM's range; 0 draws them independently.
    affine, deformation, flip, gmm, bias, gamma, resolution, noise: the stage configs.
    spike, ghosting, gibbs, rician: the MR artifact stages (disabled unless asked for).
    subclusters, image_intensity: FetalSynthGen's intensity models (disabled unless asked
      for).
    motion: k-space rigid motion (TorchIO's `RandomMotion`; disabled unless asked for).
    slice_stack: FetalSynthGen's slice-stack acquisition with inter-slice motion and
      reconstruction onto the volume grid (disabled unless asked for).
    texture: anatomix's multi-scale texture inside labels (disabled unless asked for).
    struct_noise: FetalSynthGen's structural noise in a label (disabled unless asked for).
    blur_cortex, boundary: FetalSynthGen's cortex blur and skull-stripping boundaries
      (disabled unless asked for).
    grow_labels: label sets grown into their neighbours on the deformed label map, e.g.
      enlarged ventricles or a thinner subarachnoid space (disabled unless asked for).

  Examples:
    >>> cfg = SynthConfig(shape=(32, 32, 32), label_values=(0, 1, 2))
    >>> hash(cfg) == hash(SynthConfig(shape=(32, 32, 32), label_values=(0, 1, 2)))
    True
  """

  shape: tuple[int, ...] = field(check=sizes(3, low=2))
  label_values: tuple[int, ...] = field(
    check=integers(low=0, high=LABEL_MAX, distinct=True, nonempty=True)
  )
  spacing: tuple[float, ...] = field(default=(1.0, 1.0, 1.0), check=positives(3))
  noise_spacing: tuple[float, ...] | None = field(default=None, check=optional(positives(3)))
  output_labels: tuple[int, ...] | None = field(
    default=None, check=optional(integers(high=LABEL_MAX))
  )
  flip_pairs: tuple[tuple[int, int], ...] = field(default=(), check=label_groups())
  background: int = field(default=0, check=integer())
  num_channels: int = field(default=1, check=integer(low=1, high=16))
  channel_correlation: float = field(default=0.0, check=real(low=0.0, high=1.0))
  affine: AffineConfig = AffineConfig()
  deformation: DeformationConfig = DeformationConfig()
  flip: FlipConfig = FlipConfig()
  gmm: GMMConfig = GMMConfig()
  bias: BiasConfig = BiasConfig()
  gamma: GammaConfig = GammaConfig()
  resolution: ResolutionConfig = ResolutionConfig()
  noise: NoiseConfig = NoiseConfig()
  spike: SpikeConfig = SpikeConfig()
  ghosting: GhostingConfig = GhostingConfig()
  gibbs: GibbsConfig = GibbsConfig()
  rician: RicianConfig = RicianConfig()
  subclusters: SubclusterConfig = SubclusterConfig()
  image_intensity: ImageIntensityConfig = ImageIntensityConfig()
  motion: MotionConfig = MotionConfig()
  slice_stack: SliceStackConfig = SliceStackConfig()
  texture: TextureConfig = TextureConfig()
  struct_noise: StructNoiseConfig = StructNoiseConfig()
  blur_cortex: BlurCortexConfig = BlurCortexConfig()
  boundary: BoundaryConfig = BoundaryConfig()
  grow_labels: GrowLabelsConfig = GrowLabelsConfig()

  def _check_together(self):
    values = self.label_values
    if self.background not in values:
      raise ValueError(f"SynthConfig.background {self.background} is not in label_values")
    if self.output_labels is not None and len(self.output_labels) != len(values):
      raise ValueError(
        f"SynthConfig.output_labels has {len(self.output_labels)} entries for "
        f"{len(values)} label_values"
      )
    for pair in self.flip_pairs:
      if len(pair) != 2:
        raise ValueError(f"SynthConfig.flip_pairs must hold (left, right) pairs, got {pair}")
      for v in pair:
        if v not in values:
          raise ValueError(f"SynthConfig.flip_pairs names label {v}, which is not in label_values")
    for name, typ in _stage_types(type(self)).items():
      object.__setattr__(self, name, as_stage(f"SynthConfig.{name}", typ, getattr(self, name)))
    for field_name in ("label_mean", "label_std"):
      unknown = sorted({r[0] for r in getattr(self.gmm, field_name)} - set(values))
      if unknown:
        raise ValueError(
          f"SynthConfig.gmm.{field_name} names label(s) {unknown}, which are not in label_values"
        )
    check_labels(self.grow_labels, values)

  @property
  def voxel_std_scale(self) -> float:
    """The factor on per-voxel standard deviations for this grid (`noise_spacing`)."""
    if self.noise_spacing is None:
      return 1.0
    return math.sqrt(math.prod(self.noise_spacing) / math.prod(self.spacing))

  @property
  def num_labels(self) -> int:
    return len(self.label_values)

  @property
  def segmentation_values(self) -> tuple[int, ...]:
    """The output segmentation value of each generation label."""
    return self.output_labels if self.output_labels is not None else self.label_values

  def replace(self, **changes: Any) -> SynthConfig:
    """Returns a copy with fields replaced; a dict for a stage updates that stage's fields.

    A stage dict with `prob > 0` for a disabled stage also enables it (unless it sets
    `enabled` itself).
    """
    unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
    if unknown:
      raise TypeError(f"SynthConfig has no field(s) {sorted(unknown)}")
    types = _stage_types(type(self))
    for name, value in list(changes.items()):
      if name in types and isinstance(value, dict):
        stage = getattr(self, name)
        value = dict(getattr_fields(stage), **value)
        # Asking for a positive probability on a disabled stage means "use this stage".
        if not stage.enabled and "enabled" not in changes[name] and _positive_prob(value):
          value["enabled"] = True
        changes[name] = as_stage(f"SynthConfig.{name}", types[name], value)
    return dataclasses.replace(self, **changes)


@functools.cache
def _stage_types(cls) -> dict:
  """Each stage's config type, from the class's own fields: a stage is a field whose
  default is a stage config dataclass (a `registry.config_variant` adds its own)."""
  return {
    f.name: type(f.default) for f in dataclasses.fields(cls) if dataclasses.is_dataclass(f.default)
  }


# SynthConfig's own stage types.
_STAGE_TYPES = _stage_types(SynthConfig)
