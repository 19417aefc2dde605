"""k-space motion artifact: rigid motion between segments of the acquisition.

The subject moves `n` times during the acquisition; k-space is filled in `n + 1` time
segments of lines along the (slow) phase-encoding axis, each from the spectrum of the
subject in the pose it held during that segment. The image is the magnitude of the inverse
transform. As in TorchIO's `RandomMotion` (after Shaw et al., MIDL 2019):

* each movement `i` is a rigid transform (rotations `degrees[i]` about the three axes and a
  translation `translation[i]` in mm, about the volume centre) of the original image;
* the movement times `0 < t_1 <= ... <= t_n < 1` are evenly spaced, `t_j = j / (n + 1)`,
  each perturbed by `U(-perturbation, perturbation) / (n + 1)`;
* centred k-space lines `[floor(N t_{j-1}), floor(N t_j))` along the axis (`t_0 = 0`,
  `t_{n+1} = 1`) form segment `j`. The segment that holds the centre of k-space (the DC
  line) is filled from the unmoved image; the first segment gets the pose the centre
  segment would have had (TorchIO's `sort_spectra` swap), every other segment `j` gets
  pose `j`.

Differences from TorchIO: the centre segment is the one that holds the DC line (TorchIO
takes the first time above 0.5, which for a time just above 0.5 can leave the DC line in a
moved segment); rotations are about the centre of the voxel grid, `(shape - 1) / 2`
(TorchIO: `shape / 2`); the reconstruction is the magnitude (TorchIO keeps the real part),
like the other k-space stages; the segment axis is drawn from `axes` (TorchIO: always the
last axis); the number of movements may be a range.

Shapes are static: `num_transforms[1]` movement slots are always drawn and resampled; slots
past the drawn count have an empty segment (their times are 1).

References:
  Shaw et al., "MRI k-space motion artefact augmentation: model robustness and task-specific
  uncertainty", MIDL 2019. TorchIO `RandomMotion` / `Motion` (Pérez-García et al., CMPB 2021).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synthjax._src.checks import (
  Range,
  axes,
  config_class,
  field,
  flag,
  int_range,
  prob,
  real,
  real_range,
)
from synthjax._src.ops import draw, resample
from synthjax._src.stages import geometry, kspace, record
from synthjax._src.stages.record import Stage


@config_class
class MotionConfig:
  """Rigid motion during the acquisition, as TorchIO's `RandomMotion`.

  Attributes:
    degrees: range of each movement's three rotation angles, in degrees (TorchIO: ±10).
    translation: range of each movement's three translations, in mm (TorchIO: ±10).
    num_transforms: range of the (integer) number of movements; the high end fixes the
      params shape. TorchIO's default is exactly 2 movements, (2, 2).
    axes: the axes the segment (slow phase-encoding) axis is drawn from, uniformly.
      TorchIO always segments the last axis, (2,).
    perturbation: jitter of each movement time, as a fraction of the interval
      `1 / (n + 1)` between evenly spaced times (TorchIO: 0.3); at most 0.5 keeps the
      times ordered.
  """

  degrees: Range = field(default=(-10.0, 10.0), check=real_range())
  translation: Range = field(default=(-10.0, 10.0), check=real_range())
  num_transforms: tuple[int, int] = field(
    default=(2, 2), check=int_range(low=0, high_at_least=1, what="movement")
  )
  axes: tuple[int, ...] = field(default=(2,), check=axes())
  perturbation: float = field(default=0.3, check=real(low=0.0, high=0.5))
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


def sample_motion(key, cfg: MotionConfig, fixed=None) -> dict:
  """Draws whether applied, the number of movements, their times, poses and the axis.

  Args:
    key: params key.
    cfg: the stage config.
    fixed: optional dict of values to use instead of draws. `degrees` and `translation`
      may be given as one `(3,)` triple for every movement slot.

  Returns:
    `applied` (bool), `num_transforms` (int32), `times` `(K,)` (1 in slots past the
    count), `degrees` `(K, 3)`, `translation` `(K, 3)` in mm, `axis` (int32), with
    `K = cfg.num_transforms[1]`. Times are drawn after the count, so a fixed count gives
    times spaced for it.
  """
  k = jax.random.split(key, 6)
  slots = cfg.num_transforms[1]
  fixed = dict(fixed or {})
  for name in ("degrees", "translation"):
    v = fixed.get(name)
    if v is not None:
      v = jnp.asarray(v, jnp.float32)
      if v.shape == (3,):  # one pose for every movement slot
        fixed[name] = jnp.broadcast_to(v, (slots, 3))
  lo, hi = cfg.num_transforms
  count = draw.pick(fixed, "num_transforms", jax.random.randint(k[1], (), lo, hi + 1, jnp.int32))
  step = 1.0 / (count.astype(jnp.float32) + 1.0)
  j = jnp.arange(1, slots + 1, dtype=jnp.float32)
  jitter = draw.uniform(k[2], (-cfg.perturbation, cfg.perturbation), (slots,))
  times = jnp.where(j <= count, (j + jitter) * step, 1.0)
  axes = jnp.asarray(cfg.axes, jnp.int32)
  return {
    "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
    "num_transforms": count,
    "times": draw.pick(fixed, "times", times),
    "degrees": draw.pick(fixed, "degrees", draw.uniform(k[3], cfg.degrees, (slots, 3))),
    "translation": draw.pick(fixed, "translation", draw.uniform(k[4], cfg.translation, (slots, 3))),
    "axis": draw.pick(fixed, "axis", axes[jax.random.randint(k[5], (), 0, len(cfg.axes))]),
  }


def segment_of_lines(n: int, times: jax.Array, count) -> jax.Array:
  """Segment index `0..K` of each line of an axis of size `n`, in the unshifted FFT order.

  Centred line `c` (frequency `c - n // 2`) is in segment `#{j < count: floor(n t_j) <= c}`:
  with sorted times, segment `j` holds the lines `[floor(n t_{j-1}), floor(n t_j))`.
  Slots `j >= count` are ignored (their segments are empty).
  """
  slots = times.shape[0]
  active = jnp.arange(slots) < count
  bounds = jnp.floor(jnp.float32(n) * times.astype(jnp.float32)).astype(jnp.int32)
  bounds = jnp.where(active, bounds, n)  # beyond every line
  centred = jnp.asarray(kspace.frequencies(n) + n // 2)
  return jnp.sum(bounds[None, :] <= centred[:, None], axis=1).astype(jnp.int32)


def pose_of_segment(segments: jax.Array) -> jax.Array:
  """The pose (0: unmoved, `i >= 1`: movement `i - 1`) filling each line's segment.

  The segment of the DC line (centred index `n // 2`, unshifted index 0) takes the unmoved
  pose and segment 0 the pose it would have had (TorchIO's `sort_spectra`).
  """
  centre = segments[0]  # unshifted index 0 is the DC line
  return jnp.where(segments == 0, centre, jnp.where(segments == centre, 0, segments))


def moved_image(x: jax.Array, degrees, translation, spacing, cval) -> jax.Array:
  """`x` resampled (trilinear) at `R (p - c) + c + t` for each voxel position `p` in mm.

  `R = Rz @ Ry @ Rx` as the affine stage (angles in degrees about axes 0, 1, 2), `c` the
  volume centre; points outside take `cval` (TorchIO fills with the image minimum).
  """
  shape = x.shape
  mat = geometry.affine_matrix(
    {"rotation": degrees, "shear": jnp.zeros(6, jnp.float32), "scaling": jnp.ones(3, jnp.float32)}
  )
  sp = jnp.asarray(spacing, jnp.float32).reshape(3, 1, 1, 1)
  centre = jnp.asarray([(s - 1) / 2.0 for s in shape], jnp.float32).reshape(3, 1, 1, 1)
  pts = (resample.grid_coords(shape) - centre) * sp
  pts = jnp.einsum("ij,j...->i...", mat, pts) + translation.astype(jnp.float32).reshape(3, 1, 1, 1)
  return resample.sample_linear(x, pts / sp + centre, cval=cval)


def apply_motion(image: jax.Array, p: dict, cfg: MotionConfig, spacing) -> jax.Array:
  """Motion artifact of `p` on `image`.

  Args:
    image: float `(X, Y, Z)` volume (in [0, 1] in the generator).
    p: params from `sample_motion`.
    cfg: the stage config (only its static structure is used).
    spacing: static voxel spacing in mm, `(sx, sy, sz)`.

  Returns:
    float32 image of the same shape: `|ifftn(sum_i M_i * fftn(x_i))|` with `x_0 = image`,
    `x_i` the image in movement `i - 1`'s pose and `M_i` the lines of the segments filled
    from pose `i`. With no movement this is the FFT round trip of `image`.
  """
  del cfg
  shape = image.shape
  spacing = tuple(float(s) for s in spacing)
  slots = p["times"].shape[0]

  x = image.astype(jnp.float32)
  # Movement i holds from time t_i on; sorting keeps each pose with its time when the
  # times are given out of order. Unused slots move to the end (time 1: empty segment).
  active = jnp.arange(slots) < p["num_transforms"]
  order = jnp.argsort(jnp.where(active, p["times"].astype(jnp.float32), 2.0))
  times = jnp.where(active, p["times"].astype(jnp.float32), 1.0)[order]
  degrees, translation = p["degrees"][order], p["translation"][order]
  # Pose of every line along each candidate axis, broadcast along that axis; the drawn
  # axis selects one of them, so the mask of a pose is the same full-size array whatever
  # the (traced) axis.
  pose = None
  for a, n in enumerate(shape):
    lines = pose_of_segment(segment_of_lines(n, times, p["num_transforms"]))
    b = [1, 1, 1]
    b[a] = n
    along = jnp.where(p["axis"] == a, lines.reshape(b), 0)
    pose = along if pose is None else pose + along
  cval = jnp.min(x)
  k = jnp.where(pose == 0, jnp.fft.fftn(x), 0)
  for i in range(slots):
    xi = moved_image(x, degrees[i], translation[i], spacing, cval)
    k = k + jnp.where(pose == i + 1, jnp.fft.fftn(xi), 0)
  return jnp.abs(jnp.fft.ifftn(k)).astype(jnp.float32)


STAGE = Stage(
  "motion",
  lambda k, c, f: sample_motion(k, c.motion, f),
  domain={"axis": record.AXIS, "times": record.UNIT, "num_transforms": record.count("degrees")},
  apply=lambda k, x, p, c, ctx: apply_motion(x, p, c, ctx.spacing),
  strength={"degrees": 0.0, "translation": 0.0},
)
