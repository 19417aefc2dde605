"""Slice-stack acquisition with inter-slice motion, reconstructed on the volume grid.

Fetal MRI is acquired as several stacks of thick 2-D slices (one or more per orientation),
with gaps between slices and the fetus moving between slices; a super-resolution
reconstruction then puts the slices back on a 3-D grid. FetalSynthGen's `SimulateMotion`
simulates this with SVoRT's scanner (random stack orientations, real fetal motion
trajectories sampled at the slice times of an interleaved acquisition, a CUDA slice
acquisition kernel with a Gaussian slice profile) followed by a PSF reconstruction. This
stage is a pure-JAX, static-shaped version of the same idea that runs on CPU and GPU:

Acquisition. Stack `i` has a slice axis, a slice thickness `T` and a gap `g` (mm; slice
centres `d = T + g` apart), and a slice offset `o` in [0, 1): the centres lie at
`z_k = (o + k) d` mm from the first voxel centre along the axis, for the `N` slices
`k < N` whose centre is inside the field of view. Each slice samples the volume after a
Gaussian slice-profile blur along the stack axis (FWHM = `T`, as SVoRT's `get_PSF`), on
its plane moved by the slice's rigid motion: rotations `R_k` (degrees about axes 0, 1, 2,
`R = Rz @ Ry @ Rx`, as the affine stage) about the centre of the field of view and a
translation `t_k` (mm), i.e. a slice point `q` reads the blurred volume at
`R_k (q - c) + c + t_k` (trilinear, coordinates clamped to the volume). The profile is
applied along the unrotated stack axis (exact for translations, a close approximation for
rotations of a few degrees); the in-plane resolution is left to the resolution stage.

Motion. As in SVoRT/FetalSynthGen, motion is a continuous trajectory sampled at the
acquisition times of the slices, and slices are acquired interleaved (every `m`-th slice,
`m ~ U{2..floor(sqrt(N))}`), so spatial neighbours are acquired far apart in time. The
trajectory here is a Gaussian random walk (one step per slice time; per-stack step
standard deviations `rotation_std` degrees and `translation_std` mm) instead of the
peer's recorded fetal trajectories (a data file). The walk is centred on the stack's mean
pose, so the stack as a whole stays where it is: the artefacts come from the inter-slice
motion, and the image stays aligned with the segmentation.

Reconstruction. Each stack is put back on the volume grid without knowledge of the motion
(an unregistered reconstruction: the motion shows as slice-wise shifts, broken edges and
stair-cases): every voxel interpolates linearly along the stack axis between the two
nearest slice centres of that stack (the nearest slice beyond the first/last centre). The
two slice values are evaluated directly at the voxel's in-plane position with the slice's
transform, so no slice is materialised; planes are processed in blocks of about
`BLOCK_VOXELS` voxels (`lax.map`), so temporaries stay at a few volumes whatever the number
of slices. The stacks present are averaged. FetalSynthGen instead reconstructs with the
true motion (a successful SVR) and adds misregistration of some slices/stacks, slice
removal, smoothing and a partial merge with the original; here the motion level plays the
role of the residual misregistration.

Stacks. Stack slot `r * L + j` (`L = len(axes)`, `L * ceil(num_stacks[1] / L)` slots)
uses axis `axes[j]`: a static axis per slot, so the loop over slots is unrolled with
static shapes, and an absent slot is skipped by a `lax.cond` (outside `vmap`). A random
permutation of the axes decides the order in which orientations are acquired: the
`n ~ U{num_stacks}` stacks present are the first `n` of `axes[perm[0]], axes[perm[1]],
..., axes[perm[0]], ...`, i.e. orthogonal stacks, each orientation once before any
repeats (the peer draws a random orientation per stack).

All the randomness (motion included) is in the params; `apply_slice_stack` needs no key.

References:
  Xu et al., SVoRT (MICCAI 2022), `src/data/scan.py`; Zalevskyi, Sanchez et al.,
  FetalSynthGen (MICCAI 2024), `generator/artifacts/simulate_reco.py` and
  `generator/augmentation/artifacts.py::SimulateMotion`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from synthjax._src.checks import Range, axes, config_class, field, flag, int_range, prob, real_range
from synthjax._src.ops import draw, filters, resample
from synthjax._src.stages import geometry, record
from synthjax._src.stages.record import Stage


@config_class
class SliceStackConfig:
  """Slice-stack acquisition with inter-slice motion and reconstruction (see module doc).

  Defaults mirror FetalSynthGen's `SimulateMotion` scanner where it has an equivalent:
  thickness U[1.5, 3.5] mm (`slice_thickness_min/max`); its `gap` U[1.5, 5.5] mm is the
  distance between slice centres, which here is `thickness + gap`: gap U[0, 2] mm gives
  centre distances in [1.5, 5.5] mm. The peer draws 2-6 stacks; the default here is 2-3
  (one per orientation; the cost grows linearly with the number of stack slots). The
  peer's motion comes from recorded fetal trajectories; here a random walk with steps of
  up to 1 degree / 1 mm per slice reaches a few degrees / mm within a stack of ~40 slices.

  Attributes:
    num_stacks: range of the (integer) number of stacks; the high end, rounded up to a
      multiple of `len(axes)`, is the (static) number of stack slots.
    axes: the slice axes, in slot order (stack slot `i` uses `axes[i % len(axes)]`).
    thickness: range of each stack's slice thickness (FWHM of the slice profile), in mm.
    gap: range of each stack's gap between slices, in mm (negative: overlapping slices);
      `thickness[0] + gap[0]` must be positive.
    rotation_std: range of each stack's random-walk step std of the three rotation angles
      (degrees per slice time).
    translation_std: range of each stack's random-walk step std of the three translations
      (mm per slice time).
  """

  num_stacks: tuple[int, int] = field(default=(2, 3), check=int_range(low=1))
  axes: tuple[int, ...] = field(default=(0, 1, 2), check=axes())
  thickness: Range = field(default=(1.5, 3.5), check=real_range(low=0.0, low_open=True))
  gap: Range = field(default=(0.0, 2.0), check=real_range())
  rotation_std: Range = field(default=(0.0, 1.0), check=real_range(low=0.0))
  translation_std: Range = field(default=(0.0, 1.0), check=real_range(low=0.0))
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())

  def _check_together(self):
    if self.thickness[0] + self.gap[0] <= 0:
      raise ValueError(
        "SliceStackConfig.gap: thickness[0] + gap[0] (the smallest distance "
        f"between slice centres) must be positive, got thickness {self.thickness}"
        f" and gap {self.gap}"
      )


# Voxels per block of planes in the reconstruction (bounds its temporaries).
BLOCK_VOXELS = 1 << 21


# Gaussian sigma per unit FWHM (SVoRT's GAUSSIAN_FWHM): sigma = FWHM / (2 sqrt(2 ln 2)).
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def slot_axes(cfg: SliceStackConfig) -> tuple[int, ...]:
  """The (static) slice axis of each stack slot.

  There are `L * ceil(num_stacks[1] / L)` slots (`L = len(axes)`), the same number per
  orientation, so that any orientation can be the first one acquired.
  """
  n_axes = len(cfg.axes)
  slots = n_axes * -(-cfg.num_stacks[1] // n_axes)
  return tuple(cfg.axes[i % n_axes] for i in range(slots))


def max_slices(cfg: SliceStackConfig, shape, spacing) -> int:
  """Static number of per-slice motion slots: the most slices any stack can have.

  A stack along axis `a` has its centres inside `[0, (n_a - 1) s_a]` mm, at least
  `thickness[0] + gap[0]` apart.
  """
  d_min = cfg.thickness[0] + cfg.gap[0]
  extent = max((shape[a] - 1) * float(spacing[a]) for a in set(slot_axes(cfg)))
  return int(math.floor(extent / d_min + 1e-6)) + 1


def _num_slices(n: int, s: float, d, offset, k_max: int) -> jax.Array:
  """Number of slice centres `(offset + k) d` inside `[0, (n - 1) s]`, in [1, k_max].

  The cap only binds when a fixed thickness + gap is below the config's smallest: the
  field of view past slice `k_max - 1` then reads that last slice.
  """
  count = jnp.floor(((n - 1) * s - offset * d) / d + 1e-6).astype(jnp.int32) + 1
  return jnp.clip(count, 1, k_max)


def acquisition_order(num: jax.Array, interleave: jax.Array, k_max: int) -> jax.Array:
  """Time index of each slice `k < k_max` in an interleaved acquisition of `num` slices.

  Slices `0, m, 2m, ...` are acquired first, then `1, m + 1, ...`, and so on (SVoRT's
  `interleave_index`); slot `k >= num` gets a time too but is never used.
  """
  m = jnp.maximum(interleave, 1)
  g_max = max(k_max, 2)
  g = jnp.arange(g_max, dtype=jnp.int32)
  counts = jnp.where(g < m, jnp.maximum(0, (num - g + m - 1) // m), 0)
  before = jnp.cumsum(counts) - counts
  k = jnp.arange(k_max, dtype=jnp.int32)
  return before[k % m] + k // m


def sample_slice_stack(key, cfg: SliceStackConfig, shape, spacing, fixed=None) -> dict:
  """Draws the stacks (presence, thickness, gap, offset, interleave) and per-slice motion.

  Returns a flat dict: `applied` (bool), `num_stacks` (int32), `active` (S bools: which
  slots are present, drawn from `num_stacks`; the reconstruction uses `active`),
  `thickness`, `gap` (S, mm), `offset` (S, fraction of the slice distance in [0, 1)),
  `interleave` (S, int32), `rotation_std`, `translation_std` (S), `rotation` (S, K, 3
  degrees) and `translation` (S, K, 3 mm) of slice `k` of each stack in spatial order
  (zero past the stack's last slice); `S = len(slot_axes(cfg))` stack slots
  (`num_stacks[1]` rounded up to a multiple of `len(axes)`),
  `K = max_slices(cfg, shape, spacing)`. Every entry can be fixed; later draws use the
  fixed values (a fixed thickness changes the number of slices the motion is drawn for;
  fixing `rotation_std` to 0 removes rotations). A fixed `thickness + gap` below
  `cfg.thickness[0] + cfg.gap[0]` gives more slices than the `K` slots: slices past
  `K - 1` are then missing (the last one is extended).

  Args:
    key: params key.
    cfg: the stage config.
    shape, spacing: the (static) volume shape and voxel spacing in mm.
    fixed: optional dict of values that replace the draws.
  """
  shape = tuple(int(n) for n in shape)
  spacing = tuple(float(s) for s in spacing)
  k = jax.random.split(key, 12)
  axes = slot_axes(cfg)
  s_max = len(axes)
  k_max = max_slices(cfg, shape, spacing)
  n_axes = len(cfg.axes)

  lo, hi = cfg.num_stacks
  num = draw.pick(fixed, "num_stacks", jax.random.randint(k[1], (), lo, hi + 1, jnp.int32))
  # Acquisition rank of each slot: orientations in a random order, each once before repeats.
  inverse = jnp.argsort(jax.random.permutation(k[2], n_axes)).astype(jnp.int32)
  slot = np.arange(s_max)
  rank = jnp.asarray(slot // n_axes * n_axes, jnp.int32) + inverse[slot % n_axes]
  active = draw.pick(fixed, "active", rank < num)

  thickness = draw.pick(fixed, "thickness", draw.uniform(k[3], cfg.thickness, (s_max,)))
  gap = draw.pick(fixed, "gap", draw.uniform(k[4], cfg.gap, (s_max,)))
  offset = draw.pick(fixed, "offset", draw.uniform(k[5], (0.0, 1.0), (s_max,)))
  d = thickness + gap
  num_slices = jnp.stack(
    [_num_slices(shape[a], spacing[a], d[i], offset[i], k_max) for i, a in enumerate(axes)]
  )
  # FetalSynthGen: interleave factor U{2..floor(sqrt(N))}.
  top = jnp.maximum(jnp.floor(jnp.sqrt(num_slices.astype(jnp.float32))), 2.0)
  u = jax.random.uniform(k[6], (s_max,), jnp.float32)
  interleave = draw.pick(
    fixed, "interleave", jnp.minimum(2 + jnp.floor(u * (top - 1.0)), top).astype(jnp.int32)
  )
  rot_std = draw.pick(fixed, "rotation_std", draw.uniform(k[7], cfg.rotation_std, (s_max,)))
  trans_std = draw.pick(fixed, "translation_std", draw.uniform(k[8], cfg.translation_std, (s_max,)))

  # Random walk in acquisition time (the first acquired slice at the origin), read at each
  # slice's time, then centred on the stack's mean pose over its N slices.
  steps = jax.random.normal(k[9], (s_max, k_max, 6), jnp.float32)
  steps = steps * (jnp.arange(k_max) > 0)[None, :, None]
  walk = jnp.cumsum(steps, axis=1)
  times = jax.vmap(lambda n, m: acquisition_order(n, m, k_max))(num_slices, interleave)
  motion = jnp.take_along_axis(walk, jnp.clip(times, 0, k_max - 1)[:, :, None], axis=1)
  valid = (jnp.arange(k_max)[None, :] < num_slices[:, None])[:, :, None]
  mean = jnp.sum(motion * valid, axis=1, keepdims=True) / num_slices[:, None, None]
  motion = jnp.where(valid, motion - mean, 0.0)
  return {
    "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
    "num_stacks": num,
    "active": active,
    "thickness": thickness,
    "gap": gap,
    "offset": offset,
    "interleave": interleave,
    "rotation_std": rot_std,
    "translation_std": trans_std,
    "rotation": draw.pick(fixed, "rotation", motion[..., :3] * rot_std[:, None, None]),
    "translation": draw.pick(fixed, "translation", motion[..., 3:] * trans_std[:, None, None]),
  }


def _rotations(angles: jax.Array) -> jax.Array:
  """`(K, 3, 3)` rotations for `(K, 3)` angles in degrees (the affine stage's convention)."""

  def one(a):
    return geometry.affine_matrix(
      {"rotation": a, "shear": jnp.zeros(6, jnp.float32), "scaling": jnp.ones(3, jnp.float32)}
    )

  return jax.vmap(one)(angles)


def blur_radius_max(cfg: SliceStackConfig, spacing, axis: int, n: int) -> int:
  """Static kernel radius (voxels) covering the thickest slice profile along `axis`."""
  sigma = FWHM_TO_SIGMA * max(cfg.thickness[1], 1e-3) / float(spacing[axis])
  return min(int(math.floor(filters.TRUNCATE * sigma + 0.5)) + 1, 4 * n)


def reconstruct_stack(
  image: jax.Array,
  axis: int,
  thickness,
  gap,
  offset,
  rotation,
  translation,
  spacing,
  radius_max: int,
) -> jax.Array:
  """One stack acquired from `image` and reconstructed on its grid (see module doc).

  Args:
    image: `(X, Y, Z)` float32 volume.
    axis: the (static) slice axis.
    thickness, gap, offset: the stack's scalars (mm, mm, fraction of the slice distance).
    rotation, translation: `(K, 3)` per-slice motion (degrees, mm), spatial slice order.
    spacing: static voxel spacing in mm.
    radius_max: static bound on the slice-profile kernel radius (voxels).

  Returns:
    The reconstructed `(X, Y, Z)` volume.
  """
  shape = image.shape
  sp = [float(s) for s in spacing]
  n_a, s_a = shape[axis], sp[axis]
  centre = [(n - 1) / 2.0 * s for n, s in zip(shape, sp)]

  # Slice profile: Gaussian along the stack axis, FWHM = thickness (sigma in voxels).
  sigma = FWHM_TO_SIGMA * thickness / s_a
  blurred = resample.apply_separable(
    image, [filters.gaussian_matrix(n_a, sigma, radius_max)], axes=(axis,)
  )

  d = thickness + gap
  num = _num_slices(n_a, s_a, d, offset, rotation.shape[0])
  rot = _rotations(rotation.astype(jnp.float32))
  trans = translation.astype(jnp.float32)
  # Work in blocks of planes along the stack axis (local layout: stack axis first, then the
  # other two in order), so temporaries scale with a block, not with the volume.
  others = [b for b in range(3) if b != axis]
  plane = shape[others[0]] * shape[others[1]]
  block = int(min(n_a, max(1, BLOCK_VOXELS // plane)))
  n_blocks = -(-n_a // block)
  in_plane = {
    b: (jnp.arange(shape[b], dtype=jnp.float32) * sp[b] - centre[b]).reshape(
      (1, -1, 1) if b == others[0] else (1, 1, -1)
    )
    for b in others
  }

  def one_block(start):
    idx = jnp.minimum(start + jnp.arange(block, dtype=jnp.int32), n_a - 1)
    # The two slices bracketing each plane (the nearest one past the first/last centre).
    u = (idx.astype(jnp.float32) * s_a - offset * d) / d
    k0 = jnp.clip(jnp.floor(u).astype(jnp.int32), 0, num - 1)
    k1 = jnp.minimum(k0 + 1, num - 1)
    t = jnp.clip(u - k0.astype(jnp.float32), 0.0, 1.0)[:, None, None]

    def slice_values(ks):
      r = rot[ks][:, :, :, None, None]  # (block, 3, 3, 1, 1)
      tr = trans[ks][:, :, None, None]  # (block, 3, 1, 1)
      rel = dict(in_plane)
      rel[axis] = ((offset + ks.astype(jnp.float32)) * d - centre[axis])[:, None, None]
      coords = []
      for b in range(3):
        pos = centre[b] + tr[:, b]
        for c in range(3):
          pos = pos + r[:, b, c] * rel[c]
        coords.append(jnp.broadcast_to(pos / sp[b], (block,) + tuple(shape[o] for o in others)))
      return resample.sample_linear(blurred, jnp.stack(coords), clamp=True)

    return (1.0 - t) * slice_values(k0) + t * slice_values(k1)

  starts = jnp.arange(n_blocks, dtype=jnp.int32) * block
  local = jax.lax.map(one_block, starts).reshape(
    (n_blocks * block,) + tuple(shape[o] for o in others)
  )[:n_a]
  return jnp.moveaxis(local, 0, axis)


def apply_slice_stack(image: jax.Array, p: dict, cfg: SliceStackConfig, spacing) -> jax.Array:
  """Acquires `image` as the stacks of `p` and returns their reconstruction.

  Args:
    image: `(X, Y, Z)` float32 volume (the [0, 1] image after the resolution stage).
    p: params from `sample_slice_stack` for this shape and spacing.
    cfg: the stage config (static).
    spacing: static voxel spacing in mm.

  Returns:
    The average of the reconstructions of the stacks present (`image` itself when none
    is). Every output voxel is a convex combination of input
    voxels, so a [0, 1] image stays in [0, 1].
  """
  shape = tuple(image.shape)
  spacing = tuple(float(s) for s in spacing)
  axes = slot_axes(cfg)
  need = max_slices(cfg, shape, spacing)
  if p["rotation"].shape[:2] != (len(axes), need):
    raise ValueError(
      f"slice_stack params hold motion of shape {p['rotation'].shape[:2]} "
      f"(stacks, slices), expected {(len(axes), need)} for shape {shape}, "
      f"spacing {spacing}"
    )
  radius = {a: blur_radius_max(cfg, spacing, a, shape[a]) for a in set(axes)}
  x = image.astype(jnp.float32)
  total = jnp.zeros(shape, jnp.float32)
  for i, a in enumerate(axes):
    # An absent stack costs nothing outside vmap.
    total = total + jax.lax.cond(
      p["active"][i],
      lambda x, i=i, a=a: reconstruct_stack(
        x,
        a,
        p["thickness"][i],
        p["gap"][i],
        p["offset"][i],
        p["rotation"][i],
        p["translation"][i],
        spacing,
        radius[a],
      ),
      lambda x: jnp.zeros(shape, jnp.float32),
      x,
    )
  count = jnp.sum(p["active"].astype(jnp.float32))
  return jnp.where(count > 0, total / jnp.maximum(count, 1.0), x)


STAGE = Stage(
  "slice_stack",
  lambda k, c, f: sample_slice_stack(k, c.slice_stack, c.shape, c.spacing, f),
  domain={
    "thickness": record.POSITIVE,
    "rotation_std": record.NONNEG,
    "translation_std": record.NONNEG,
    "num_stacks": record.count("active", 1),
    "interleave": record.Bounds(1),
  },
  apply=lambda k, x, p, c, ctx: apply_slice_stack(x, p, c, ctx.spacing),
  strength={},
)
