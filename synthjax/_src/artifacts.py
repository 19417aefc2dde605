"""MR-physics artifact stages: k-space spike, ghosting, Gibbs ringing, and Rician noise.

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

The params (strengths, positions, axis) are drawn by `sample_*` from the params key; only
Rician noise draws a realisation, from the synthesis key.

References:
  TorchIO `RandomSpike`, `RandomGhosting` (Pérez-García et al., CMPB 2021); MONAI
  `RandGibbsNoise`, `RandRicianNoise`.
"""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from synthjax._src import draw
from synthjax._src import rng
from synthjax._src.config import GhostingConfig, GibbsConfig, RicianConfig, SpikeConfig


def frequencies(n: int) -> np.ndarray:
  """Integer frequencies of an axis of size `n`, in the unshifted FFT order."""
  return np.rint(np.fft.fftfreq(n) * n).astype(np.int32)


def _along(v: jax.Array, axis: int) -> jax.Array:
  shape = [1, 1, 1]
  shape[axis] = v.shape[0]
  return v.reshape(shape)


# ---------------------------------------------------------------------------------------
# Sampling


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
      "num_spikes": draw.pick(fixed, "num_spikes",
                              jax.random.randint(k[1], (), lo, hi + 1, jnp.int32)),
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
      "num_ghosts": draw.pick(fixed, "num_ghosts",
                              jax.random.randint(k[1], (), lo, hi + 1, jnp.int32)),
      "axis": draw.pick(fixed, "axis", axes[jax.random.randint(k[2], (), 0, len(cfg.axes))]),
      "intensity": draw.pick(fixed, "intensity", draw.uniform(k[3], cfg.intensity)),
  }


def sample_gibbs(key, cfg: GibbsConfig, fixed=None) -> dict:
  k = jax.random.split(key, 2)
  return {
      "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
      "alpha": draw.pick(fixed, "alpha", draw.uniform(k[1], cfg.alpha)),
  }


def sample_rician(key, cfg: RicianConfig, fixed=None) -> dict:
  k = jax.random.split(key, 2)
  return {
      "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
      "std": draw.pick(fixed, "std", draw.uniform(k[1], cfg.std)),
  }


# ---------------------------------------------------------------------------------------
# k-space operations (on the unshifted spectrum `fftn(x)`)


def spike_indices(positions: jax.Array, shape) -> tuple[jax.Array, ...]:
  """Unshifted spectrum indices of spikes at fractional centred-k-space `positions`."""
  out = []
  for a, n in enumerate(shape):
    centred = jnp.clip(jnp.floor(positions[:, a].astype(jnp.float32) * n).astype(jnp.int32),
                       0, n - 1)
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
  value = jnp.where(active, p["intensity"] * kmax, 0.0).astype(jnp.float32)
  return k.at[spike_indices(p["positions"], k.shape)].add(value.astype(k.dtype))


def ghosting_factor(shape, p: dict, restore: float = 0.0) -> jax.Array:
  """The (real, separable) factor that scales every `num_ghosts`-th centred line by
  `1 - intensity` along `axis`, except the lines `|f| <= round(restore * n) // 2`."""
  period = p["num_ghosts"]
  safe = jnp.maximum(period, 1)
  scale = (1.0 - p["intensity"]).astype(jnp.float32)
  factor = None
  for a, n in enumerate(shape):
    f = frequencies(n)
    centred = jnp.asarray(f + n // 2)
    kept = np.abs(f) <= int(round(restore * n)) // 2
    line = (jnp.mod(centred, safe) == 0) & (period > 0) & jnp.asarray(~kept)
    line = line & p["applied"] & (p["axis"] == a)
    fa = _along(jnp.where(line, scale, jnp.float32(1.0)), a)
    factor = fa if factor is None else factor * fa
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
  return factor


def apply_kspace(x: jax.Array, *, spike=None, ghosting=None, gibbs=None,
                 restore: float = 0.0) -> jax.Array:
  """Magnitude image after Gibbs truncation, ghosting and spikes on one spectrum.

  Each argument is that stage's params dict, or `None` for a stage left out. Returns `x`
  itself when no given stage is applied; otherwise `|ifftn(k')|` with
  `k' = fftn(x) * gibbs * ghosting + spikes` (spike magnitudes relative to `max|fftn(x)|`).
  """
  stages = [p for p in (spike, ghosting, gibbs) if p is not None]
  if not stages:
    return x
  applied = stages[0]["applied"]
  for p in stages[1:]:
    applied = applied | p["applied"]
  shape = x.shape

  def on(x):
    k = jnp.fft.fftn(x.astype(jnp.float32))
    kmax = jnp.max(jnp.abs(k)) if spike is not None else None
    factor = None
    if gibbs is not None:
      factor = gibbs_factor(shape, gibbs)
    if ghosting is not None:
      g = ghosting_factor(shape, ghosting, restore)
      factor = g if factor is None else factor * g
    if factor is not None:
      k = k * factor
    if spike is not None:
      k = add_spikes(k, spike, kmax)
    return jnp.abs(jnp.fft.ifftn(k)).astype(jnp.float32)

  return jax.lax.cond(applied, on, lambda x: x, x)


def apply_spike(x: jax.Array, p: dict) -> jax.Array:
  return apply_kspace(x, spike=p)


def apply_ghosting(x: jax.Array, p: dict, restore: float = 0.0) -> jax.Array:
  return apply_kspace(x, ghosting=p, restore=restore)


def apply_gibbs(x: jax.Array, p: dict) -> jax.Array:
  return apply_kspace(x, gibbs=p)


def apply_kspace_stages(x: jax.Array, params: dict, config) -> jax.Array:
  """The k-space stages enabled in `config` (a `SynthConfig`), on one spectrum."""
  get = lambda s: params[s] if getattr(config, s).enabled else None
  return apply_kspace(x, spike=get("spike"), ghosting=get("ghosting"), gibbs=get("gibbs"),
                      restore=config.ghosting.restore)


# ---------------------------------------------------------------------------------------
# Rician noise


def add_rician(key, x: jax.Array, p: dict) -> jax.Array:
  """`sqrt((x + n1)^2 + n2^2)`, `n1, n2 ~ N(0, std)` drawn from `key`, if applied."""
  def on(x):
    n = rng.voxel_normal(key, (2,) + x.shape) * p["std"]
    return jnp.sqrt((x + n[0]) ** 2 + n[1] ** 2)

  return jax.lax.cond(p["applied"], on, lambda x: x, x)
