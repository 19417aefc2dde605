"""Paired contrastive views: two images of one label map with independent appearance.

anatomix (Dey et al., "Learning general-purpose biomedical volume representations using
randomized synthesis", ICLR 2025) pretrains a network contrastively on pairs of synthetic
volumes rendered from one label map with independent intensities, texture, bias, gamma,
blur, noise and artifacts, so that voxel-aligned features must ignore appearance. Here a
pair is two ordinary samples whose appearance params are drawn independently; the spatial
stages (affine, deformation, crop, flip) are shared by default, down to the deformation
field's realisation, so the two views and their segmentations are voxel-aligned.
"""

from __future__ import annotations

import functools

import jax
import numpy.typing as npt
from jax.typing import ArrayLike

from synthjax._src import channels, labelmaps, registry, rendering, sampling
from synthjax._src.config import SynthConfig
from synthjax._src.pytypes import FixedParams, Params, ParamsLike, PRNGKey

# The registry's spatial and label stages (the anatomy): shared by the views of a
# voxel-aligned pair.
SPATIAL_STAGES = tuple(s.name for s in registry.STAGES if s.phase in ("spatial", "labels"))


def sample_view_params(
  key: PRNGKey,
  config: SynthConfig,
  *,
  shared_spatial: bool = True,
  fixed: FixedParams | None = None,
) -> Params:
  """Draws the params of a pair of views (every leaf gets a leading axis of 2).

  Args:
    key: a PRNG key.
    config: the static `SynthConfig`.
    shared_spatial: copy view 0's spatial and label params (affine, deformation, crop,
      flip, grown labels) to view 1, so the views are voxel-aligned; False draws them
      independently too.
    fixed: optional fixed params, applied to both views (as for `sample_params`).

  Returns:
    A params pytree with leaves of shape `(2, ...)`.

  Examples:
    >>> import jax, synthjax
    >>> cfg = synthjax.presets.synthseg((0, 1), (32, 32, 32))
    >>> p = synthjax.sample_view_params(jax.random.key(0), cfg)
    >>> p["gmm"]["means"].shape
    (2, 2)
  """
  params = sampling.sample_params(jax.random.split(key, 2), config, fixed=fixed)
  if shared_spatial:
    params = dict(params)
    for stage in registry.in_phase(config, "spatial") + registry.in_phase(config, "labels"):
      params[stage.name] = jax.tree.map(lambda a: a.at[1].set(a[0]), params[stage.name])
  return params


@functools.partial(jax.jit, static_argnums=(3, 4))
def _views_jit(key, params, labels, config, shared_spatial, seeds, image):
  keys = jax.random.split(key, 2)
  if shared_spatial:
    # The views' anatomy is shared as a multi-contrast sample's channels are.
    return channels.render_aligned(
      rendering.render, keys, params, 0, labels, config, seeds, image, spatial_key=keys[0]
    )
  return jax.vmap(lambda k, p: rendering.render(k, p, labels, config, seeds, image))(keys, params)


def synthesize_views(
  key: PRNGKey,
  params: ParamsLike,
  labels: npt.ArrayLike,
  config: SynthConfig,
  *,
  shared_spatial: bool = True,
  seeds: ArrayLike | None = None,
  image: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Renders the two views of a pair from one label map.

  View `i` uses `params[i]` and the synthesis key `jax.random.split(key, 2)[i]` for its
  appearance realisations (GMM and voxel noise, bias and texture fields); with
  `shared_spatial` both views use view 0's deformation realisation, so, with params from
  `sample_view_params(..., shared_spatial=True)`, both segmentations are equal. View `i`
  matches `synthesize(split(key, 2)[i], params[i], labels, config)` (view 1 only when the
  spatial stages are not shared) up to the float rounding of a vmapped batch.

  Args:
    key: PRNG key of the pair.
    params: pair params from `sample_view_params` (leading axis 2).
    labels: the label map `(X, Y, Z)`.
    config: the static `SynthConfig`.
    shared_spatial: share the deformation realisation (use the same value as for
      `sample_view_params`).
    seeds, image: as for `synthesize`.

  Returns:
    `(images, segs)` of shapes `(2, *config.shape)`.
  """
  import jax.numpy as jnp
  import numpy as np

  if not isinstance(labels, jax.Array):
    labels = jnp.asarray(np.asarray(labels))
  labelmaps.check_labels(labels, config)
  params = sampling.as_device_params(params, config)
  return _views_jit(key, params, labels, config, bool(shared_spatial), seeds, image)
