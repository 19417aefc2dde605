"""FetalSynthGen's intensity model: sub-label intensity classes.

A label map gives every voxel one Gaussian per label. FetalSynthGen instead merges labels
into meta-labels (CSF, GM, WM, non-brain tissue) and splits each into `K` subclusters with
their own Gaussians, `K` drawn per meta-label per sample, which gives images with
within-tissue contrast. The split comes from precomputed seed maps (k-means clusters of
real images) or, here, from a smooth random field when no seed maps exist.

Every voxel gets a class id: 0 for "no subcluster" (the voxel keeps its label's Gaussian),
else `1 + m * K_max + k` for meta-label index `m` (0-based) and subcluster `k`. Class ids
are computed on the input grid for seeds (and resampled with the labels, in the same
nearest-neighbour gather) or on the output grid for the procedural split; the Gaussians
are then rendered on the deformed class map, indexed by it (no one-hot volumes).

References:
  Zalevskyi et al., "Improving cross-domain brain tissue segmentation in fetal MRI with
  synthetic data" (MICCAI 2024), FetalSynthGen `ImageFromSeeds` (`load_seeds`,
  `sample_intensities`, `generation_classes`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from synthjax._src.checks import (
  LabelRanges,
  Range,
  choice,
  config_class,
  field,
  flag,
  int_range,
  integer,
  integers,
  label_groups,
  label_ranges,
  prob,
  real,
  real_range,
)
from synthjax._src.ops import draw, lookup, precision, resample, rng
from synthjax._src.stages import gmm as gmm_stage
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage

if TYPE_CHECKING:
  from synthjax._src.config import SynthConfig
  from synthjax._src.stages.gmm import GMMConfig


@config_class
class SubclusterConfig:
  """Sub-label intensity classes (FetalSynthGen's seeds, `ImageFromSeeds`).

  Labels are merged into meta-labels and each meta-label `m` is split into `K_m` subclusters,
  `K_m ~ U{num_subclusters}` per sample, each with its own Gaussian drawn from the GMM
  priors (`SynthConfig.gmm`). Voxels outside every meta-label keep their label's Gaussian.

  Two sources of the split:

  * `"procedural"` (no files): meta-label `m` is the group `meta_labels[m - 1]` of label
    values (by default every non-background label on its own); a smooth random field `f`
    (a small Gaussian grid of `grid_scale * shape` nodes, upsampled, standardised) splits it
    into `K_m` level-set regions, subcluster `floor(K_m * frac(Phi(f) + phase_m))`.
  * `"seeds"`: precomputed seed maps in FetalSynthGen's layout, passed to `synthesize` as
    `seeds` (`(max_subclusters, X, Y, Z)`, entry `K - 1` holding the union over meta-labels
    of the `subclasses_K` maps, voxel values `10 * m + k`; see
    `synthjax.data.load_seed_maps`).

  Related classes (FetalSynthGen's `generation_classes`): for meta-labels listed in
  `related_metas`, the subcluster means are `clip(mu_m + related_std * N(0, 1), 0,
  gmm.mean[1])` about one shared mean `mu_m` instead of independent draws.

  Contrast-specific ranges (`synthjax.priors.apply` fills them from real scans): a
  meta-label named in `meta_mean` draws its subcluster means (and the shared mean) from its
  own range, related means clipped to it; `meta_std` does the same for the stds.

  Attributes:
    num_subclusters: range of the (integer) number of subclusters per meta-label; the high
      end (at most 10) fixes the params shape.
    source: `"procedural"` or `"seeds"`.
    meta_labels: procedural source: groups of label values forming meta-labels 1, 2, ...;
      `()` makes every non-background label its own meta-label. Seeds source: the label
      values each seed meta-label covers, for `synthjax.priors.apply` (the split itself
      comes from the seed maps).
    num_meta: seeds source: the number of meta-labels (values `10 * m + k`, m = 1..num_meta).
    related_metas: meta-labels (1-based) whose subclusters share a mean.
    related_std: spread of related subcluster means about their shared mean.
    grid_scale: procedural source: range of the split field's grid / shape ratio.
    meta_mean: `(meta_label, low, high)` triples (1-based meta-labels): their own ranges
      of the subcluster means instead of `gmm.mean`.
    meta_std: the same for the subcluster stds instead of `gmm.std`.
  """

  num_subclusters: tuple[int, int] = field(default=(1, 6), check=int_range(low=1, high=10))
  source: str = field(default="procedural", check=choice(("procedural", "seeds")))
  meta_labels: tuple[tuple[int, ...], ...] = field(default=(), check=label_groups())
  num_meta: int = field(default=4, check=integer(low=1))
  related_metas: tuple[int, ...] = field(default=(), check=integers(low=1, distinct=True))
  related_std: float = field(default=25.0, check=real(low=0.0))
  grid_scale: Range = field(
    default=(0.03, 0.08), check=real_range(low=0.0, high=1.0, low_open=True)
  )
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())
  meta_mean: LabelRanges = field(default=(), check=label_ranges(low=0.0))
  meta_std: LabelRanges = field(default=(), check=label_ranges(low=0.0))


@functools.lru_cache(maxsize=64)
def meta_table(config: SynthConfig) -> np.ndarray:
  """Meta-label index (0-based) of each generation label, -1 for labels in no meta-label.

  Used by the procedural split; by default every non-background label is its own
  meta-label.
  """
  cfg = config.subclusters
  values = config.label_values
  table = np.full(len(values), -1, np.int32)
  if cfg.meta_labels:
    for m, group in enumerate(cfg.meta_labels):
      for v in group:
        if v not in values:
          raise ValueError(
            f"SubclusterConfig.meta_labels names label {v}, which is not in label_values {values}"
          )
        table[values.index(v)] = m
  else:
    m = 0
    for i, v in enumerate(values):
      if v != config.background:
        table[i] = m
        m += 1
  return table


def num_meta(config: SynthConfig) -> int:
  """Number of meta-labels the params hold subcluster tables for."""
  cfg = config.subclusters
  if cfg.source == "seeds":
    return cfg.num_meta
  return max(1, int(meta_table(config).max()) + 1)


def sample_subclusters(key, cfg: SubclusterConfig, gmm: GMMConfig, n_meta: int, fixed=None) -> dict:
  """Draws the subcluster counts and Gaussians of every meta-label.

  Returns:
    `applied`; `counts` `(M,)` int32 in `num_subclusters`; `means`, `stds` `(M, K_max)`
    from the GMM priors (related meta-labels about a shared mean); `phase` `(M,)` and
    `grid_scale` for the procedural split.
  """
  k = jax.random.split(key, 7)
  lo, hi = cfg.num_subclusters
  shape = (n_meta, hi)
  mean_range = _meta_range(gmm.mean, cfg.meta_mean, n_meta, "meta_mean")
  independent = draw.uniform(k[2], mean_range, shape)
  shared = draw.uniform(k[3], mean_range, (n_meta, 1))
  related = np.zeros((n_meta, 1), bool)
  for m in cfg.related_metas:
    if m <= n_meta:
      related[m - 1] = True
  clip_lo, clip_hi = mean_range if cfg.meta_mean else (0.0, max(gmm.mean[1], 0.0))
  near = jnp.clip(
    shared + cfg.related_std * jax.random.normal(k[4], shape, jnp.float32), clip_lo, clip_hi
  )
  return {
    "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
    "counts": draw.pick(
      fixed, "counts", jax.random.randint(k[1], (n_meta,), lo, hi + 1, jnp.int32)
    ),
    "means": draw.pick(fixed, "means", jnp.where(jnp.asarray(related), near, independent)),
    "stds": draw.pick(
      fixed,
      "stds",
      draw.uniform(k[5], _meta_range(gmm.std, cfg.meta_std, n_meta, "meta_std"), shape),
    ),
    "phase": draw.pick(fixed, "phase", draw.uniform(k[6], (0.0, 1.0), (n_meta,))),
    "grid_scale": draw.pick(
      fixed, "grid_scale", draw.uniform(jax.random.fold_in(key, 7), cfg.grid_scale)
    ),
  }


def _meta_range(default: Range, rows: LabelRanges, n_meta: int, field_name: str):
  """`default`, or with `rows` `(n_meta, 1)` low and high arrays: each meta-label's own
  range, else `default`."""
  if not rows:
    return default
  own = {r[0]: r[1:] for r in rows}
  unknown = sorted(m for m in own if not 1 <= m <= n_meta)
  if unknown:
    raise ValueError(
      f"SubclusterConfig.{field_name} names meta-label(s) {unknown}; the "
      f"config has meta-labels 1..{n_meta}"
    )
  lo, hi = zip(*(own.get(m, default) for m in range(1, n_meta + 1)))
  return np.asarray(lo, np.float32)[:, None], np.asarray(hi, np.float32)[:, None]


def seed_classes(seeds: jax.Array, counts: jax.Array, cfg: SubclusterConfig) -> jax.Array:
  """Class ids from stacked seed maps, with `counts[m]` subclusters for meta-label `m + 1`.

  Args:
    seeds: integer array `(K, X, Y, Z)`, `K >= num_subclusters[1]`; entry `K' - 1` holds
      the `subclasses_K'` seed values `10 * m + k` (0 outside every meta-label).
    counts: int32 `(num_meta,)` subcluster counts.
    cfg: the subcluster config.

  Returns:
    int32 `(X, Y, Z)` class ids (0 where no meta-label).
  """
  k_max = cfg.num_subclusters[1]
  seeds = seeds[:k_max].astype(jnp.int32)
  meta = seeds[0] // 10  # 1-based meta-label (its support is the same for every K)
  known = (meta >= 1) & (meta <= cfg.num_meta)
  m0 = jnp.clip(meta - 1, 0, cfg.num_meta - 1)
  n = counts[m0]
  chosen = jnp.take_along_axis(seeds, (n - 1)[None], axis=0)[0]
  sub = jnp.clip(chosen % 10, 0, n - 1)
  return jnp.where(known, 1 + m0 * k_max + sub, 0)


def split_field(key, p: dict, cfg: SubclusterConfig, shape) -> jax.Array:
  """Smooth field, uniform in (0, 1) at each voxel (normal CDF of a standardised field)."""
  shape = tuple(shape)
  g_max = tuple(draw.max_grid_size(cfg.grid_scale[1], s) for s in shape)
  small = jax.random.normal(key, g_max, jnp.float32)
  mats = [
    resample.dynamic_resize_matrix(
      shape[a], g_max[a], draw.grid_size(p["grid_scale"], shape[a], g_max[a])
    )
    for a in range(3)
  ]
  f = resample.apply_separable(small, mats)
  f = (f - jnp.mean(f)) / jnp.maximum(jnp.std(f), 1e-6)
  return 0.5 * (1.0 + jax.lax.erf(f / np.sqrt(2.0)))


def procedural_classes(
  key, p: dict, cfg: SubclusterConfig, index_map: jax.Array, label_meta: np.ndarray
) -> jax.Array:
  """Class ids splitting each meta-label into `counts[m]` level sets of a smooth field."""
  k_max = cfg.num_subclusters[1]
  u = split_field(key, p, cfg, index_map.shape)
  m0 = lookup.take_small(label_meta, index_map)
  inside = m0 >= 0
  m0 = jnp.maximum(m0, 0)
  n = lookup.take_small(p["counts"], m0)
  frac = jnp.mod(u + lookup.take_small(p["phase"].astype(jnp.float32), m0), 1.0)
  sub = jnp.clip(jnp.floor(frac * n).astype(jnp.int32), 0, n - 1)
  return jnp.where(inside, 1 + m0 * k_max + sub, 0)


def render(
  key,
  gmm: dict,
  sub: dict,
  index_map: jax.Array,
  class_map,
  background_index: int,
  std_scale: float = 1.0,
):
  """Per-voxel Gaussians: the subcluster's where a class applies, else the label's; every
  std times `std_scale` (`SynthConfig.voxel_std_scale`).

  With `class_map=None` (or `sub["applied"]` False) this is exactly the label GMM
  (`gmm.render_gmm`), drawn from the same key.
  """
  means, stds = gmm_stage.label_tables(gmm, background_index, std_scale)
  noise = rng.voxel_normal(key, index_map.shape)
  mu, sd = lookup.take_small(means, index_map), lookup.take_small(stds, index_map)
  if class_map is not None:
    cm = jnp.concatenate([jnp.zeros(1), precision.real(sub["means"]).reshape(-1)])
    cs = jnp.concatenate([jnp.zeros(1), precision.real(sub["stds"]).reshape(-1)])
    use = sub["applied"] & (class_map > 0)
    mu = jnp.where(use, cm[class_map], mu)
    sd = jnp.where(use, cs[class_map] * std_scale if std_scale != 1.0 else cs[class_map], sd)
  return mu + sd * noise


def carry_seed_classes(p: dict, cfg: SubclusterConfig, inputs) -> jax.Array | None:
  """The class ids of the seed maps (`inputs["seeds"]`) on the label map's grid, resampled
  with the labels; None for the procedural split."""
  seeds = inputs.get("seeds")
  if seeds is None:
    return None
  return seed_classes(jnp.asarray(seeds), p["counts"], cfg)


def render_source(key, image, p: dict, cfg: SubclusterConfig, ctx: record.RenderContext):
  """The source stage: the label Gaussians with the subclusters' where a class applies
  (the same voxel noise as the `gmm` stage, whose image it replaces)."""
  if ctx.params is None or ctx.synth_key is None:
    raise ValueError(
      "the subclusters source reads the gmm stage's params and key from the render context"
    )
  class_map = (ctx.carried or {}).get("subclusters")
  if class_map is None and cfg.source == "procedural":
    class_map = procedural_classes(key, p, cfg, ctx.index_map, meta_table(ctx.config))
  return render(
    ctx.synth_key("gmm"),
    ctx.params["gmm"],
    p,
    ctx.index_map,
    class_map,
    ctx.background_index,
    ctx.std_scale,
  )


STAGE = Stage(
  "subclusters",
  lambda k, c, f: sample_subclusters(k, c.subclusters, c.gmm, num_meta(c), f),
  phase="source",
  apply=render_source,
  carry=carry_seed_classes,
  domain={"counts": record.Bounds(1, 10), "stds": record.NONNEG, "grid_scale": record.GRID},
  strength={},
)
