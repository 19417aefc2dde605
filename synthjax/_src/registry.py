"""The ordered registry of the generator's stages.

Each stage lives in one module of `synthjax/_src/stages/`: its config dataclass, its
`sample`, its `apply`, and a `Stage` record (`stages/record.py`) that names them with the
ids of its random streams and the physical domain of its params. This registry lists the
records in render order; adding a stage is one module, one line here and one `SynthConfig`
field.
`sample_params` walks the registry to draw the params and `generator.render` walks it to
render the image stages, in the registry's order; the names a `fixed` dict may use, the
params JSON template and the disabled-stage rule all follow from the params each stage's
sampler returns, so no other table lists the stages.

Stream ids are how a stage's randomness is separated from the others'
(`jax.random.fold_in(key, id)`): switching one stage off or adding a new one leaves every
other stage's draws unchanged. They are part of the replay contract: never renumber, only
append (`tests/test_registry.py` pins them).
"""

from __future__ import annotations

from synthjax._src.stages import bias
from synthjax._src.stages import blur_cortex
from synthjax._src.stages import boundary
from synthjax._src.stages import gamma
from synthjax._src.stages import geometry
from synthjax._src.stages import gmm
from synthjax._src.stages import image_intensity
from synthjax._src.stages import kspace
from synthjax._src.stages import motion
from synthjax._src.stages import noise
from synthjax._src.stages import resolution
from synthjax._src.stages import rician
from synthjax._src.stages import slice_stack
from synthjax._src.stages import struct_noise
from synthjax._src.stages import subclusters
from synthjax._src.stages import texture
from synthjax._src.stages.record import Bounds, RenderContext, Stage

__all__ = ["Bounds", "RenderContext", "Stage", "STAGES", "BY_NAME", "NAMES", "synth_stream"]

# In render order: the geometry phase, the intensity sources, the image stages (each
# `apply(key, image, params, stage_config, ctx)`), with the k-space group rendered on one
# spectrum. Stream ids are explicit, so the order is free to follow the rendering;
# `sample_params` draws every stage from its own stream.
STAGES: tuple[Stage, ...] = (
    *geometry.STAGES,          # affine, deformation, crop, flip: one coordinate map
    gmm.STAGE,                 # intensity sources: Gaussians per label,
    subclusters.STAGE,         # or per sub-label class,
    image_intensity.STAGE,     # or a real image
    texture.STAGE,
    bias.STAGE,
    gamma.STAGE,
    blur_cortex.STAGE,
    resolution.STAGE,
    slice_stack.STAGE,
    motion.STAGE,
    *kspace.STAGES,            # spike, ghosting, gibbs: one spectrum
    rician.STAGE,
    noise.STAGE,
    struct_noise.STAGE,
    boundary.STAGE,
)

BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
NAMES: tuple[str, ...] = tuple(BY_NAME)


def synth_stream(name: str) -> int:
  """The `fold_in` id of stage `name`'s key in `synthesize`."""
  stream = BY_NAME[name].synth_stream
  if stream is None:
    raise KeyError(f"stage {name!r} draws no realisations in synthesize")
  return stream
