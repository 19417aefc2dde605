"""Label ensembles: synthetic label maps painted from transformed templates (anatomix step 1).

A label ensemble is a label map built from `n` templates, `n` drawn per ensemble, each
resampled (nearest neighbour) through its own random affine and painted in order, so later
templates overwrite earlier ones on their foreground voxels. The painted map is then
optionally median-filtered and masked by a randomly placed sphere whose radius is modulated
by a smooth noise field (a deformed sphere). Inside that mask, the voxels no template
painted can take an `envelope_label`, and a rim along the mask boundary can take a
`rim_label`. The templates are either a stack of label maps (`load_templates`) or random
shapes drawn on the fly (smooth deformed ellipsoids, optionally split into several labels
by the argmax of a few smooth fields on a small grid).

Label values of an ensemble:

- `0`: background (outside the mask, and unpainted voxels when there is no envelope);
- `envelope_label`: inside the mask, where no template paints (anatomix increments every
  label inside its mask by one, which turns that background into label 1);
- `rim_label`: the band `radius - w < distance <= radius + w` around the mask boundary
  (anatomix's "enveloped" ensembles: dilation minus erosion by a ball of radius `w`);
- templates, from `label_offset` up. `label_mode="slot"` (anatomix): the foreground of the
  template in slot `s` (0-based painting order) gets `label_offset + s`, whatever its own
  label values. `label_mode="offset"`: template label `l >= 1` in slot `s` gets
  `label_offset + s * stride + l - 1`, with `stride = label_stride` or, when that is
  `None`, the largest label of the template stack (random shapes: `num_shape_labels[1]`),
  so every (slot, label) pair has its own value.

`ensemble_labels(cfg, templates)` lists every value a config can produce, to build a
generator config for the ensembles.

Randomness is split as in the generator: `sample_ensemble_params(key, ...)` draws the counts,
template indices, affines, sphere and envelope settings; `render_ensemble(key, ...)` draws
the realisations (the sphere's noise field and the random shapes' fields) from its own key.
Each parameter and each realisation has its own `fold_in` stream, so adding one never
changes the others.

Differences from anatomix (documented choices, not omissions):

- anatomix rotates each template about the array corner with wrap-around
  (`scipy.ndimage.affine_transform(..., mode="grid-wrap")`), which in effect scatters
  templates over the whole field of view; here the affine is about the centres of the
  template and output grids, with an explicit translation (a fraction of the FOV) and
  zero outside the template (no wrap-around).
- anatomix deforms its sphere with a multi-scale displacement field; here the radius is
  modulated, `|x - c| <= R (1 + strength * n(x))`, with `n` a unit Gaussian field drawn
  on a small grid and upsampled trilinearly (the same small-grid construction as the bias
  field), which is cheaper and keeps the mask star-shaped and in one piece.
- anatomix paints slot 0 with label 0 (a no-op); here every slot paints.

Reference:
  Dey et al., "Learning general-purpose biomedical volume representations using
  randomized synthesis", ICLR 2025 (anatomix, `synthetic-data-generation/
  step1_generate_labels.py` and `datagen_utils.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from synthjax._src import shell
from synthjax._src.checks import (
  JsonConfig,
  choice,
  config_class,
  field,
  flag,
  int_range,
  integer,
  optional,
  prob,
  real_range,
  sizes,
)
from synthjax._src.ops import draw, resample
from synthjax._src.pytypes import PRNGKey

Range = tuple[float, float]
_LABEL_MODES = ("slot", "offset")


@config_class
class EnsembleConfig(JsonConfig):
  """Static, hashable settings of the label-ensemble generator.

  Defaults mirror anatomix's `step1_generate_labels.py` where it has an equivalent (noted
  per field); sizes are fractions of the output field of view, so they do not depend on
  `shape` (anatomix's values are in voxels at 128^3 and are rescaled the same way).

  Attributes:
    shape: output shape `(X, Y, Z)`.
    num_templates: inclusive range of the number of templates per ensemble (anatomix
      `randint(20, 40)`, i.e. 20..39). The upper bound is the static number of slots.
    rotation: range of each of the three rotation angles, degrees (anatomix +-180).
    scaling: range of each axis' scaling of the output-to-template coordinate map, so a
      factor above 1 shrinks the template (anatomix 1 +- 0.5).
    shear: range of the three upper-triangular shear terms (anatomix +-0.5).
    prob_reflect: probability that each axis is mirrored (anatomix 0.5).
    translation: range of each axis' translation, fraction of the output size (anatomix
      translates by +-5 voxels but rotates about the corner with wrap-around, which in
      effect places templates anywhere; see the module docstring).
    shape_radius: random-shapes source: range of the shape radius before the affine,
      fraction of `min(shape)`.
    shape_noise: random-shapes source: range of the relative radius modulation of a
      shape (0: an ellipsoid after the affine).
    num_shape_labels: random-shapes source: range of the number of labels inside one
      shape (used with `label_mode="offset"`; in "slot" mode a shape is one label).
    shape_grid: random-shapes source: nodes per axis of the small grid of a shape's
      noise and label fields (spanning 3 radii).
    median_filter: apply a 3x3x3 median filter to the painted map before masking
      (anatomix's `skimage.filters.median`).
    prob_sphere: probability of the deformed-sphere foreground mask (anatomix 2/3).
    sphere_radius: range of the sphere radius, fraction of `min(shape)` (anatomix
      `randint(48, 72)` voxels at 128).
    sphere_shift: range of each axis' centre shift, fraction of the output size
      (anatomix `randint(-32, 32)` voxels at 128).
    sphere_noise: range of the relative radius modulation strength (std of the noise
      field as a fraction of the radius; 0 gives an exact sphere).
    sphere_grid_scale: range of the ratio between the noise grid and the output shape
      (anatomix's noise scales of 8, 16 and 32 voxels at 128 are grids of 1/16 to 1/4).
    envelope_label: label of the voxels inside the mask that no template paints, or None
      (anatomix: 1).
    prob_envelope: probability of the envelope when the mask is applied (anatomix 1).
    rim_label: label of the rim along the mask boundary, or None for no rim (anatomix
      gives its rim the next free label, half of the masked ensembles).
    prob_rim: probability of the rim when the mask is applied (anatomix 0.5).
    rim_width: range of the rim half-width `w`, in voxels (anatomix {2, 3, 4}).
    label_mode: "slot" (one label per template slot, anatomix) or "offset" (each
      template keeps its labels, offset per slot).
    label_offset: label of slot 0 (its first label in "offset" mode); must exceed the
      envelope and rim labels.
    label_stride: labels reserved per slot in "offset" mode, or None for the largest
      label of the template stack (random shapes: `num_shape_labels[1]`). Template
      labels above it are not painted.
  """

  shape: tuple[int, int, int] = field(default=(128, 128, 128), check=sizes(3, low=2))
  num_templates: tuple[int, int] = field(
    default=(20, 39), check=int_range(low=0, high_at_least=1, what="template")
  )
  rotation: Range = field(default=(-180.0, 180.0), check=real_range())
  scaling: Range = field(default=(0.5, 1.5), check=real_range(low=0.0, low_open=True))
  shear: Range = field(default=(-0.5, 0.5), check=real_range())
  prob_reflect: float = field(default=0.5, check=prob())
  translation: Range = field(default=(-0.4, 0.4), check=real_range())
  shape_radius: Range = field(default=(0.1, 0.25), check=real_range(low=0.0, low_open=True))
  shape_noise: Range = field(default=(0.0, 0.3), check=real_range(low=0.0))
  num_shape_labels: tuple[int, int] = field(default=(1, 4), check=int_range(low=1))
  shape_grid: int = field(default=6, check=integer(low=2))
  median_filter: bool = field(default=True, check=flag())
  prob_sphere: float = field(default=2.0 / 3.0, check=prob())
  sphere_radius: Range = field(default=(0.375, 0.5625), check=real_range(low=0.0, low_open=True))
  sphere_shift: Range = field(default=(-0.25, 0.25), check=real_range())
  sphere_noise: Range = field(default=(0.02, 0.15), check=real_range(low=0.0))
  sphere_grid_scale: Range = field(
    default=(0.0625, 0.25), check=real_range(low=0.0, high=1.0, low_open=True)
  )
  envelope_label: int | None = field(default=1, check=optional(integer(low=1)))
  prob_envelope: float = field(default=1.0, check=prob())
  rim_label: int | None = field(default=None, check=optional(integer(low=1)))
  prob_rim: float = field(default=0.5, check=prob())
  rim_width: Range = field(default=(2.0, 4.0), check=real_range(low=0.0))
  label_mode: str = field(default="slot", check=choice(_LABEL_MODES))
  label_offset: int = field(default=2, check=integer(low=1))
  label_stride: int | None = field(default=None, check=optional(integer(low=1)))

  def _check_together(self):
    n = type(self).__name__
    if self.envelope_label is not None and self.envelope_label == self.rim_label:
      raise ValueError(
        f"{n}.envelope_label and {n}.rim_label must differ, both are {self.rim_label}"
      )
    for name in ("envelope_label", "rim_label"):
      value = getattr(self, name)
      if value is not None and value >= self.label_offset:
        raise ValueError(
          f"{n}.{name} ({value}) must be below {n}.label_offset "
          f"({self.label_offset}): template labels start at label_offset"
        )
    if max_label(self, 1) >= 2**31:
      raise ValueError(
        f"{n}: labels would exceed int32 (label_offset {self.label_offset}, "
        f"label_stride {self.label_stride}, {self.num_templates[1]} slots)"
      )

  @property
  def max_templates(self) -> int:
    """Static number of template slots (`num_templates[1]`)."""
    return self.num_templates[1]

  def replace(self, **changes: Any) -> EnsembleConfig:
    """A copy with the given fields replaced (and checked again)."""
    return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------
# Labels


def _stride(cfg: EnsembleConfig, max_template_label) -> int:
  if cfg.label_stride is not None:
    return cfg.label_stride
  if max_template_label is None:
    return cfg.num_shape_labels[1]
  return max(int(max_template_label), 1)


def max_label(cfg: EnsembleConfig, max_template_label: int | None = None) -> int:
  """Largest label value `cfg` can produce (templates with labels up to
  `max_template_label`, or the random-shapes source when None)."""
  special = max([0] + [v for v in (cfg.envelope_label, cfg.rim_label) if v is not None])
  n = cfg.num_templates[1]
  if cfg.label_mode == "slot":
    return max(special, cfg.label_offset + n - 1)
  return max(special, cfg.label_offset + n * _stride(cfg, max_template_label) - 1)


def ensemble_labels(cfg: EnsembleConfig, templates: ArrayLike | None = None) -> list[int]:
  """Every label value `render_ensemble` can produce with `cfg` and `templates`, sorted.

  Args:
    cfg: the ensemble config.
    templates: the template stack (its label values are read) or None for random shapes.

  Returns:
    Sorted list of ints, 0 first. With templates in "offset" mode only the values of
    labels present in the stack are listed.
  """
  values = {0}
  values.update(v for v in (cfg.envelope_label, cfg.rim_label) if v is not None)
  n = cfg.num_templates[1]
  if cfg.label_mode == "slot":
    values.update(cfg.label_offset + s for s in range(n))
    return sorted(values)
  if templates is None:
    present = range(1, cfg.num_shape_labels[1] + 1)
    stride = _stride(cfg, None)
  else:
    present = [int(v) for v in np.unique(np.asarray(templates)) if v > 0]
    stride = _stride(cfg, max(present, default=1))
  for s in range(n):
    values.update(cfg.label_offset + s * stride + l - 1 for l in present if l <= stride)
  return sorted(values)


# ---------------------------------------------------------------------------------------
# Parameters

# Every parameter draws from its own column of one block of random bits (column ids are
# stable: never renumber, only append), so fixing one never changes the others. One `bits`
# call keeps the sampling program small (each random draw compiles its own hash).
_PARAM_STREAMS = {
  "num_templates": 0,
  "template_index": 1,
  "rotation": 2,
  "scaling": 3,
  "shear": 4,
  "reflect": 5,
  "translation": 6,
  "shape_radius": 7,
  "shape_noise": 8,
  "num_shape_labels": 9,
  "sphere_applied": 10,
  "sphere_radius": 11,
  "sphere_shift": 12,
  "sphere_noise": 13,
  "sphere_grid_scale": 14,
  "envelope_applied": 15,
  "rim_applied": 16,
  "rim_width": 17,
}
_SYNTH_STREAMS = {"sphere": 0, "shapes": 1}

PARAM_NAMES = tuple(_PARAM_STREAMS)


def _param_specs(cfg: EnsembleConfig) -> dict[str, Any]:
  """Shape and dtype of every params entry."""
  n = cfg.num_templates[1]
  f, i, b = jnp.float32, jnp.int32, jnp.bool_
  return {
    "num_templates": ((), i),
    "template_index": ((n,), i),
    "rotation": ((n, 3), f),
    "scaling": ((n, 3), f),
    "shear": ((n, 3), f),
    "reflect": ((n, 3), b),
    "translation": ((n, 3), f),
    "shape_radius": ((n,), f),
    "shape_noise": ((n,), f),
    "num_shape_labels": ((n,), i),
    "sphere_applied": ((), b),
    "sphere_radius": ((), f),
    "sphere_shift": ((3,), f),
    "sphere_noise": ((), f),
    "sphere_grid_scale": ((), f),
    "envelope_applied": ((), b),
    "rim_applied": ((), b),
    "rim_width": ((), f),
  }


def _pick(fixed, name, sampled):
  """`draw.pick`, where a per-slot entry may also be given once for every slot."""
  value = fixed.get(name)
  if value is not None and sampled.ndim >= 1:
    value = jnp.asarray(value, sampled.dtype)
    if value.ndim >= 1 and value.shape == sampled.shape[1:]:
      return jnp.broadcast_to(value, sampled.shape)
  return draw.pick(fixed, name, sampled)


def _unit(bits):
  """Uniform floats in [0, 1) from uint32 bits (the 23 high bits, as `jax.random.uniform`)."""
  one = jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32)
  return one - 1.0


def _sample_one(key, cfg: EnsembleConfig, fixed: dict[str, Any]) -> dict[str, Any]:
  specs = _param_specs(cfg)
  rows = max(max(math.prod(shape), 1) for shape, _ in specs.values())
  block = jax.random.bits(key, (rows, len(_PARAM_STREAMS)), jnp.uint32)

  def bits(name):
    shape = specs[name][0]
    return block[: max(math.prod(shape), 1), _PARAM_STREAMS[name]].reshape(shape)

  def uniform(name, rng):
    lo, hi = rng
    return (lo + _unit(bits(name)) * (hi - lo)).astype(jnp.float32)

  def bernoulli(name, prob):
    return _unit(bits(name)) < prob  # prob 0: never; prob 1: always

  def integer(name, rng):  # modulo bias below 2^-20 for ranges under 4096
    lo, hi = rng
    return (lo + bits(name) % jnp.uint32(hi - lo + 1)).astype(jnp.int32)

  sampled = {
    "num_templates": integer("num_templates", cfg.num_templates),
    # Reduced modulo the stack size at render time, so params do not depend on it.
    "template_index": integer("template_index", (0, 2**31 - 1)),
    "rotation": uniform("rotation", cfg.rotation),
    "scaling": uniform("scaling", cfg.scaling),
    "shear": uniform("shear", cfg.shear),
    "reflect": bernoulli("reflect", cfg.prob_reflect),
    "translation": uniform("translation", cfg.translation),
    "shape_radius": uniform("shape_radius", cfg.shape_radius),
    "shape_noise": uniform("shape_noise", cfg.shape_noise),
    "num_shape_labels": integer("num_shape_labels", cfg.num_shape_labels),
    "sphere_applied": bernoulli("sphere_applied", cfg.prob_sphere),
    "sphere_radius": uniform("sphere_radius", cfg.sphere_radius),
    "sphere_shift": uniform("sphere_shift", cfg.sphere_shift),
    "sphere_noise": uniform("sphere_noise", cfg.sphere_noise),
    "sphere_grid_scale": uniform("sphere_grid_scale", cfg.sphere_grid_scale),
    "envelope_applied": bernoulli(
      "envelope_applied", cfg.prob_envelope if cfg.envelope_label else 0.0
    ),
    "rim_applied": bernoulli("rim_applied", cfg.prob_rim if cfg.rim_label else 0.0),
    "rim_width": uniform("rim_width", cfg.rim_width),
  }
  return {name: _pick(fixed, name, value) for name, value in sampled.items()}


@functools.partial(jax.jit, static_argnums=1)
def _sample_jit(key, cfg, fixed):
  return shell.map_keys(_sample_one, key, cfg, fixed)


def _check_fixed(fixed, cfg):
  fixed = shell.check_fixed_dict(fixed, "a dict of ensemble params")
  shell.check_names(
    fixed,
    _PARAM_STREAMS,
    subject="fixed",
    noun="ensemble parameter",
    allowed_are="the parameters are",
  )
  for name in ("envelope_applied", "rim_applied"):
    label = cfg.envelope_label if name == "envelope_applied" else cfg.rim_label
    value = fixed.get(name)
    if (
      label is None
      and value is not None
      and not isinstance(value, jax.core.Tracer)
      and np.any(np.asarray(value))
    ):
      raise ValueError(
        f"fixed[{name!r}] is True but EnsembleConfig.{name.split('_')[0]}_label is None"
      )
  return {k: v for k, v in fixed.items() if v is not None}


def sample_ensemble_params(
  key: PRNGKey, cfg: EnsembleConfig, *, fixed: dict[str, Any] | None = None
) -> dict[str, Any]:
  """Draws the parameters of one label ensemble (or of a batch of keys).

  Args:
    key: a JAX PRNG key, or a batch of keys (every entry then gets that batch axis).
    cfg: the static `EnsembleConfig`; `n = cfg.num_templates[1]` below.
    fixed: optional dict of entries to use instead of drawing them. A per-slot entry
      may be given for all slots at once (e.g. `"rotation": [0, 0, 0]`). Unknown names
      raise `ValueError`.

  Returns:
    A flat dict of arrays:

    - `num_templates` int32 `()`: active slots (the first ones); the rest paint nothing.
    - `template_index` int32 `(n,)`: template of each slot, taken modulo the stack size.
    - `rotation` (deg), `scaling`, `shear`, `translation` (fraction of the output size)
      float32 `(n, 3)`, `reflect` bool `(n, 3)`: each slot's affine.
    - `shape_radius`, `shape_noise` float32 `(n,)`, `num_shape_labels` int32 `(n,)`:
      random-shapes source only.
    - `sphere_applied` bool, `sphere_radius` (fraction of `min(shape)`), `sphere_shift`
      `(3,)` (fraction of the shape), `sphere_noise`, `sphere_grid_scale`: the mask.
    - `envelope_applied`, `rim_applied` bool, `rim_width` (voxels).
  """
  if not isinstance(cfg, EnsembleConfig):
    raise TypeError(f"cfg must be an EnsembleConfig, got {type(cfg).__name__}")
  return _sample_jit(key, cfg, _check_fixed(fixed, cfg))


# ---------------------------------------------------------------------------------------
# Rendering


def _mat3(a, b):
  # Written out so that a vmapped batch evaluates exactly the same products in the same
  # order as a single call (a batched dot may not), which keeps integer maps bitwise equal.
  return [
    [a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j] for j in range(3)] for i in range(3)
  ]


def slot_matrix(
  rotation: jax.Array, scaling: jax.Array, shear: jax.Array, reflect: jax.Array
) -> list[list[Any]]:
  """Linear part `Rz Ry Rx @ Shear @ diag(±scaling)` of a slot's output-to-template map.

  Rotation angles in degrees about axes 0, 1, 2 (as `geometry.affine_matrix`); `shear`
  holds the upper-triangular terms (0, 1), (0, 2), (1, 2) (anatomix). Returns a nested
  3x3 list of scalars.
  """
  a = jnp.deg2rad(rotation.astype(jnp.float32))
  c, s = jnp.cos(a), jnp.sin(a)
  one, zero = jnp.float32(1.0), jnp.float32(0.0)
  rx = [[one, zero, zero], [zero, c[0], -s[0]], [zero, s[0], c[0]]]
  ry = [[c[1], zero, s[1]], [zero, one, zero], [-s[1], zero, c[1]]]
  rz = [[c[2], -s[2], zero], [s[2], c[2], zero], [zero, zero, one]]
  sh = shear.astype(jnp.float32)
  shm = [[one, sh[0], sh[1]], [zero, one, sh[2]], [zero, zero, one]]
  sc = jnp.where(reflect, -1.0, 1.0).astype(jnp.float32) * scaling.astype(jnp.float32)
  scm = [[sc[0], zero, zero], [zero, sc[1], zero], [zero, zero, sc[2]]]
  return _mat3(_mat3(_mat3(_mat3(rz, ry), rx), shm), scm)


def _apply3(m, d):
  return [m[i][0] * d[0] + m[i][1] * d[1] + m[i][2] * d[2] for i in range(3)]


def _small_grid_coords(x, n_out, g):
  """Align-corners coordinates of output index `x` in the first `g` (traced) nodes."""
  # The clamp keeps float32 rounding from giving node g a weight of one ulp.
  return jnp.minimum(x * ((g - 1.0) / max(n_out - 1, 1)), g - 1.0)


def sphere_mask(
  key: PRNGKey, p: dict[str, Any], cfg: EnsembleConfig
) -> tuple[jax.Array, jax.Array]:
  """Deformed sphere: returns `(inside, rim)` bool maps of `cfg.shape`.

  `inside` is `|x - c| <= R (1 + sphere_noise * n(x))` with `R = sphere_radius *
  min(shape)` voxels, `c` the FOV centre shifted by `sphere_shift * shape`, and `n` a unit
  Gaussian field on a grid of `ceil(sphere_grid_scale * shape)` nodes, trilinearly
  upsampled; `rim` is `r - w < |x - c| <= r + w` for that modulated radius `r` and
  `w = rim_width` (dilation minus erosion by a ball, as anatomix, for a sphere).
  """
  shape = cfg.shape
  g_max = tuple(draw.max_grid_size(cfg.sphere_grid_scale[1], s) for s in shape)
  small = jax.random.normal(key, g_max, jnp.float32)
  grid = resample.grid_coords(shape)
  g = [draw.grid_size(p["sphere_grid_scale"], shape[a], g_max[a]) for a in range(3)]
  coords = jnp.stack([_small_grid_coords(grid[a], shape[a], g[a]) for a in range(3)])
  noise = resample.sample_linear(small, coords, clamp=True)
  radius = p["sphere_radius"] * jnp.float32(min(shape)) * (1.0 + p["sphere_noise"] * noise)
  centre = [(shape[a] - 1) / 2.0 + p["sphere_shift"][a] * shape[a] for a in range(3)]
  d = [grid[a] - centre[a] for a in range(3)]
  dist = jnp.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
  inside = dist <= radius
  w = p["rim_width"]
  rim = (dist > radius - w) & (dist <= radius + w)
  return inside, rim


def _shape_channels(cfg: EnsembleConfig) -> int:
  n_lab = cfg.num_shape_labels[1]
  return 1 + (n_lab if cfg.label_mode == "offset" and n_lab > 1 else 0)


def shape_fields(key: PRNGKey, cfg: EnsembleConfig) -> jax.Array:
  """Unit Gaussian small-grid fields of every slot's random shape, `(n, g, g, g, C)`:
  channel 0 modulates the boundary, channels 1.. score the labels ("offset" mode)."""
  g = cfg.shape_grid
  return jax.random.normal(key, (cfg.num_templates[1], g, g, g, _shape_channels(cfg)), jnp.float32)


def _random_shape(fields, u, p, s, cfg: EnsembleConfig):
  """Random-shapes source: `(values, foreground)` of slot `s` at template offsets `u`.

  In units of the shape radius, the shape is `|v| < 1 + shape_noise * n0(v)` with `n0`
  channel 0 of `fields` (`shape_grid^3` nodes spanning `[-1.5, 1.5]^3`, trilinear); in
  "offset" mode its labels are `1 + argmax_l n_l(v)` over the first `num_shape_labels`
  other channels.
  """
  g = cfg.shape_grid
  n_lab = _shape_channels(cfg) - 1
  radius = p["shape_radius"][s] * jnp.float32(min(cfg.shape))
  v = [ui / radius for ui in u]
  coords = jnp.stack([(vi / 3.0 + 0.5) * (g - 1) for vi in v])
  # One gather pass for the boundary noise (channel 0) and the label scores.
  values = resample.sample_linear(fields, coords, clamp=True)
  norm = jnp.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
  fg = norm < 1.0 + p["shape_noise"][s] * values[..., 0]
  if n_lab == 0:
    return jnp.ones(fg.shape, jnp.int32), fg
  scores = jnp.where(jnp.arange(n_lab) < p["num_shape_labels"][s], values[..., 1:], -jnp.inf)
  return jnp.argmax(scores, axis=-1).astype(jnp.int32) + 1, fg


def median3(x: jax.Array) -> jax.Array:
  """3x3x3 median with edge extension (`scipy.ndimage.median_filter(x, 3, mode="nearest")`)."""
  X, Y, Z = x.shape
  pad = jnp.pad(x, 1, mode="edge")
  stack = jnp.stack(
    [pad[i : i + X, j : j + Y, k : k + Z] for i in range(3) for j in range(3) for k in range(3)],
    axis=-1,
  )
  return jnp.sort(stack, axis=-1)[..., 13]


def _render(key, p, templates, cfg: EnsembleConfig):
  shape = cfg.shape
  n = cfg.num_templates[1]
  grid = resample.grid_coords(shape)
  centre = [(s - 1) / 2.0 for s in shape]
  rel = [grid[a] - centre[a] for a in range(3)]
  count = jnp.clip(p["num_templates"], 0, n)
  if templates is None:
    fields = shape_fields(jax.random.fold_in(key, _SYNTH_STREAMS["shapes"]), cfg)
  stride = cfg.label_stride or cfg.num_shape_labels[1]
  if templates is not None:
    num_t = templates.shape[0]
    t_centre = [(s - 1) / 2.0 for s in templates.shape[1:]]
    if cfg.label_mode == "offset" and cfg.label_stride is None:
      # The stack's largest label (a reduction on the device, shared by a vmapped batch).
      stride = jnp.maximum(jnp.max(templates).astype(jnp.int32), 1)

  def paint(s, out):
    m = slot_matrix(p["rotation"][s], p["scaling"][s], p["shear"][s], p["reflect"][s])
    shift = [p["translation"][s, a] * shape[a] for a in range(3)]
    u = _apply3(m, [rel[a] - shift[a] for a in range(3)])
    if templates is not None:
      index = jnp.mod(p["template_index"][s], num_t)
      tpl = jax.lax.dynamic_index_in_dim(templates, index, 0, keepdims=False)
      coords = jnp.stack([u[a] + t_centre[a] for a in range(3)])
      values = resample.sample_nearest(tpl, coords, cval=0).astype(jnp.int32)
      fg = values > 0
    else:
      values, fg = _random_shape(fields[s], u, p, s, cfg)
    if cfg.label_mode == "slot":
      label = cfg.label_offset + s
    else:
      fg = fg & (values <= stride)
      label = cfg.label_offset + s * stride + values - 1
    return jnp.where(fg & (s < count), label, out)

  out = jax.lax.fori_loop(0, n, paint, jnp.zeros(shape, jnp.int32))
  if cfg.median_filter:
    out = median3(out)

  masked = p["sphere_applied"]
  # Under `vmap` both branches run; a single call skips the sphere when it is off.
  inside, rim = jax.lax.cond(
    masked,
    lambda: sphere_mask(jax.random.fold_in(key, _SYNTH_STREAMS["sphere"]), p, cfg),
    lambda: (jnp.ones(shape, bool), jnp.zeros(shape, bool)),
  )
  out = jnp.where(inside | ~masked, out, 0)
  if cfg.envelope_label is not None:
    fill = masked & p["envelope_applied"] & inside & (out == 0)
    out = jnp.where(fill, cfg.envelope_label, out)
  if cfg.rim_label is not None:
    out = jnp.where(masked & p["rim_applied"] & rim, cfg.rim_label, out)
  return out.astype(jnp.int32)


_render_jit = jax.jit(_render, static_argnums=3)


def _as_device_params(params, cfg):
  specs = _param_specs(cfg)
  shell.check_entries(params, specs)
  out = {}
  for name, (shape, dtype) in specs.items():
    value = shell.to_device(params[name], dtype)
    if value.shape != shape:
      raise ValueError(f"params[{name!r}] has shape {value.shape}, expected {shape}")
    out[name] = value
  return out


def render_ensemble(
  key: PRNGKey, params: dict[str, Any], templates: ArrayLike | None, cfg: EnsembleConfig
) -> jax.Array:
  """Renders one label ensemble.

  Pure and deterministic: the same `(key, params, templates, cfg)` gives the same map.
  Jitted with `cfg` static; `jax.vmap` over `(key, params)` with shared templates renders
  a batch, equal bit for bit to the single calls. Other keys, params or template contents
  of the same shape and dtype do not recompile.

  Args:
    key: PRNG key of the realisations (the sphere's noise field, the random shapes).
    params: a dict from `sample_ensemble_params` for `cfg`.
    templates: integer array `(T, X', Y', Z')` of template label maps (0 = background,
      any shape), or None for the random-shapes source. Slot `s` paints template
      `template_index[s] % T` sampled by nearest neighbour (zero outside it) at
      `M_s (x - c - t_s) + c'`, where `x` is an output voxel, `c` and `c'` the output and
      template centres, `t_s = translation[s] * shape` (so the template moves by `t_s`)
      and `M_s = slot_matrix(...)` (so a scaling above 1 shrinks it).
    cfg: the static `EnsembleConfig`.

  Returns:
    int32 label map of shape `cfg.shape` (label values: see the module docstring).
  """
  if not isinstance(cfg, EnsembleConfig):
    raise TypeError(f"cfg must be an EnsembleConfig, got {type(cfg).__name__}")
  if templates is not None:
    if not isinstance(templates, jax.Array):
      templates = np.asarray(templates)
    if templates.ndim != 4 or templates.shape[0] < 1 or min(templates.shape[1:]) < 1:
      raise ValueError(
        f"templates must be a non-empty (T, X, Y, Z) stack of label maps, got "
        f"shape {templates.shape}"
      )
    if not jnp.issubdtype(templates.dtype, jnp.integer):
      raise TypeError(f"templates must have an integer dtype, got {templates.dtype}")
    if not isinstance(templates, jax.Array):
      templates = jnp.asarray(templates)
  return _render_jit(key, _as_device_params(params, cfg), templates, cfg)
