"""The ordered registry of the generator's stages.

One record per stage holds what the generator needs to know about it outside its render
code: the `SynthConfig` field that configures it, the ids of its random streams, and the
function that draws its params. `sample_params` walks the registry in order; the names a
`fixed` dict may use, the params JSON template and the disabled-stage rule all follow from
the params each stage's sampler returns, so no other table lists the stages.

Stream ids are how a stage's randomness is separated from the others'
(`jax.random.fold_in(key, id)`): switching one stage off or adding a new one leaves every
other stage's draws unchanged. They are part of the replay contract: never renumber, only
append (`tests/test_registry.py` pins them).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from synthjax._src import artifacts
from synthjax._src import draw
from synthjax._src import fetal_artifacts
from synthjax._src import intensity
from synthjax._src import motion
from synthjax._src import resolution
from synthjax._src import slice_stack
from synthjax._src import spatial
from synthjax._src import subclusters
from synthjax._src import texture


@dataclasses.dataclass(frozen=True)
class Stage:
  """What the generator knows about one stage.

  Attributes:
    name: the stage's key in the params pytree and in `fixed`; also the name of its
      `SynthConfig` field, unless `configured` is False.
    param_stream: `fold_in` id of the stage's key in `sample_params`.
    synth_stream: `fold_in` id of the stage's key in `synthesize` (its realisations: fields
      and voxel noise), or None if rendering it draws nothing.
    sample: `(key, config, fixed) -> dict of arrays`, the stage's params for a
      `SynthConfig`; a value present in `fixed` (the stage's sub-dict) is used as is.
    configured: whether `SynthConfig` has a field of this name (the crop has none: it
      always applies, to whatever room the label map leaves).
  """
  name: str
  param_stream: int
  synth_stream: Optional[int]
  sample: Callable
  configured: bool = True


def _image_intensity(key, c, f):
  return {"applied": draw.pick(f, "applied", draw.bernoulli(key, c.image_intensity.prob))}


# Ordered as `sample_params` draws and records them.
STAGES: tuple[Stage, ...] = (
    Stage("affine", 0, None, lambda k, c, f: spatial.sample_affine(k, c.affine, f)),
    Stage("deformation", 1, 0,
          lambda k, c, f: spatial.sample_deformation(k, c.deformation, f)),
    Stage("crop", 2, None, lambda k, c, f: spatial.sample_crop(k, f), configured=False),
    Stage("flip", 3, None, lambda k, c, f: spatial.sample_flip(k, c.flip, f)),
    Stage("gmm", 4, 1, lambda k, c, f: intensity.sample_gmm(k, c.gmm, c.num_labels, f)),
    Stage("bias", 5, 2, lambda k, c, f: intensity.sample_bias(k, c.bias, f)),
    Stage("gamma", 6, None, lambda k, c, f: intensity.sample_gamma(k, c.gamma, f)),
    Stage("resolution", 7, None,
          lambda k, c, f: resolution.sample_resolution(k, c.resolution, c.spacing, f)),
    Stage("noise", 8, 3, lambda k, c, f: intensity.sample_noise(k, c.noise, f)),
    Stage("spike", 9, None, lambda k, c, f: artifacts.sample_spike(k, c.spike, f)),
    Stage("ghosting", 10, None, lambda k, c, f: artifacts.sample_ghosting(k, c.ghosting, f)),
    Stage("gibbs", 11, None, lambda k, c, f: artifacts.sample_gibbs(k, c.gibbs, f)),
    Stage("rician", 12, 4, lambda k, c, f: artifacts.sample_rician(k, c.rician, f)),
    Stage("subclusters", 13, 5, lambda k, c, f: subclusters.sample_subclusters(
        k, c.subclusters, c.gmm, subclusters.num_meta(c), f)),
    Stage("image_intensity", 14, None, _image_intensity),
    Stage("motion", 15, None, lambda k, c, f: motion.sample_motion(k, c.motion, f)),
    Stage("slice_stack", 16, None, lambda k, c, f: slice_stack.sample_slice_stack(
        k, c.slice_stack, c.shape, c.spacing, f)),
    Stage("texture", 17, 6,
          lambda k, c, f: texture.sample_texture(k, c.texture, c.num_labels, f)),
    Stage("struct_noise", 18, 7,
          lambda k, c, f: texture.sample_struct_noise(k, c.struct_noise, f)),
    Stage("blur_cortex", 19, 8,
          lambda k, c, f: fetal_artifacts.sample_blur_cortex(k, c.blur_cortex, f)),
    Stage("boundary", 20, 9,
          lambda k, c, f: fetal_artifacts.sample_boundary(k, c.boundary, f)),
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def synth_stream(name: str) -> int:
  """The `fold_in` id of stage `name`'s key in `synthesize`."""
  stream = BY_NAME[name].synth_stream
  if stream is None:
    raise KeyError(f"stage {name!r} draws no realisations in synthesize")
  return stream
