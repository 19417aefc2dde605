"""The generator: `sample_params` draws every parameter, `synthesize` renders a sample.

Stage order follows SynthSeg's `labels_to_image_model`, with FetalSynthGen's, anatomix's
and TorchIO's stages slotted in: flip, spatial deformation and crop (one nearest-neighbour
resampling of the labels, and of the seed classes with them), intensities (per-label
Gaussians, or sub-label classes, or a real image), texture, bias field, clip/normalise/
gamma, cortex blur, resolution simulation, slice-stack acquisition, k-space motion, the
k-space artifacts (Gibbs ringing, ghosting and spikes with one magnitude reconstruction),
Rician noise, (FetalSynthGen) noise, structural noise, skull-stripping boundaries, and a
final min-max normalisation.

Randomness is split in two: `sample_params(key, ...)` draws the strengths (angles, stds,
resolutions, whether each stage is applied) into a pytree of arrays; `synthesize(key, ...)`
draws the realisations (velocity and bias fields on their small grids, voxel noise) from
its own key. Each stage's key is `fold_in(key, stage_id)`, so switching a stage off or
adding a new one does not change the draws of the others.
"""

from __future__ import annotations

import functools

import numpy as np
import jax
import jax.numpy as jnp

from synthjax._src import channels
from synthjax._src import param_checks
from synthjax._src import registry
from synthjax._src import shell
from synthjax._src import strength as strength_lib
from synthjax._src.config import SynthConfig
from synthjax._src.ops import batching
from synthjax._src.ops import draw
from synthjax._src.ops import lookup
from synthjax._src.ops import precision
from synthjax._src.ops import resample
from synthjax._src.stages import gamma
from synthjax._src.stages import geometry
from synthjax._src.stages import gmm
from synthjax._src.stages import image_intensity
from synthjax._src.stages import kspace
from synthjax._src.stages import subclusters

PARAM_STAGES = registry.NAMES

# Label values up to this use a dense lookup table; above it, a sorted search.
_DENSE_LUT_MAX = 1 << 16


def _check_fixed(fixed, template_names):
  fixed = shell.check_fixed_dict(fixed, "a nested dict like the params JSON")
  shell.check_names(fixed, template_names, subject="fixed", noun="stage",
                    allowed_are="stages are")
  for stage, names in template_names.items():
    sub = fixed.get(stage)
    if sub is None:
      continue
    if not isinstance(sub, dict):
      raise TypeError(f"fixed[{stage!r}] must be a dict, got {type(sub).__name__}")
    shell.check_names(sub, names, subject=f"fixed[{stage!r}]", noun="parameter",
                      allowed_are=f"{stage} has")
  return fixed


def _sample_one(key, config: SynthConfig, fixed: dict, strength=None) -> dict:
  params = {}
  for stage in registry.STAGES:
    k = jax.random.fold_in(key, stage.param_stream)
    f = fixed.get(stage.name) or {}
    sampler = lambda k, f, stage=stage: stage.sample(k, config, f)
    if config.num_channels > 1 and stage.name in channels.CHANNEL_STAGES:
      sampler = channels.per_channel(sampler, config, stage.name)
    entries = None
    if stage.configured and not getattr(config, stage.name).enabled:
      shapes = jax.eval_shape(sampler, k, {})
      if "applied" in shapes:
        # A disabled stage is never applied, and says so; its other entries are zeros of
        # the right shapes (or the fixed values), so its params can be fed back as `fixed`
        # or replayed, and sampling it costs nothing.
        entries = {n: draw.pick(f, n, jnp.zeros(s.shape, s.dtype)) for n, s in shapes.items()}
        entries["applied"] = jnp.zeros(shapes["applied"].shape, bool)
    if entries is None:
      entries = sampler(k, f)
      if strength is not None:
        entries = strength_lib.weaken(k, stage.strength, entries, f, strength, config)
    params[stage.name] = entries
  return params


@functools.partial(jax.jit, static_argnums=1)
def _sample_params_jit(key, config, fixed, strength=None):
  return shell.map_keys(_sample_one, key, config, fixed, strength)


def sample_params(key, config: SynthConfig, *, fixed=None, strength=None) -> dict:
  """Draws every generation parameter of one sample (or of a batch of keys).

  Args:
    key: a JAX PRNG key (`jax.random.key` or `jax.random.PRNGKey`), or a batch of keys, in
      which case every leaf gets that leading batch axis.
    config: the static `SynthConfig`.
    fixed: optional nested dict shaped like the params JSON (`{"affine": {"rotation":
      [0, 0, 10]}, "flip": {"applied": False}}`). A present value is used exactly; a
      missing or `None` one is drawn. Draws that depend on a fixed value (e.g. slice
      thickness on resolution) use it. Unknown names raise `ValueError`.
    strength: optional augmentation strength in [0, 1], a scalar or one per key (a
      traced value is fine: changing it never recompiles). It moves every stage's draws
      toward the stage's identity: 0 gives the unmoved labels rendered by the plain
      label Gaussians, 1 (or None) the config's ranges. Stages with a magnitude (angles,
      stds, resolutions, artifact intensities) shrink it by `strength`; stages without
      one (flip, sub-label classes, slice stacks, boundaries, cortex blur) are applied
      with their probability times `strength`; the label Gaussians, the crop and a real
      image as intensities are left alone. Fixed values are kept as given.

  Returns:
    A dict of stage dicts of arrays, one per stage of `PARAM_STAGES` (`affine`,
    `deformation`, `crop`, `flip`, `gmm`, `bias`, `gamma`, `resolution`, `noise`, the MR
    artifacts, FetalSynthGen's intensity model and artifacts, `texture`). Every stage
    records `applied` (except `crop` and `gmm`, which always apply). Stages disabled in the
    config are still recorded, with `applied` False and zeros (or the fixed values) for
    their other entries, and are ignored.

  Examples:
    >>> import jax, synthjax
    >>> cfg = synthjax.presets.synthseg((0, 1, 2), (32, 32, 32))
    >>> p = synthjax.sample_params(jax.random.key(0), cfg, fixed={"flip": {"applied": False}})
    >>> bool(p["flip"]["applied"])
    False
    >>> mild = synthjax.sample_params(jax.random.key(0), cfg, strength=0.0)
    >>> bool(mild["affine"]["applied"] | mild["bias"]["applied"])
    False
  """
  if not isinstance(config, SynthConfig):
    raise TypeError(f"config must be a SynthConfig, got {type(config).__name__}")
  template = params_template(config)
  fixed = _check_fixed(fixed, template)
  param_checks.check_values(fixed, config, template, what="fixed")
  if strength is None:
    return _sample_params_jit(key, config, fixed)
  num_keys = key.shape[0] if shell.is_key_batch(key) else None
  return _sample_params_jit(key, config, fixed, strength_lib.as_strength(strength, num_keys))


# ---------------------------------------------------------------------------------------
# Label tables


@functools.lru_cache(maxsize=64)
def _tables(config: SynthConfig):
  values = list(config.label_values)
  bg = values.index(config.background)
  swap = np.arange(len(values), dtype=np.int32)
  for a, b in config.flip_pairs:
    ia, ib = values.index(a), values.index(b)
    swap[ia], swap[ib] = ib, ia
  seg = np.asarray(config.segmentation_values, np.int32)
  return bg, swap, seg


def label_index(raw: jax.Array, config: SynthConfig, *, swap=None) -> jax.Array:
  """Maps label values to their position in `config.label_values` (unknown: background).

  `swap` (optional, may be traced) is a permutation of those positions applied on top, e.g.
  the left/right swap of a flipped sample; it is composed into the small lookup table, so
  it costs no pass over the volume.
  """
  values = np.asarray(config.label_values, np.int64)
  bg = config.label_values.index(config.background)
  if jnp.iinfo(raw.dtype).bits > 32 or raw.dtype == jnp.uint32:
    # Values beyond int32 are unknown labels: map them to -1 before the narrowing cast
    # so they cannot wrap onto a known value.
    raw = jnp.where((raw < 0) | (raw > np.iinfo(np.int32).max), -1, raw)
  raw = raw.astype(jnp.int32)
  compose = (lambda table: jnp.asarray(table)) if swap is None else (
      lambda table: jnp.asarray(swap)[jnp.asarray(table)])
  bg_out = bg if swap is None else jnp.asarray(swap)[bg]
  if values.size <= lookup.MAX_SELECT_ENTRIES:
    positions = compose(np.arange(values.size, dtype=np.int32))
    return lookup.match_values(raw, values.tolist(), positions, bg_out)
  vmax = int(values.max())
  if vmax <= _DENSE_LUT_MAX:
    lut = np.full(vmax + 1, bg, np.int32)
    lut[values] = np.arange(values.size, dtype=np.int32)
    known = (raw >= 0) & (raw <= vmax)
    return jnp.where(known, compose(lut)[jnp.clip(raw, 0, vmax)], bg_out)
  order = np.argsort(values)
  sorted_vals = jnp.asarray(values[order].astype(np.int32))
  pos = jnp.clip(jnp.searchsorted(sorted_vals, raw), 0, values.size - 1)
  found = sorted_vals[pos] == raw
  return jnp.where(found, compose(order.astype(np.int32))[pos], bg_out)


def check_labels(labels, config: SynthConfig):
  """Rank, dtype and size checks of a label array, at trace time (shapes only)."""
  shape = getattr(labels, "shape", None)
  dtype = getattr(labels, "dtype", None)
  if shape is None or len(shape) != 3:
    raise ValueError(f"labels must be a rank-3 integer array (X, Y, Z), got shape {shape}")
  if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_)):
    raise TypeError(f"labels must have an integer dtype, got {dtype}; label maps stored as "
                    "floats can be checked and cast with synthjax.validate_labels")
  if min(shape) < 1:
    raise ValueError(f"labels has an empty axis: shape {shape}")


# ---------------------------------------------------------------------------------------
# Rendering


def _check_extra_inputs(labels, seeds, image, config: SynthConfig):
  sc, ii = config.subclusters, config.image_intensity
  if seeds is not None:
    if not (sc.enabled and sc.source == "seeds"):
      raise ValueError("seeds were given but the config does not use them: set "
                       "subclusters={'source': 'seeds', 'prob': ...}")
    k_max = sc.num_subclusters[1]
    if (getattr(seeds, "ndim", 0) != 4 or tuple(seeds.shape[1:]) != tuple(labels.shape)
        or seeds.shape[0] < k_max):
      raise ValueError(f"seeds must have shape (K >= {k_max}, *labels.shape) = "
                       f"({k_max}, {', '.join(map(str, labels.shape))}), got "
                       f"{getattr(seeds, 'shape', None)}")
    if not jnp.issubdtype(seeds.dtype, jnp.integer):
      raise TypeError(f"seeds must have an integer dtype, got {seeds.dtype}")
  elif sc.enabled and sc.source == "seeds":
    raise ValueError("the subclusters stage uses seed maps (source='seeds'): pass "
                     "seeds=... to synthesize (synthjax.data.load_seed_maps reads them)")
  if image is not None:
    if not ii.enabled:
      raise ValueError("an image was given but image_intensity is disabled in the config: "
                       "set image_intensity={'prob': ...}")
    if tuple(getattr(image, "shape", ())) != tuple(labels.shape):
      raise ValueError(f"image must have the labels' shape {tuple(labels.shape)}, got "
                       f"{getattr(image, 'shape', None)}")
  elif ii.enabled:
    raise ValueError("image_intensity is enabled: pass image=... (a real image on the "
                     "labels' grid) to synthesize")


def render(key, params, labels, config: SynthConfig, seeds=None, image=None,
           spatial_key=None):
  """The body of `synthesize`, traceable as it is (params already device arrays): the
  views and the sharded batch render through it. Under `jax.vmap` it renders sample by
  sample (`batching.per_sample`), so a sample of a batch is the single call's bits."""
  if not isinstance(config, SynthConfig):
    raise TypeError(f"config must be a SynthConfig, got {type(config).__name__}")
  body = lambda k, p, l, s, i, sk: _render(k, p, l, config, s, i, sk)
  return batching.per_sample(body)(key, params, labels, seeds, image, spatial_key)


def _render(key, params, labels, config: SynthConfig, seeds, image, spatial_key):
  if config.num_channels > 1:
    return channels.render_channels(_render_one, key, params, labels, config, seeds, image,
                                    spatial_key)
  return _render_one(key, params, labels, config, seeds, image, spatial_key)


def _render_one(key, params, labels, config: SynthConfig, seeds=None, image=None,
                spatial_key=None):
  check_labels(labels, config)
  _check_extra_inputs(labels, seeds, image, config)
  labels = jnp.asarray(labels)
  if labels.dtype == jnp.bool_:
    labels = labels.astype(jnp.uint8)
  info = jnp.iinfo(labels.dtype)
  if not info.min <= config.background <= info.max:
    # The padding value must be representable in the gathered dtype.
    labels = labels.astype(jnp.int32)
  bg, swap, seg_values = _tables(config)
  sub = lambda stage: jax.random.fold_in(key, registry.synth_stream(stage))
  sc = config.subclusters

  # Spatial: one nearest-neighbour resampling of the input labels (and of the seed
  # classes, gathered in the same pass).
  # `spatial_key` lets paired views share one deformation realisation (`views.py`).
  deform_key = sub("deformation") if spatial_key is None else jax.random.fold_in(
      spatial_key, registry.synth_stream("deformation"))
  coords = geometry.coordinate_components(deform_key, params, config, labels.shape)
  class_map = None
  if seeds is not None:
    classes = subclusters.seed_classes(jnp.asarray(seeds), params["subclusters"]["counts"], sc)
    pair = jnp.stack([labels.astype(jnp.int32), classes], axis=-1)
    pair = resample.sample_nearest(pair, coords, cval=0)
    raw, class_map = pair[..., 0], pair[..., 1]
    # Outside the input volume the gather gives 0; padding must be the background value.
    inside = _inside(coords, labels.shape)
    raw = jnp.where(inside, raw, config.background)
  else:
    raw = resample.sample_nearest(labels, coords, cval=config.background)
  # The flip's mirror is in the coordinate map; its swap of paired labels is in the table.
  swap_now = None
  if config.flip.enabled:
    swap_now = jnp.where(params["flip"]["applied"], jnp.asarray(swap),
                         jnp.arange(swap.size, dtype=jnp.int32))
  index_map = label_index(raw, config, swap=swap_now)
  if sc.enabled and seeds is None and sc.source == "procedural":
    class_map = subclusters.procedural_classes(
        sub("subclusters"), params["subclusters"], sc, index_map, subclusters.meta_table(config))

  # Intensities, rendered on the deformed labels.
  real = image
  if sc.enabled:
    image = subclusters.render(sub("gmm"), params["gmm"], params["subclusters"], index_map,
                               class_map, bg, config.voxel_std_scale)
  else:
    image = gmm.render_gmm(sub("gmm"), params["gmm"], index_map, bg, config.voxel_std_scale)
  if real is not None:
    real = resample.sample_linear(jnp.asarray(real, jnp.float32), coords, cval=0.0)
    real = image_intensity.scale_image(real, config.image_intensity.scale)
    image = jnp.where(params["image_intensity"]["applied"], real, image)
  # The image stages and the k-space group, in registry order.
  ctx = registry.RenderContext(index_map, np.asarray(seg_values), bg, config.shape,
                               config.spacing, config.voxel_std_scale)
  kspace_done = False
  for stage in registry.STAGES:
    if stage.phase == "kspace" and not kspace_done:
      image = kspace.apply_kspace_stages(image, params, config)
      kspace_done = True
    if stage.phase != "image":
      continue
    cfg = getattr(config, stage.name)
    off = (lambda x: x) if stage.off is None else (lambda x: stage.off(x, cfg))
    if not cfg.enabled:
      image = off(image)
      continue
    k = sub(stage.name) if stage.synth_stream is not None else None
    p = params[stage.name]
    # `applied` is gated here, once for every stage; a cond rather than a where, so a
    # stage that is not applied computes nothing (outside vmap, where it is a select).
    # Both branches keep the image's dtype (float64 only with float64 params).
    image = jax.lax.cond(p["applied"],
                         lambda x: stage.apply(k, x, p, cfg, ctx).astype(x.dtype),
                         lambda x: off(x).astype(x.dtype), image)
  seg = lookup.take_small(seg_values, index_map)
  image = gamma.normalize(image)
  return image.astype(precision.float_dtype(*jax.tree.leaves(params))), seg


def _inside(coords, shape):
  ok = True
  for a in range(3):
    idx = jnp.floor(coords[a] + 0.5)
    ok = ok & (idx >= 0) & (idx < shape[a])
  return ok


_synthesize_jit = jax.jit(render, static_argnums=3)


@functools.lru_cache(maxsize=64)
def params_template(config: SynthConfig) -> dict:
  """Shapes and dtypes of one sample's params for `config` (a dict of ShapeDtypeStructs)."""
  return jax.eval_shape(lambda k: _sample_one(k, config, {}), jax.random.key(0))


@functools.lru_cache(maxsize=64)
def params_defaults(config: SynthConfig) -> dict:
  """Params of one sample drawn from a fixed key (used to fill disabled stages)."""
  return jax.tree.map(np.asarray, _sample_one(jax.random.key(0), config, {}))


def as_device_params(params, config):
  template = params_template(config)
  shell.check_entries(params, template, noun="stages")
  out = {}
  for stage, entries in template.items():
    shell.check_entries(params[stage], entries, name=f"params[{stage!r}]")
    out[stage] = {n: shell.to_device(params[stage][n], spec.dtype)
                  for n, spec in entries.items()}
  return out


def synthesize(key, params, labels, config: SynthConfig, *, seeds=None, image=None):
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
    check_labels(labels, config)
    labels = jnp.asarray(labels)
  if seeds is not None and not isinstance(seeds, jax.Array):
    seeds = jnp.asarray(np.asarray(seeds))
  if image is not None and not isinstance(image, jax.Array):
    image = jnp.asarray(np.asarray(image, np.float32))
  return _synthesize_jit(key, as_device_params(params, config), labels, config,
                         seeds=seeds, image=image)



def validate_labels(labels, config: SynthConfig, *, name: str = "labels") -> np.ndarray:
  """Host-side check of a label map against a config; returns it as an int32 array.

  Args:
    labels: array-like label map (NIfTI label maps are often stored as floats).
    config: the `SynthConfig` whose `label_values` the map must use.
    name: how the map is named in error messages (e.g. its file path).

  Returns:
    The labels as a numpy int32 array of rank 3.

  Raises:
    ValueError: wrong rank, non-integer or non-finite values, or label values the config
      does not know (all of them listed with their voxel counts).
  """
  arr = np.asarray(labels)
  if arr.ndim != 3:
    raise ValueError(f"{name}: label map must have rank 3 (X, Y, Z), got shape {arr.shape}")
  if arr.dtype == bool:
    arr = arr.astype(np.uint8)
  if not np.issubdtype(arr.dtype, np.integer):
    if not np.issubdtype(arr.dtype, np.floating):
      raise ValueError(f"{name}: label map has non-numeric dtype {arr.dtype}")
    bad = ~np.isfinite(arr) | (arr != np.round(arr))
    if bad.any():
      where = tuple(int(i) for i in np.argwhere(bad)[0])
      raise ValueError(f"{name}: label map has {int(bad.sum())} non-integer value(s), e.g. "
                       f"{arr[where]!r} at voxel {where}")
  values, counts = np.unique(arr, return_counts=True)
  known = set(config.label_values)
  unknown = [(int(v), int(c)) for v, c in zip(values, counts) if int(v) not in known]
  if unknown:
    shown = ", ".join(f"{v} ({c} voxels)" for v, c in unknown[:20])
    more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
    raise ValueError(f"{name}: label value(s) not in config.label_values: {shown}{more}")
  if arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max:
    raise ValueError(f"{name}: label values do not fit in int32")
  return arr.astype(np.int32)
