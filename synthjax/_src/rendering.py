"""Rendering: `synthesize` renders a sample from its params, walking the stage registry.

Stage order follows SynthSeg's `labels_to_image_model`, with FetalSynthGen's, anatomix's
and TorchIO's stages slotted in (`registry.STAGES`), by phase:

1. spatial: the affine, the deformation, the crop and the flip compose one coordinate map
   (`record.Placement`), and the labels (with the seed classes of the sub-label source)
   are resampled through it once (nearest neighbour);
2. labels: edits of the deformed labels (label sets grown into their neighbours), seen by
   the image and the segmentation alike;
3. sources: the intensities on the deformed labels (per-label Gaussians, or sub-label
   classes, or a real image);
4. image stages in registry order (texture, bias field, clip/normalise/gamma, cortex blur,
   resolution, slice stacks, k-space motion, Rician noise, noise, structural noise,
   skull-stripping boundaries), with the k-space stages (Gibbs ringing, ghosting, spikes)
   transforming one spectrum, with one magnitude reconstruction, where the first of them
   stands; then a final min-max normalisation.

`synthesize(key, ...)` draws the realisations (velocity and bias fields on their small
grids, voxel noise) from its own key: each stage's key is `fold_in(key, synth_stream)`.
The whole sample is one XLA program (one `jit`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from synthjax._src import channels, labelmaps, registry, sampling
from synthjax._src.config import SynthConfig
from synthjax._src.ops import batching, lookup, precision, resample
from synthjax._src.pytypes import ParamsLike, PRNGKey
from synthjax._src.stages import gamma, geometry, kspace

__all__ = ["render", "synthesize"]


def render(key, params, labels, config: SynthConfig, seeds=None, image=None, spatial_key=None):
  """The body of `synthesize`, traceable as it is (params already device arrays): the
  views and the sharded batch render through it. Under `jax.vmap` it renders sample by
  sample (`batching.per_sample`), so a sample of a batch is the single call's bits."""
  if not isinstance(config, SynthConfig):
    raise TypeError(f"config must be a SynthConfig, got {type(config).__name__}")
  body = lambda k, p, l, s, i, sk: _render(k, p, l, config, s, i, sk)
  return batching.per_sample(body)(key, params, labels, seeds, image, spatial_key)


def _render(key, params, labels, config: SynthConfig, seeds, image, spatial_key):
  if config.num_channels > 1:
    return channels.render_channels(
      _render_one, key, params, labels, config, seeds, image, spatial_key
    )
  return _render_one(key, params, labels, config, seeds, image, spatial_key)


def _key_of(key, stages):
  """`name -> fold_in(key, synth_stream)` for the stages that draw realisations."""
  streams = {s.name: s.synth_stream for s in stages}

  def key_of(name):
    if streams.get(name) is None:
      raise KeyError(f"stage {name!r} draws no realisations in synthesize")
    return jax.random.fold_in(key, streams[name])

  return key_of


def _gather_labels(labels, coords, carried, config: SynthConfig):
  """The labels (and the sources' carried volumes, in the same gather) at `coords`."""
  if not carried:
    return resample.sample_nearest(labels, coords, cval=config.background), {}
  stack = jnp.stack([labels.astype(jnp.int32), *carried.values()], axis=-1)
  stack = resample.sample_nearest(stack, coords, cval=0)
  # Outside the input volume the gather gives 0; padding must be the background value.
  raw = jnp.where(labelmaps.inside(coords, labels.shape), stack[..., 0], config.background)
  return raw, {name: stack[..., i + 1] for i, name in enumerate(carried)}


def _render_kspace(image, group, params, config, ctx, key_of):
  """The enabled k-space stages of `group`, on one spectrum."""
  group = [s for s in group if registry.enabled(s, config)]
  if not group:
    return image
  applied = params[group[0].name]["applied"]
  for stage in group[1:]:
    applied = applied | params[stage.name]["applied"]
  transforms = [
    lambda spectrum, s=s: s.apply(
      key_of(s.name) if s.synth_stream is not None else None,
      spectrum,
      params[s.name],
      registry.stage_config(s, config),
      ctx,
    )
    for s in group
  ]
  return kspace.render_spectrum(image, transforms, applied)


def _render_one(key, params, labels, config: SynthConfig, seeds=None, image=None, spatial_key=None):
  labelmaps.check_labels(labels, config)
  labelmaps.check_extra_inputs(labels, seeds, image, config)
  labels = jnp.asarray(labels)
  if labels.dtype == jnp.bool_:
    labels = labels.astype(jnp.uint8)
  info = jnp.iinfo(labels.dtype)
  if not info.min <= config.background <= info.max:
    # The padding value must be representable in the gathered dtype.
    labels = labels.astype(jnp.int32)
  bg, _, seg_values = labelmaps.tables(config)
  stages = registry.stages_of(config)
  key_of = _key_of(key, stages)
  phase = lambda name: registry.in_phase(config, name)
  inputs = {"seeds": seeds, "image": image}

  # Spatial: one coordinate map. `spatial_key` lets paired views and the channels of a
  # sample share one deformation realisation (`views.py`, `channels.py`).
  placed = geometry.placement(
    key_of if spatial_key is None else _key_of(spatial_key, stages),
    params,
    config,
    labels.shape,
    stages=phase("spatial"),
  )
  coords = geometry.evaluate(placed, config)
  # The first source is the base image, rendered whatever its config says.
  sources = [s for i, s in enumerate(phase("source")) if i == 0 or registry.enabled(s, config)]
  carried = {}
  for stage in sources:
    if stage.carry is not None:
      volume = stage.carry(params[stage.name], registry.stage_config(stage, config), inputs)
      if volume is not None:
        carried[stage.name] = volume
  # One nearest-neighbour resampling of the input labels and the carried volumes.
  raw, carried = _gather_labels(labels, coords, carried, config)
  index_map = labelmaps.label_index(raw, config, swap=placed.label_swap)
  ctx = registry.RenderContext(
    index_map,
    np.asarray(seg_values),
    bg,
    config.shape,
    config.spacing,
    config.voxel_std_scale,
    config=config,
    params=params,
    coords=coords,
    inputs=inputs,
    carried=carried,
    synth_key=key_of,
  )
  # Label stages edit the deformed anatomy, which the sources and the segmentation read.
  for stage in phase("labels"):
    if registry.enabled(stage, config):
      k = key_of(stage.name) if stage.synth_stream is not None else None
      index_map = stage.apply(
        k, index_map, params[stage.name], registry.stage_config(stage, config), ctx
      )
      ctx = ctx._replace(index_map=index_map)

  # Intensities, rendered on the deformed labels.
  image = None
  for stage in sources:
    k = key_of(stage.name) if stage.synth_stream is not None else None
    image = stage.apply(k, image, params[stage.name], registry.stage_config(stage, config), ctx)
  if image is None:
    raise ValueError("the config's registry has no source stage to render intensities")
  # The image stages and the k-space group, in registry order.
  kspace_done = False
  for stage in stages:
    if stage.phase == "kspace" and not kspace_done:
      image = _render_kspace(image, phase("kspace"), params, config, ctx, key_of)
      kspace_done = True
    if stage.phase != "image":
      continue
    k = key_of(stage.name) if stage.synth_stream is not None else None
    cfg = getattr(config, stage.name)  # every image stage has a config
    image = _image_stage(stage, image, params[stage.name], cfg, k, ctx)
  seg = lookup.take_small(seg_values, index_map)
  image = gamma.normalize(image)
  return image.astype(precision.float_dtype(*jax.tree.leaves(params))), seg


def _off(stage, cfg, image):
  return image if stage.off is None else stage.off(image, cfg)


def _image_stage(stage, image, p, cfg, key, ctx):
  """One image stage. `applied` is gated here, once for every stage; a cond rather than a
  where, so that a stage that is not applied computes nothing (a batch maps the single
  program, `render`, so the cond stays a cond). Both branches keep the image's dtype (float64
  only with float64 params)."""
  if not cfg.enabled:
    return _off(stage, cfg, image)
  return jax.lax.cond(
    p["applied"],
    lambda x: stage.apply(key, x, p, cfg, ctx).astype(x.dtype),
    lambda x: _off(stage, cfg, x).astype(x.dtype),
    image,
  )


_synthesize_jit = jax.jit(render, static_argnums=3)


def synthesize(
  key: PRNGKey,
  params: ParamsLike,
  labels: npt.ArrayLike,
  config: SynthConfig,
  *,
  seeds: npt.ArrayLike | None = None,
  image: npt.ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Renders one synthetic image and its segmentation from a label map.

  Pure and deterministic: the same `(key, params, labels, config)` gives the same bits.
  Jitted with `config` static; `jax.vmap` over `(key, params, labels)` renders a batch
  with per-sample parameters. Changing keys, params or label contents (same shapes and
  dtypes) never recompiles.

  Args:
    key: PRNG key for the random realisations (velocity and bias field grids, voxel and
      Rician noise).
    params: a pytree from `sample_params` (or `params_from_json`) for `config`.
    labels: integer array `(X, Y, Z)` of generation label values. A larger map is cropped
      at `params["crop"]["position"]`, a smaller one padded with `config.background`.
      Values unknown to the config render as background (`validate_labels` catches them).
    config: the static `SynthConfig`.
    seeds: for `subclusters` with `source="seeds"`: integer seed maps `(K, X, Y, Z)` on
      the labels' grid (FetalSynthGen layout, see `synthjax.data.load_seed_maps`).
    image: for `image_intensity`: a real image on the labels' grid, used as the
      intensities where `params["image_intensity"]["applied"]`.

  Returns:
    `(image, seg)`: float32 image in [0, 1] and int32 segmentation (output label values),
    both of shape `config.shape`; with `config.num_channels = C > 1` the image is
    `(C, *config.shape)`, one contrast per channel of the one segmentation. The image is
    differentiable with respect to the float params of the intensity path (`jax.grad`);
    with `jax_enable_x64` and float64 params it is computed and returned in float64.

  Raises:
    ValueError / TypeError at trace time for labels of the wrong rank or a non-integer dtype.

  Examples:
    >>> import jax, jax.numpy as jnp, synthjax
    >>> cfg = synthjax.presets.synthseg((0, 1), (32, 32, 32))
    >>> labels = jnp.zeros((32, 32, 32), jnp.int32).at[8:24, 8:24, 8:24].set(1)
    >>> params = synthjax.sample_params(jax.random.key(0), cfg)
    >>> image, seg = synthjax.synthesize(jax.random.key(1), params, labels, cfg)
    >>> image.shape, seg.dtype
    ((32, 32, 32), dtype('int32'))
  """
  if not isinstance(config, SynthConfig):
    raise TypeError(f"config must be a SynthConfig, got {type(config).__name__}")
  # Host arrays and Python scalars are moved to device arrays of the params' exact
  # dtypes first: jit keys its cache on them, and numpy inputs would compile separately.
  if not isinstance(labels, jax.Array):
    labels = np.asarray(labels)
    labelmaps.check_labels(labels, config)
    labels = jnp.asarray(labels)
  if seeds is not None and not isinstance(seeds, jax.Array):
    seeds = jnp.asarray(np.asarray(seeds))
  if image is not None and not isinstance(image, jax.Array):
    image = jnp.asarray(np.asarray(image, np.float32))
  return _synthesize_jit(
    key, sampling.as_device_params(params, config), labels, config, seeds=seeds, image=image
  )
