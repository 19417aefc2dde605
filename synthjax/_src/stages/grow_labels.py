"""Anatomy the label maps lack: label sets grown into their neighbours.

A few label maps of healthy brains cannot show what real scans often show. Fetal brain MRI
is mostly done because of an anomaly, and its most frequent finding is enlarged ventricles
(ventriculomegaly: an atrial width above 10 mm, against about 6 mm normally); the
subarachnoid space is thin or effaced in a Chiari II malformation, and a brain mask drawn
tight against the cortex removes it from a reconstruction. A net that has only seen the
ventricles as slits and the brain wrapped in fluid paints a ring of CSF around every brain and
calls large ventricles white matter.

Each rule grows a set of labels into a set of neighbouring labels: the voxels of `into`
within a random distance (mm) of `grow` take `grow`'s first label. The edit runs on the
deformed label map, after its one resampling and before the intensities are drawn, so the
image and the segmentation show the same anatomy. The distance is an exact Euclidean one
(`ops.morphology.squared_distance`, truncated at the range's upper end), so a rule equals
`scipy.ndimage.distance_transform_edt` thresholded at the drawn radius.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from synthjax._src.checks import _as_tuple, config_class, field, flag, prob, real_range, to_int
from synthjax._src.ops import draw, lookup, morphology
from synthjax._src.stages import record
from synthjax._src.stages.record import Stage

# One rule: (labels that grow, labels they may replace, (low, high) radius in mm, probability).
Rule = tuple[tuple[int, ...], tuple[int, ...], tuple[float, float], float]


def _rules():
  """`(grow, into, (low, high), prob)` rules: non-empty disjoint label sets, a radius range
  in mm and a probability."""

  def check(name, value):
    try:
      rows = tuple(tuple(_as_tuple(r)) for r in _as_tuple(value))
    except TypeError:
      raise ValueError(
        f"{name} must be (grow, into, (low, high), prob) rules, got {value!r}"
      ) from None
    out = []
    for i, row in enumerate(rows):
      where = f"{name}[{i}]"
      if len(row) != 4:
        raise ValueError(f"{where} must be (grow, into, (low, high), prob), got {row!r}")
      try:
        grow = tuple(to_int(where, v) for v in _as_tuple(row[0]))
        into = tuple(to_int(where, v) for v in _as_tuple(row[1]))
      except TypeError:
        raise ValueError(f"{where} must name label values, got {row!r}") from None
      if not grow or not into or set(grow) & set(into):
        raise ValueError(
          f"{where} must grow a non-empty set of labels into another, disjoint one, "
          f"got grow={grow} into={into}"
        )
      radius = real_range(low=0.0)(f"{where} radius (mm)", row[2])
      p = prob()(f"{where} probability", row[3])
      out.append((grow, into, radius, p))
    return tuple(out)

  return check


@config_class
class GrowLabelsConfig:
  """Label sets grown into their neighbours, on the deformed label map.

  When the stage is applied, each rule `(grow, into, (low, high), prob)` is applied with
  its probability: the voxels labelled one of `into` within `r ~ U[low, high]` mm of a
  voxel labelled one of `grow` are relabelled `grow[0]`, in the image and the segmentation.
  Rules apply in order, each to the map the rules before it left.

  Attributes:
    rules: the rules, e.g. FeTA's ventricles (4) grown into the white matter (3) by up to
      5 mm, `((4,), (3,), (0.0, 5.0), 0.5)`, or the background (0) grown into the external
      CSF (1), `((0,), (1,), (0.0, 6.0), 0.5)`: a thinner subarachnoid space.
    prob: probability of applying the stage.
    enabled: whether the stage is part of the config.

  Examples:
    >>> cfg = GrowLabelsConfig(rules=[[[4], [3], [0, 5], 0.5]], prob=1.0, enabled=True)
    >>> cfg.rules
    (((4,), (3,), (0.0, 5.0), 0.5),)
  """

  rules: tuple[Rule, ...] = field(default=(), check=_rules())
  prob: float = field(default=0.0, check=prob())
  enabled: bool = field(default=False, check=flag())


def sample_grow_labels(key, cfg: GrowLabelsConfig, fixed=None) -> dict:
  """`applied`, and per rule whether it grows (`grow`) and its radius in mm (`radius`)."""
  k = jax.random.split(key, 3)
  n = len(cfg.rules)
  probs = jnp.asarray([r[3] for r in cfg.rules], jnp.float32).reshape(n)
  low = jnp.asarray([r[2][0] for r in cfg.rules], jnp.float32).reshape(n)
  high = jnp.asarray([r[2][1] for r in cfg.rules], jnp.float32).reshape(n)
  return {
    "applied": draw.pick(fixed, "applied", draw.bernoulli(k[0], cfg.prob)),
    "grow": draw.pick(fixed, "grow", jax.random.uniform(k[1], (n,)) < probs),
    "radius": draw.pick(
      fixed, "radius", jax.random.uniform(k[2], (n,), jnp.float32, minval=low, maxval=high)
    ),
  }


def apply_grow_labels(
  index_map: jax.Array, p: dict, cfg: GrowLabelsConfig, label_values, spacing
) -> jax.Array:
  """The label-index map with the applied rules' growth.

  Args:
    index_map: `(X, Y, Z)` int map of positions in `label_values`.
    p: params from `sample_grow_labels`.
    cfg: the stage config.
    label_values: the config's label values (the map's positions index them).
    spacing: the grid's voxel spacing in mm.

  Returns:
    The edited map, of `index_map`'s dtype.
  """
  values = [int(v) for v in label_values]
  for i, (grow, into, (_, r_max), _) in enumerate(cfg.rules):
    grows = np.isin(np.asarray(values), grow)
    intos = np.isin(np.asarray(values), into)
    target = values.index(grow[0])

    def edit(m, grows=grows, intos=intos, target=target, r_max=r_max, i=i):
      source = lookup.take_small(grows, m)
      d2 = morphology.squared_distance(source, r_max, spacing)
      r = jnp.clip(p["radius"][i], 0.0, r_max)
      return jnp.where(lookup.take_small(intos, m) & (d2 <= r * r), target, m).astype(m.dtype)

    if r_max > 0:
      index_map = jax.lax.cond(p["applied"] & p["grow"][i], edit, lambda m: m, index_map)
  return index_map


def check_labels(cfg: GrowLabelsConfig, label_values) -> None:
  """Refuses a rule naming a label that `label_values` lacks."""
  known = {int(v) for v in label_values}
  for i, (grow, into, _, _) in enumerate(cfg.rules):
    unknown = sorted((set(grow) | set(into)) - known)
    if unknown:
      raise ValueError(
        f"SynthConfig.grow_labels.rules[{i}] names label(s) {unknown}, "
        f"which are not in label_values"
      )


# Runs on the deformed label map: the image and the segmentation show the grown anatomy.
STAGE = Stage(
  "grow_labels",
  lambda k, c, f: sample_grow_labels(k, c.grow_labels, f),
  phase="labels",
  domain={"radius": record.NONNEG},
  strength={"radius": 0.0},
  apply=lambda k, m, p, c, ctx: apply_grow_labels(m, p, c, ctx.config.label_values, ctx.spacing),
)
