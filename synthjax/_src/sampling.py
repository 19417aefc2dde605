"""Sampling: `sample_params` draws every stage's params from its own stream.

`sample_params(key, ...)` draws the strengths (angles, stds, resolutions, whether each
stage is applied) into a pytree of arrays, one dict per stage of the registry
(`registry.stages_of(config)`), each from `fold_in(key, stage.param_stream)`, so switching
a stage off or adding a new one does not change the draws of the others. The params
template (names, shapes and dtypes), the names a `fixed` dict may use and the defaults of
disabled stages all follow from what the stages' samplers return.
"""

from __future__ import annotations

import functools
import typing

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt

from synthjax._src import channels, param_checks, registry, shell
from synthjax._src import strength as strength_lib
from synthjax._src.config import SynthConfig
from synthjax._src.ops import batching, draw
from synthjax._src.pytypes import FixedParams, Params, PRNGKey

__all__ = [
  "PARAM_STAGES",
  "as_device_params",
  "params_defaults",
  "params_template",
  "sample_params",
]

PARAM_STAGES = registry.NAMES


def _check_fixed(fixed, template_names):
  fixed = shell.check_fixed_dict(fixed, "a nested dict like the params JSON")
  shell.check_names(fixed, template_names, subject="fixed", noun="stage", allowed_are="stages are")
  for stage, names in template_names.items():
    sub = fixed.get(stage)
    if sub is None:
      continue
    if not isinstance(sub, dict):
      raise TypeError(f"fixed[{stage!r}] must be a dict, got {type(sub).__name__}")
    shell.check_names(
      sub, names, subject=f"fixed[{stage!r}]", noun="parameter", allowed_are=f"{stage} has"
    )
  return fixed


def _sample_one(key, config: SynthConfig, fixed: dict, strength=None) -> dict:
  params = {}
  for stage in registry.stages_of(config):
    k = jax.random.fold_in(key, typing.cast(int, stage.param_stream))  # set by `register`
    f = fixed.get(stage.name) or {}
    sampler = lambda k, f, stage=stage: stage.sample(k, config, f)
    if config.num_channels > 1 and stage.per_channel:
      sampler = channels.per_channel(sampler, config, stage.name)
    entries = None
    if not registry.enabled(stage, config):
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
  # A batch of keys draws sample by sample (`batching.per_sample`): XLA would otherwise
  # optimise the vectorised samplers differently and round a draw in its last bit (a gamma
  # exponent an ulp off moves the image by 3e-5), so a pipeline batch's params are the single
  # calls' bits.
  if not shell.is_key_batch(key):
    return _sample_one(key, config, fixed, strength)
  one = batching.per_sample(lambda k, f, *s: _sample_one(k, config, f, *s))
  return shell.map_keys(lambda k, _, f, *s: one(k, f, *s), key, config, fixed, strength)


def sample_params(
  key: PRNGKey,
  config: SynthConfig,
  *,
  fixed: FixedParams | None = None,
  strength: npt.ArrayLike | None = None,
) -> Params:
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
    out[stage] = {n: shell.to_device(params[stage][n], spec.dtype) for n, spec in entries.items()}
  return out
