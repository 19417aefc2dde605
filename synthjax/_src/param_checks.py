"""Host-side checks of params values: what a params file or `fixed` may hold.

`sample_params` only draws values inside each stage's domain, so these checks matter for
params that come from elsewhere: a params JSON edited by hand or by a script, or `fixed`.
A value outside its stage's physical domain (`registry.Stage.domain`: a NaN rotation, a
rotation of 1000 degrees, a scaling of -1, a Gibbs alpha of 2) or an `applied` flag set for
a stage the config disables would otherwise render something else than the file says, or
nothing, without a word.

Values of stages that the config disables are not rendered, so only their `applied` flag
is checked. Traced values (under `jit` or `vmap`) cannot be inspected and pass unchecked.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.core
import numpy as np

from synthjax._src import registry


def _where(index) -> str:
  return "".join(f"[{int(i)}]" for i in index)


def check_values(
  params: dict[str, Any], config, template: dict[str, Any], *, what: str = "params"
) -> None:
  """Raises `ValueError` naming the entry path (`affine.rotation[1]`) and the value of the
  first entry of `params` that is non-finite or outside its domain, or an `applied` flag
  set for a stage that `config` disables.

  Args:
    params: nested dict (stage -> entry -> array-like); missing stages or entries are
      skipped, leading batch axes allowed.
    config: the `SynthConfig`.
    template: `params_template(config)`, for the static row counts of the count bounds.
    what: how the message names the params ("params JSON", "fixed").
  """
  stages = registry.by_name(config)  # a `config_variant`'s own stages included
  for stage_name, entries in params.items():
    stage = stages.get(stage_name)
    if stage is None or not isinstance(entries, dict):
      continue
    enabled = registry.enabled(stage, config)
    for name, value in entries.items():
      if value is None or any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(value)):
        continue
      a = np.asarray(value)
      path = f"{what} {stage_name}.{name}"
      if name == "applied" and not enabled and a.dtype == bool and a.any():
        raise ValueError(
          f"{path} is true but the {stage_name} stage is disabled in the "
          f"config (enabled=False): it would not be rendered; enable it to "
          "apply it"
        )
      if not enabled or a.dtype == bool or a.dtype.kind not in "fiu":
        continue
      if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
          i = tuple(np.argwhere(bad)[0])
          raise ValueError(f"{path}{_where(i)} must be finite, got {a[i].item()!r}")
      bounds = stage.domain.get(name)
      if bounds is None:
        continue
      high = bounds.high
      if bounds.at_most_rows is not None:
        high = template[stage_name][bounds.at_most_rows].shape[0]
      lo = bounds.low
      bad = np.zeros(a.shape, bool)
      if lo is not None:
        bad |= (a <= lo) if bounds.low_open else (a < lo)
      if high is not None:
        bad |= a > high
      if bad.any():
        i = tuple(np.argwhere(bad)[0])
        raise ValueError(
          f"{path}{_where(i)} = {a[i].item()!r} is outside its domain {bounds.describe(high)}"
        )
