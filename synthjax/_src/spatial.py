"""Spatial stage: affine, diffeomorphic deformation, crop/pad and left/right flip.

The affine, the deformation and the crop are composed into one coordinate map from the
output grid to the input label map, so the labels are resampled once per sample (nearest
neighbour). The flip acts on the resampled label map (a mirror plus a swap of the paired
labels), which is exactly a flip of the output.

References:
  Billot et al., "SynthSeg: Segmentation of brain MRI scans of any contrast and resolution
  without retraining", MedIA 2023 (`RandomSpatialDeformation`, `RandomCrop`, `RandomFlip`).
  Arsigny et al., "A Log-Euclidean framework for statistics on diffeomorphisms", MICCAI
  2006 (scaling and squaring).
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from synthjax._src import draw
from synthjax._src import resample
from synthjax._src.config import AffineConfig, DeformationConfig, FlipConfig, SynthConfig


# ---------------------------------------------------------------------------------------
# Parameters


def sample_affine(key, cfg: AffineConfig, fixed=None) -> dict:
  """Draws rotation (deg), scaling, shear and translation (mm), and whether applied."""
  k = jax.random.split(key, 5)
  applied = draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob))
  return {
      "applied": applied,
      "rotation": draw.pick(fixed, "rotation", draw.uniform(k[1], cfg.rotation, (3,))),
      "scaling": draw.pick(fixed, "scaling", draw.uniform(k[2], cfg.scaling, (3,))),
      "shear": draw.pick(fixed, "shear", draw.uniform(k[3], cfg.shear, (6,))),
      "translation": draw.pick(fixed, "translation", draw.uniform(k[4], cfg.translation, (3,))),
  }


def sample_deformation(key, cfg: DeformationConfig, fixed=None) -> dict:
  """Draws the velocity std (voxels) and the small-grid scale, and whether applied."""
  k = jax.random.split(key, 3)
  return {
      "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
      "std": draw.pick(fixed, "std", draw.uniform(k[1], cfg.std)),
      "grid_scale": draw.pick(fixed, "grid_scale", draw.uniform(k[2], cfg.grid_scale)),
  }


def sample_flip(key, cfg: FlipConfig, fixed=None) -> dict:
  return {"applied": draw.pick(fixed, "applied", draw.bernoulli(key, cfg.prob))}


def sample_crop(key, fixed=None) -> dict:
  """Draws the crop position in [0, 1]^3 (fraction of the room left by the output)."""
  return {"position": draw.pick(fixed, "position", draw.uniform(key, (0.0, 1.0), (3,)))}


# ---------------------------------------------------------------------------------------
# Deterministic application


def affine_matrix(p: dict) -> jax.Array:
  """The 3x3 linear part `R @ Shear @ Scale` of the affine, in mm, about the FOV centre.

  `R = Rz @ Ry @ Rx` with angles `rotation` in degrees about axes 0, 1, 2.
  """
  a = jnp.deg2rad(p["rotation"].astype(jnp.float32))
  c, s = jnp.cos(a), jnp.sin(a)
  one, zero = jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32)
  rx = jnp.array([[one, zero, zero], [zero, c[0], -s[0]], [zero, s[0], c[0]]])
  ry = jnp.array([[c[1], zero, s[1]], [zero, one, zero], [-s[1], zero, c[1]]])
  rz = jnp.array([[c[2], -s[2], zero], [s[2], c[2], zero], [zero, zero, one]])
  sh = p["shear"].astype(jnp.float32)
  shear = jnp.array([[one, sh[0], sh[1]], [sh[2], one, sh[3]], [sh[4], sh[5], one]])
  return rz @ ry @ rx @ shear @ jnp.diag(p["scaling"].astype(jnp.float32))


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


def displacement_field(key, p: dict, cfg: DeformationConfig, shape) -> jax.Array:
  """Integrates a random stationary velocity field; returns `(3, X, Y, Z)` voxel shifts.

  The velocity is drawn on a small grid (std `p["std"]` voxels), upsampled to half
  resolution, integrated there by `cfg.steps` squarings and upsampled to `shape`, as in
  SynthSeg. Velocities are rescaled to half-resolution voxels for the integration so the
  composition `u(x + u(x))` is consistent. Fields are channel-first so that adding them to
  the coordinate grid needs no transpose.
  """
  shape = tuple(shape)
  g_max = tuple(draw.max_grid_size(cfg.grid_scale[1], s) for s in shape)
  half = tuple(max(s // 2, g) for s, g in zip(shape, g_max))
  ratio = np.array([(h - 1) / max(s - 1, 1) for h, s in zip(half, shape)],
                   np.float32).reshape(3, 1, 1, 1)

  v = jax.random.normal(key, (3,) + g_max, jnp.float32) * p["std"]
  mats = [resample.dynamic_resize_matrix(half[a], g_max[a],
                                         draw.grid_size(p["grid_scale"], shape[a], g_max[a]))
          for a in range(3)]
  u = resample.apply_separable(v, mats, axes=(1, 2, 3)) * (ratio / (2.0 ** cfg.steps))
  grid = resample.grid_coords(half)
  warp = jax.vmap(lambda c, at: resample.sample_linear(c, at, clamp=True), in_axes=(0, None))

  def square(_, u):
    return u + warp(u, grid + u)

  u = jax.lax.fori_loop(0, cfg.steps, square, u)
  return resample.resize_linear(u, shape, axes=(1, 2, 3)) / ratio


def coordinate_map(key, params: dict, config: SynthConfig, in_shape) -> jax.Array:
  """Input-voxel coordinates `(3, X, Y, Z)` of each output voxel (affine∘deformation∘crop)."""
  shape = config.shape
  spacing = jnp.asarray(config.spacing, jnp.float32).reshape(3, 1, 1, 1)
  centre = jnp.asarray([(s - 1) / 2.0 for s in shape], jnp.float32).reshape(3, 1, 1, 1)
  pts = (resample.grid_coords(shape) - centre) * spacing  # mm about the FOV centre

  if config.deformation.enabled:
    pd = params["deformation"]
    u = jax.lax.cond(
        pd["applied"],
        lambda: displacement_field(key, pd, config.deformation, shape),
        lambda: jnp.zeros((3,) + shape, jnp.float32))
    pts = pts + u * spacing

  if config.affine.enabled:
    pa = params["affine"]
    mat = jnp.where(pa["applied"], affine_matrix(pa), jnp.eye(3, dtype=jnp.float32))
    shift = jnp.where(pa["applied"], pa["translation"].astype(jnp.float32), 0.0)
    pts = jnp.einsum("ij,j...->i...", mat, pts) + shift.reshape(3, 1, 1, 1)

  offset = crop_offset(in_shape, shape, params["crop"]["position"]).astype(jnp.float32)
  return pts / spacing + (offset.reshape(3, 1, 1, 1) + centre)


def flip_labels(index_map: jax.Array, applied, axis: int, swap: jax.Array) -> jax.Array:
  """Mirrors a label-index map along `axis` and swaps paired labels, where `applied`."""
  flipped = swap[jnp.flip(index_map, axis)]
  return jnp.where(applied, flipped, index_map)
