"""The spatial phase: affine, diffeomorphic deformation, crop/pad and left/right flip.

The affine, the deformation and the crop are composed into one coordinate map from the
output grid to the input label map, so the labels are resampled once per sample (nearest
neighbour). The flip mirrors the output grid inside the same map and swaps the paired labels
in the label lookup table, so it adds no pass over the volume.

References:
  Billot et al., "SynthSeg: Segmentation of brain MRI scans of any contrast and resolution
  without retraining", MedIA 2023 (`RandomSpatialDeformation`, `RandomCrop`, `RandomFlip`).
  Arsigny et al., "A Log-Euclidean framework for statistics on diffeomorphisms", MICCAI
  2006 (scaling and squaring).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from synthjax._src.checks import (
  Range,
  config_class,
  field,
  flag,
  integer,
  optional,
  prob,
  real_range,
)
from synthjax._src.ops import draw, resample
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage

if TYPE_CHECKING:
  from synthjax._src.config import SynthConfig


@config_class
class AffineConfig:
  """Random affine transform about the centre of the output field of view.

  The transform maps each output voxel to the point of the label map it samples (SynthSeg's
  convention), so `scaling` scales the *sampling grid*: a factor `s > 1` covers a larger
  part of the map and the anatomy appears `1 / s` times its size; `s < 1` enlarges it.
  TorchIO's `RandomAffine(scales=...)` is the inverse (a factor above 1 enlarges).
  `object_size` is the plain-language control: an isotropic factor on the anatomy's size
  (0.5 renders it at half its linear size), drawn once per sample on top of `scaling`.

  Attributes:
    rotation: range of each of the three rotation angles, in degrees (within ±180).
    scaling: range of each axis' sampling-grid factor (drawn per axis: also changes the
      aspect ratio); the anatomy appears `1 / scaling` times its size.
    shear: range of each of the six shear terms.
    translation: range of each axis' translation, in mm.
    object_size: optional range of the isotropic size factor of the anatomy (`None`: no
      such draw, and no `object_size` entry in the params).

  Examples:
    >>> AffineConfig(object_size=(0.5, 1.1)).object_size   # half to 1.1x the map's size
    (0.5, 1.1)
  """

  rotation: Range = field(default=(-15.0, 15.0), check=real_range(low=-180.0, high=180.0))
  scaling: Range = field(default=(0.8, 1.2), check=real_range(low=0.0, low_open=True))
  shear: Range = field(default=(-0.012, 0.012), check=real_range())
  translation: Range = field(default=(0.0, 0.0), check=real_range())
  prob: float = field(default=1.0, check=prob())
  enabled: bool = field(default=True, check=flag())
  object_size: Range | None = field(
    default=None, check=optional(real_range(low=0.0, low_open=True))
  )


@config_class
class DeformationConfig:
  """Stationary velocity field integrated by scaling and squaring (SynthSeg, VoxelMorph).

  The velocity is drawn on a grid of `ceil(grid_scale * shape)` nodes per axis with a
  standard deviation `std` (voxels of the output grid), upsampled to half resolution,
  integrated there in `steps` squarings and upsampled to the output grid.

  Attributes:
    std: range of the velocity standard deviation, in output voxels.
    grid_scale: range of the ratio between the small grid and the output shape. A range
      (FetalSynthGen's `nonlin_scale`) draws the grid size per sample.
    steps: number of squarings.
  """

  std: Range = field(default=(0.0, 4.0), check=real_range(low=0.0))
  grid_scale: Range = field(
    default=(0.04, 0.04), check=real_range(low=0.0, high=1.0, low_open=True)
  )
  steps: int = field(default=7, check=integer(low=0))
  prob: float = field(default=1.0, check=prob())
  enabled: bool = field(default=True, check=flag())


@config_class
class FlipConfig:
  """Left/right flip with swap of the paired labels (SynthSeg's `RandomFlip`).

  The mirror is applied to the output grid inside the coordinate map, before the
  deformation: without deformation the output is exactly mirrored; with it, the sample is
  the mirror of one drawn with the mirrored (equally likely) deformation field.

  Attributes:
    axis: the array axis that runs left to right (0 for RAS-oriented volumes).
  """

  axis: int = field(default=0, check=integer(low=0, high=2))
  prob: float = field(default=0.5, check=prob())
  enabled: bool = field(default=True, check=flag())


# Stream of the object-size draw, folded into the affine key (the other draws keep theirs).
_OBJECT_SIZE_STREAM = 5


def sample_affine(key, cfg: AffineConfig, fixed=None) -> dict:
  """Draws rotation (deg), scaling, shear and translation (mm), and whether applied; and
  the isotropic `object_size` when the config has a range for it."""
  k = jax.random.split(key, 5)
  applied = draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob))
  out = {
    "applied": applied,
    "rotation": draw.pick(fixed, "rotation", draw.uniform(k[1], cfg.rotation, (3,))),
    "scaling": draw.pick(fixed, "scaling", draw.uniform(k[2], cfg.scaling, (3,))),
    "shear": draw.pick(fixed, "shear", draw.uniform(k[3], cfg.shear, (6,))),
    "translation": draw.pick(fixed, "translation", draw.uniform(k[4], cfg.translation, (3,))),
  }
  if cfg.object_size is not None:
    ks = jax.random.fold_in(key, _OBJECT_SIZE_STREAM)
    out["object_size"] = draw.pick(fixed, "object_size", draw.uniform(ks, cfg.object_size))
  return out


def sample_deformation(key, cfg: DeformationConfig, fixed=None) -> dict:
  """Draws the velocity std (voxels) and the small-grid scale, and whether applied."""
  return draw.applied_and_uniform(key, cfg, fixed, "std", "grid_scale")


def sample_flip(key, cfg: FlipConfig, fixed=None) -> dict:
  return {"applied": draw.pick(fixed, "applied", draw.bernoulli(key, cfg.prob))}


def sample_crop(key, fixed=None) -> dict:
  """Draws the crop position in [0, 1]^3 (fraction of the room left by the output)."""
  return {"position": draw.pick(fixed, "position", draw.uniform(key, (0.0, 1.0), (3,)))}


def affine_matrix(p: dict, dtype=jnp.float32) -> jax.Array:
  """The 3x3 linear part `R @ Shear @ Scale` of the affine, in mm, about the FOV centre.

  `R = Rz @ Ry @ Rx` with angles `rotation` in degrees about axes 0, 1, 2. It maps output
  points to the label map's points, so `Scale = diag(scaling) / object_size` (the anatomy
  appears `object_size / scaling` times its size).
  """
  a = jnp.deg2rad(p["rotation"].astype(dtype))
  c, s = jnp.cos(a), jnp.sin(a)
  one, zero = jnp.ones((), dtype), jnp.zeros((), dtype)
  rx = jnp.array([[one, zero, zero], [zero, c[0], -s[0]], [zero, s[0], c[0]]])
  ry = jnp.array([[c[1], zero, s[1]], [zero, one, zero], [-s[1], zero, c[1]]])
  rz = jnp.array([[c[2], -s[2], zero], [s[2], c[2], zero], [zero, zero, one]])
  sh = p["shear"].astype(dtype)
  shear = jnp.array([[one, sh[0], sh[1]], [sh[2], one, sh[3]], [sh[4], sh[5], one]])
  scale = p["scaling"].astype(dtype)
  if "object_size" in p:
    scale = scale / p["object_size"].astype(dtype)
  return rz @ ry @ rx @ shear @ jnp.diag(scale)


def crop_offset(in_shape, out_shape, position):
  """Voxel offset of the output window in the input (negative: centred padding).

  Works on numpy or JAX `position`; shapes are static. Host code uses it to place the
  output's affine in the input's world space.
  """
  xp = jnp if isinstance(position, jax.Array) else np
  offs = []
  for a in range(3):
    room = int(in_shape[a]) - int(out_shape[a])
    if room >= 0:
      offs.append(xp.minimum(xp.floor(position[a] * (room + 1)), room).astype(xp.int32))
    else:
      offs.append(xp.asarray(room // 2, xp.int32))
  return xp.stack(offs)


def _half_grid(cfg: DeformationConfig, shape):
  g_max = tuple(draw.max_grid_size(cfg.grid_scale[1], s) for s in shape)
  half = tuple(max(s // 2, g) for s, g in zip(shape, g_max))
  return g_max, half


def half_displacement(key, p: dict, cfg: DeformationConfig, shape) -> jax.Array:
  """The integrated displacement on the half-resolution grid, `(3,) + half` (output voxels).

  The velocity is drawn on a small grid (std `p["std"]` voxels), upsampled to half
  resolution and integrated there by `cfg.steps` squarings, as in SynthSeg. Velocities are
  rescaled to half-resolution voxels for the integration so the composition `u(x + u(x))`
  is consistent; the result is in voxels of the output grid.
  """
  shape = tuple(shape)
  g_max, half = _half_grid(cfg, shape)
  ratio = np.array([(h - 1) / max(s - 1, 1) for h, s in zip(half, shape)], np.float32).reshape(
    3, 1, 1, 1
  )

  v = jax.random.normal(key, (3,) + g_max, jnp.float32) * p["std"]
  mats = [
    resample.dynamic_resize_matrix(
      half[a], g_max[a], draw.grid_size(p["grid_scale"], shape[a], g_max[a])
    )
    for a in range(3)
  ]
  u = resample.apply_separable(v, mats, axes=(1, 2, 3)) * (ratio / (2.0**cfg.steps))
  grid = resample.grid_coords(half)
  # Channel-last during the squarings: each trilinear corner is one gather of 3 floats.
  u = jnp.moveaxis(u, 0, -1)

  def square(_, u):
    return u + resample.sample_linear(u, grid + jnp.moveaxis(u, -1, 0), clamp=True)

  u = jax.lax.fori_loop(0, cfg.steps, square, u)
  return jnp.moveaxis(u, -1, 0) / ratio


def displacement_field(key, p: dict, cfg: DeformationConfig, shape) -> jax.Array:
  """Integrates a random stationary velocity field; returns `(3, X, Y, Z)` voxel shifts.

  `half_displacement` upsampled to `shape` (align-corners trilinear), as in SynthSeg.
  """
  return resample.resize_linear(half_displacement(key, p, cfg, shape), tuple(shape), axes=(1, 2, 3))


def _cast(p: dict, dtype) -> dict:
  """A stage's params with their float entries in `dtype`."""
  as_dtype = lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
  return jax.tree.map(as_dtype, p)


def _centre(shape):
  return np.asarray([(s - 1) / 2.0 for s in shape], np.float32)


# The spatial stages' parts of the coordinate map (`record.Placement`), each
# `(key, placement, params, stage_config, ctx) -> placement`.


def place_affine(key, placement, p, cfg, ctx):
  """The affine is the map's linear part and translation (the identity where not applied)."""
  p = _cast(p, ctx.dtype)
  return placement._replace(
    linear=jnp.where(p["applied"], affine_matrix(p, ctx.dtype), placement.linear),
    translation=jnp.where(p["applied"], p["translation"].astype(ctx.dtype), placement.translation),
  )


def place_deformation(key, placement, p, cfg, ctx):
  """The displacement: the velocity field integrated on the half-resolution grid,
  transformed by the map's linear part there and upsampled (zeros where not applied)."""
  p = _cast(p, ctx.dtype)
  shape = tuple(ctx.shape)

  def displacement(lin):
    return jax.lax.cond(
      p["applied"],
      lambda: resample.resize_linear(
        jnp.einsum("ij,j...->i...", lin, half_displacement(key, p, cfg, shape)),
        shape,
        axes=(1, 2, 3),
      ),
      lambda: jnp.zeros((3,) + shape, ctx.dtype),
    )

  return placement._replace(displacement=displacement)


def place_crop(key, placement, p, cfg, ctx):
  """The output window's offset in the label map."""
  position = _cast(p, ctx.dtype)["position"]
  return placement._replace(offset=crop_offset(ctx.in_shape, ctx.shape, position).astype(ctx.dtype))


def place_flip(key, placement, p, cfg, ctx):
  """The mirror of the output grid along `cfg.axis`, before the deformation is added: a
  flip of the output for the deformation field u(-x), which is as likely as u(x), and the
  swap of the paired labels. It costs no pass over the volume (the swap is composed into
  the label table, `labelmaps.label_index`)."""
  mirror = p["applied"] & (jnp.arange(3) == cfg.axis)
  swap = ctx.label_swap
  return placement._replace(
    mirror=jnp.where(mirror, -1.0, 1.0).astype(ctx.dtype),
    label_swap=jnp.where(p["applied"], jnp.asarray(swap), jnp.arange(swap.size, dtype=jnp.int32)),
  )


def label_swap(config: SynthConfig) -> np.ndarray:
  """The permutation of label indices that swaps each pair of `config.flip_pairs`."""
  values = list(config.label_values)
  swap = np.arange(len(values), dtype=np.int32)
  for a, b in config.flip_pairs:
    ia, ib = values.index(a), values.index(b)
    swap[ia], swap[ib] = ib, ia
  return swap


def placement(
  key_of, params: dict, config: SynthConfig, in_shape, dtype=jnp.float32, stages=None
) -> record.Placement:
  """The spatial stages' placement of the output grid in a label map of shape `in_shape`.

  Args:
    key_of: `stage name -> key` of a spatial stage's realisation.
    params: the sample's params.
    config: the `SynthConfig`.
    in_shape: the label map's shape.
    dtype: the float dtype of the map.
    stages: the spatial stage records, in order (default: the registry's for `config`).

  Returns:
    The `record.Placement` of the enabled spatial stages, composed in order.
  """
  if stages is None:
    # The registry lists this module's records, so it is read when called.
    from synthjax._src import registry

    stages = registry.in_phase(config, "spatial")
  ctx = record.SpatialContext(
    tuple(config.shape), tuple(config.spacing), tuple(in_shape), dtype, label_swap(config)
  )
  out = record.Placement(jnp.eye(3, dtype=dtype), jnp.zeros(3, dtype))
  for stage in stages:
    cfg = getattr(config, stage.name) if stage.configured else None
    if cfg is not None and not cfg.enabled:
      continue
    key = key_of(stage.name) if stage.synth_stream is not None else None
    out = stage.apply(key, out, params[stage.name], cfg, ctx)
  return out


def _affine_parts(placed: record.Placement, config: SynthConfig, dtype=jnp.float32):
  """`(lin, grid_lin, const, sign)` of the map `x -> grid_lin (x - centre) + const + lin u`:
  `lin = D^-1 A D` (voxels to voxels), `sign` the mirror (+-1 per axis) and
  `grid_lin = lin diag(sign)`; `const` holds the translation, the crop offset and the
  centre of the input window."""
  shape = tuple(config.shape)
  sp = np.asarray(config.spacing, np.float32)
  lin = placed.linear * (sp[None, :] / sp[:, None])  # D^-1 A D: voxels to voxels
  grid_lin = lin
  sign = jnp.ones(3, dtype)
  if placed.mirror is not None:
    sign = placed.mirror
    grid_lin = lin * sign[None, :]
  offset = jnp.zeros(3, dtype) if placed.offset is None else placed.offset
  const = placed.translation / sp + offset + _centre(shape)
  return lin, grid_lin, const, sign


def _same_key(key):
  return lambda name: key


def coordinate_components(
  key, params: dict, config: SynthConfig, in_shape, dtype=jnp.float32
) -> list:
  """Input-voxel coordinates of each output voxel, as three `(X, Y, Z)` arrays.

  The map is `x -> D^-1 (A (S p(x) + D u(x)) + t) + offset + centre`, with `p(x)` the
  output grid in mm about the FOV centre, `S` the flip's mirror, `u` the deformation (output
  voxels), `A`/`t` the affine (mm), `D` the spacing and the crop offset. It is evaluated as
  an affine function of the voxel index plus `resize(B u_half)`, `B = D^-1 A D`: the 3x3
  acts on the half-resolution field (channels commute with the linear resize), so the
  full-resolution work is the field's upsampling and a few multiply-adds per voxel. The
  three components are kept apart (not stacked): XLA then fuses them into the label
  gather's index arithmetic, where slices of a stacked array made that gather 5x slower.
  The map is float32 (`dtype`) whatever the params' precision: for the labels it only places
  nearest-neighbour lookups (`warp` asks for float64 with float64 params).

  The map is composed by the spatial stages of the registry (`placement`); `key` is the
  key of their realisation, the deformation's (`fold_in(synthesis key, synth_stream)`).
  """
  return evaluate(placement(_same_key(key), params, config, in_shape, dtype), config, dtype)


def evaluate(placed: record.Placement, config: SynthConfig, dtype=jnp.float32) -> list:
  """The input-voxel coordinates of each output voxel under `placed`, as three `(X, Y, Z)`
  arrays (`coordinate_components`)."""
  shape = tuple(config.shape)
  lin, grid_lin, const, _ = _affine_parts(placed, config, dtype)
  centre = _centre(shape)

  grid = [jax.lax.broadcasted_iota(dtype, shape, a) - centre[a] for a in range(3)]
  out = [
    grid_lin[i, 0] * grid[0] + grid_lin[i, 1] * grid[1] + grid_lin[i, 2] * grid[2] + const[i]
    for i in range(3)
  ]
  if placed.displacement is not None:
    full = placed.displacement(lin)
    out = [out[i] + full[i] for i in range(3)]
  return out


def inverse_coordinate_map(
  key, params: dict, config: SynthConfig, in_shape, iterations: int = 10, dtype=jnp.float32
) -> jax.Array:
  """Output-voxel coordinates `(3,) + in_shape` of each input voxel: the inverse of
  `coordinate_components`.

  The forward map is `y = lin (S (x - c) + u(x)) + const` (`S` the flip's mirror, `u` the
  deformation in output voxels). The affine part is inverted exactly; the deformation by the
  fixed-point iteration `x <- c + S (w - u(x))` with `w = lin^-1 (y - const)`, starting
  from the deformation's own inverse flow (the integration of the negated velocity, its
  displacement mirrored with the grid). For the synthseg preset's largest deformations the
  composition with the forward map stops improving after about five iterations at 48^3
  (0.004-0.008 voxel RMS, measured 2026-12-05); ten are run, since strong deformations of
  small grids need more.
  """
  shape = tuple(config.shape)
  lin, _, const, sign = _affine_parts(
    placement(_same_key(key), params, config, in_shape, dtype), config, dtype
  )
  centre = _centre(shape)
  y = resample.grid_coords(tuple(in_shape)).astype(dtype) - const.reshape(3, 1, 1, 1)
  w = jnp.einsum("ij,j...->i...", jnp.linalg.inv(lin), y)
  mirror = lambda v: sign.reshape(3, 1, 1, 1) * v
  start = mirror(w) + centre.reshape(3, 1, 1, 1)
  if not config.deformation.enabled:
    return start
  pd = _cast(params["deformation"], dtype)
  u = jax.lax.cond(
    pd["applied"],
    lambda: displacement_field(key, pd, config.deformation, shape),
    lambda: jnp.zeros((3,) + shape, dtype),
  )
  u_last = jnp.moveaxis(u, 0, -1)
  disp = lambda x: jnp.moveaxis(resample.sample_linear(u_last, x, clamp=True), -1, 0)
  # Start: the mirrored w plus the flow of -v read there (exact without a flip and for
  # small fields; the iteration corrects the rest).
  neg = {**pd, "std": -pd["std"]}
  u_inv = jax.lax.cond(
    pd["applied"],
    lambda: displacement_field(key, neg, config.deformation, shape),
    lambda: jnp.zeros((3,) + shape, dtype),
  )
  x = start + mirror(
    jnp.moveaxis(resample.sample_linear(jnp.moveaxis(u_inv, 0, -1), start, clamp=True), -1, 0)
  )
  step = lambda _, x: centre.reshape(3, 1, 1, 1) + mirror(w - disp(x))
  return jax.lax.fori_loop(0, iterations, step, x)


def coordinate_map(key, params: dict, config: SynthConfig, in_shape) -> jax.Array:
  """Input-voxel coordinates `(3, X, Y, Z)` of each output voxel (affine∘deformation∘crop).

  The stacked form of `coordinate_components`.
  """
  return jnp.stack(coordinate_components(key, params, config, in_shape))


# The spatial phase: one coordinate map and one gather of the labels (`rendering`).
STAGES = (
  Stage(
    "affine",
    lambda k, c, f: sample_affine(k, c.affine, f),
    phase="spatial",
    apply=place_affine,
    domain={"rotation": record.ANGLE, "scaling": record.POSITIVE, "object_size": record.POSITIVE},
    strength={
      "rotation": 0.0,
      "scaling": 1.0,
      "shear": 0.0,
      "translation": 0.0,
      "object_size": 1.0,
    },
  ),
  Stage(
    "deformation",
    lambda k, c, f: sample_deformation(k, c.deformation, f),
    phase="spatial",
    apply=place_deformation,
    # A negative std negates the velocity (the inverse flow): valid in params.
    domain={"grid_scale": record.GRID},
    strength={"std": 0.0},
  ),
  Stage(
    "crop",
    lambda k, c, f: sample_crop(k, f),
    phase="spatial",
    apply=place_crop,
    configured=False,
    domain={"position": record.UNIT},
  ),
  Stage(
    "flip",
    lambda k, c, f: sample_flip(k, c.flip, f),
    phase="spatial",
    apply=place_flip,
    strength={},
  ),
)
