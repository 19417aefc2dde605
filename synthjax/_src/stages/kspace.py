"""The k-space group: spike, ghosting and Gibbs ringing on one spectrum.

The three k-space stages act on one spectrum: the image is transformed once
(`fftn` of the float32 volume), Gibbs truncation and ghosting multiply it by separable
masks, spikes are added, and the image is the magnitude of the inverse transform (a
magnitude reconstruction, as on a scanner). The whole transform sits in a `lax.cond`, so
when no k-space stage is applied the input comes back unchanged (outside `vmap`, without
computing any FFT).

Masks are built in the unshifted FFT order from static integer frequencies
`f = fftfreq(n) * n`; an index `i` of the centred spectrum (`fftshift(fftn(x))`, TorchIO's
and MONAI's convention) is the frequency `f = i - n // 2`. Traced strengths (periods,
cut-offs, spike positions) only select entries of these static arrays, so shapes stay
static under `jit` and `vmap`.

The params (strengths, positions, axis) are drawn by `sample_*` from the params key; the
group draws no realisation.

References:
  TorchIO `RandomSpike`, `RandomGhosting` (Pérez-García et al., CMPB 2021); MONAI
  `RandGibbsNoise`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

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
from synthjax._src.ops import draw, precision
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage


@config_class
class SpikeConfig:
  """k-space spike (herringbone) artifact, as TorchIO's `RandomSpike`.

  `n ~ U{num_spikes}` spikes at positions `U[0, 1)^3` (fractions of the centred k-space,
  coefficient `floor(position * shape)` of `fftshift(fftn(x))`) each get `intensity * max|k|`
  added (TorchIO's spike); the image is the magnitude of the inverse transform. Positions
  are recorded for `num_spikes[1]` spikes; those past `n` are masked.

  Attributes:
    num_spikes: range of the (integer) number of spikes; the high end fixes the params shape.
    intensity: range of the spike magnitude relative to the maximum k-space magnitude.
  """

  num_spikes: tuple[int, int] = field(
    default=(1, 1), check=int_range(low=0, high_at_least=1, what="spike")
  )
  intensity: Range = field(default=(1.0, 3.0), check=real_range())
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


@config_class
class GhostingConfig:
  """Ghosting along a phase-encoding axis, as TorchIO's `RandomGhosting`.

  Along the drawn `axis`, every `num_ghosts`-th line of the centred k-space (indices
  `0, n, 2n, ...`) is scaled by `1 - intensity`, which puts ghosts every
  `shape[axis] / num_ghosts` voxels in the image. The lines at frequencies
  `|f| <= round(restore * shape[axis]) // 2` are left untouched (with `restore = 0`, only
  the central line: TorchIO's default). The image is the magnitude of the inverse transform.

  Attributes:
    num_ghosts: range of the (integer) line period `n`; 0 means no ghosting.
    axes: the axes the phase-encoding axis is drawn from (uniformly).
    intensity: range of the artifact strength (0: no ghosts; 1: the lines are zeroed).
    restore: fraction of the k-space lines about the centre that are restored.
  """

  num_ghosts: tuple[int, int] = field(default=(4, 10), check=int_range(low=0))
  axes: tuple[int, ...] = field(default=(0, 1, 2), check=axes())
  intensity: Range = field(default=(0.5, 1.0), check=real_range(low=0.0))
  restore: float = field(default=0.0, check=real(low=0.0, high=1.0))
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


@config_class
class GibbsConfig:
  """Gibbs ringing by k-space truncation (MONAI's `RandGibbsNoise`, with a box).

  k-space frequencies with `|f| > (1 - alpha) * shape / 2` along any axis are zeroed (a
  centred box keeping a fraction `1 - alpha` of each axis' band, as a smaller acquisition
  matrix; MONAI uses a ball) and the image is the magnitude of the inverse transform.

  Attributes:
    alpha: range of the truncation strength in [0, 1] (0: identity; 1: only the mean left).
  """

  alpha: Range = field(default=(0.0, 0.8), check=real_range(low=0.0, high=1.0))
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


def frequencies(n: int) -> np.ndarray:
  """Integer frequencies of an axis of size `n`, in the unshifted FFT order."""
  return np.rint(np.fft.fftfreq(n) * n).astype(np.int32)


def _along(v: jax.Array, axis: int) -> jax.Array:
  shape = [1, 1, 1]
  shape[axis] = v.shape[0]
  return v.reshape(shape)


def sample_spike(key, cfg: SpikeConfig, fixed=None) -> dict:
  """Applied, number of spikes, `num_spikes[1]` positions in [0, 1)^3, intensity."""
  k = jax.random.split(key, 4)
  s_max = cfg.num_spikes[1]
  fixed = dict(fixed or {})
  pos = fixed.get("positions")
  if pos is not None:
    pos = jnp.asarray(pos, jnp.float32)
    if pos.shape == (3,):  # one position given for every spike slot
      fixed["positions"] = jnp.broadcast_to(pos, (s_max, 3))
  lo, hi = cfg.num_spikes
  return {
    "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
    "num_spikes": draw.pick(
      fixed, "num_spikes", jax.random.randint(k[1], (), lo, hi + 1, jnp.int32)
    ),
    "positions": draw.pick(fixed, "positions", draw.uniform(k[2], (0.0, 1.0), (s_max, 3))),
    "intensity": draw.pick(fixed, "intensity", draw.uniform(k[3], cfg.intensity)),
  }


def sample_ghosting(key, cfg: GhostingConfig, fixed=None) -> dict:
  """Applied, line period `num_ghosts`, phase-encoding `axis`, intensity."""
  k = jax.random.split(key, 4)
  lo, hi = cfg.num_ghosts
  axes = jnp.asarray(cfg.axes, jnp.int32)
  return {
    "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
    "num_ghosts": draw.pick(
      fixed, "num_ghosts", jax.random.randint(k[1], (), lo, hi + 1, jnp.int32)
    ),
    "axis": draw.pick(fixed, "axis", axes[jax.random.randint(k[2], (), 0, len(cfg.axes))]),
    "intensity": draw.pick(fixed, "intensity", draw.uniform(k[3], cfg.intensity)),
  }


def sample_gibbs(key, cfg: GibbsConfig, fixed=None) -> dict:
  return draw.applied_and_uniform(key, cfg, fixed, "alpha")


def spike_indices(positions: jax.Array, shape) -> tuple[jax.Array, ...]:
  """Unshifted spectrum indices of spikes at fractional centred-k-space `positions`."""
  out = []
  for a, n in enumerate(shape):
    centred = jnp.clip(
      jnp.floor(positions[:, a].astype(jnp.float32) * n).astype(jnp.int32), 0, n - 1
    )
    out.append(jnp.mod(centred - n // 2, n))
  return tuple(out)


def add_spikes(k: jax.Array, p: dict, kmax=None) -> jax.Array:
  """Adds `intensity * max|k|` at each active spike (TorchIO's `Spike`), if applied.

  `kmax` is the reference magnitude (default `max|k|` of `k` itself).
  """
  if kmax is None:
    kmax = jnp.max(jnp.abs(k))
  s = p["positions"].shape[0]
  active = (jnp.arange(s) < p["num_spikes"]) & p["applied"]
  value = jnp.where(active, p["intensity"] * kmax, 0.0)
  return k.at[spike_indices(p["positions"], k.shape)].add(value.astype(k.dtype))


def ghosting_factor(shape, p: dict, restore: float = 0.0) -> jax.Array:
  """The (real, separable) factor that scales every `num_ghosts`-th centred line by
  `1 - intensity` along `axis`, except the lines `|f| <= round(restore * n) // 2`."""
  period = p["num_ghosts"]
  safe = jnp.maximum(period, 1)
  scale = precision.real(1.0 - p["intensity"])
  factor = None
  for a, n in enumerate(shape):
    f = frequencies(n)
    centred = jnp.asarray(f + n // 2)
    kept = np.abs(f) <= int(round(restore * n)) // 2
    line = (jnp.mod(centred, safe) == 0) & (period > 0) & jnp.asarray(~kept)
    line = line & p["applied"] & (p["axis"] == a)
    fa = _along(jnp.where(line, scale, jnp.ones((), scale.dtype)), a)
    factor = fa if factor is None else factor * fa
  assert factor is not None, f"shape {shape} has no axes"
  return factor


def gibbs_factor(shape, p: dict) -> jax.Array:
  """The (real, separable) 0/1 mask keeping `|f| <= (1 - alpha) * n / 2` on every axis."""
  keep_frac = (1.0 - p["alpha"]).astype(jnp.float32)
  factor = None
  for a, n in enumerate(shape):
    f = jnp.asarray(np.abs(frequencies(n)).astype(np.float32))
    keep = (f <= keep_frac * jnp.float32(n / 2)) | ~p["applied"]
    fa = _along(keep.astype(jnp.float32), a)
    factor = fa if factor is None else factor * fa
  assert factor is not None, f"shape {shape} has no axes"
  return factor


def render_spectrum(x: jax.Array, transforms, applied) -> jax.Array:
  """The magnitude image `|ifftn(t_n(... t_1(fftn(x))))|` where `applied`, else `x`.

  Each transform maps a `record.Spectrum` to a `record.Spectrum`; the whole transform sits
  in a `lax.cond`, so where nothing is applied (outside `vmap`) no FFT is computed.
  """

  def on(x):
    x = precision.real(x)
    k = jnp.fft.fftn(x)
    spectrum = record.Spectrum(k, k)
    for transform in transforms:
      spectrum = transform(spectrum)
    return jnp.abs(jnp.fft.ifftn(spectrum.k)).astype(x.dtype)

  return jax.lax.cond(applied, on, lambda x: x, x)


# The k-space stages' transforms of the shared spectrum, each
# `(key, spectrum, params, stage_config, ctx) -> spectrum`. The masks multiply; the spikes
# are added after them (the group's registry order), relative to the image's own spectrum.


def spectrum_gibbs(key, spectrum, p, cfg, ctx=None):
  return spectrum._replace(k=spectrum.k * gibbs_factor(spectrum.k.shape, p))


def spectrum_ghosting(key, spectrum, p, cfg, ctx=None):
  return spectrum._replace(k=spectrum.k * ghosting_factor(spectrum.k.shape, p, cfg.restore))


def spectrum_spike(key, spectrum, p, cfg, ctx=None):
  return spectrum._replace(k=add_spikes(spectrum.k, p, jnp.max(jnp.abs(spectrum.original))))


def apply_kspace(
  x: jax.Array, *, spike=None, ghosting=None, gibbs=None, restore: float = 0.0
) -> jax.Array:
  """Magnitude image after Gibbs truncation, ghosting and spikes on one spectrum.

  Each argument is that stage's params dict, or `None` for a stage left out. Returns `x`
  itself when no given stage is applied; otherwise `|ifftn(k')|` with
  `k' = fftn(x) * gibbs * ghosting + spikes` (spike magnitudes relative to `max|fftn(x)|`).
  """
  given = [
    (t, p)
    for t, p in (
      (lambda s, p: s._replace(k=s.k * gibbs_factor(s.k.shape, p)), gibbs),
      (lambda s, p: s._replace(k=s.k * ghosting_factor(s.k.shape, p, restore)), ghosting),
      (lambda s, p: spectrum_spike(None, s, p, None), spike),
    )
    if p is not None
  ]
  if not given:
    return x
  applied = given[0][1]["applied"]
  for _, p in given[1:]:
    applied = applied | p["applied"]
  return render_spectrum(x, [functools.partial(t, p=p) for t, p in given], applied)


def apply_spike(x: jax.Array, p: dict) -> jax.Array:
  return apply_kspace(x, spike=p)


def apply_ghosting(x: jax.Array, p: dict, restore: float = 0.0) -> jax.Array:
  return apply_kspace(x, ghosting=p, restore=restore)


def apply_gibbs(x: jax.Array, p: dict) -> jax.Array:
  return apply_kspace(x, gibbs=p)


# One spectrum and one magnitude reconstruction for the group (`rendering`), transformed
# in this order: the masks multiply, then the spikes are added.
STAGES = (
  Stage(
    "gibbs",
    lambda k, c, f: sample_gibbs(k, c.gibbs, f),
    phase="kspace",
    apply=spectrum_gibbs,
    domain={"alpha": record.UNIT},
    strength={"alpha": 0.0},
  ),
  Stage(
    "ghosting",
    lambda k, c, f: sample_ghosting(k, c.ghosting, f),
    phase="kspace",
    apply=spectrum_ghosting,
    domain={"axis": record.AXIS, "intensity": record.NONNEG, "num_ghosts": record.NONNEG},
    strength={"intensity": 0.0},
  ),
  Stage(
    "spike",
    lambda k, c, f: sample_spike(k, c.spike, f),
    phase="kspace",
    apply=spectrum_spike,
    domain={"positions": record.UNIT, "num_spikes": record.count("positions")},
    strength={"intensity": 0.0},
  ),
)
