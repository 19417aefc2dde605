"""Generator configs from short spec strings, for ablations on the command line.

`synthjax:PRESET` (`synthseg`, `fetal`) is the preset on the run's labels, shape and
spacing; a suffix `~STAGE` switches a stage off, `+STAGE.FIELD=JSON` sets one field of a
stage and `+FIELD=JSON` one of the config (`synthjax:fetal~boundary~slice_stack`,
`synthjax:synthseg+gmm.prob_background_zero=1`, `synthjax:fetal+noise_spacing=null`);
`@seeds` draws the fetal preset's sub-label classes from FetalSynthGen's seed maps,
`@priors` takes given intensity priors and `@nopriors` the preset's wide ranges (the
fetal preset's T2w priors off). `config:NAME` is a SynthConfig JSON file named NAME, its
shape and spacing replaced by the run's.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence


def config_from_spec(
  spec: str,
  values: Sequence[int],
  shape: Sequence[int],
  spacing: Sequence[float],
  configs: Mapping[str, str],
  priors=None,
):
  """The SynthConfig a spec string names.

  Args:
    spec: `synthjax:PRESET[@AT...][~STAGE | +STAGE.FIELD=JSON | +FIELD=JSON ...]` or
      `config:NAME`.
    values: the label values of the maps.
    shape: the training shape.
    spacing: the training spacing (mm).
    configs: config files by NAME, for `config:NAME`.
    priors: the intensity priors `@priors` takes (`synthjax.priors.IntensityPriors`).

  Returns:
    The `synthjax.SynthConfig`.

  Raises:
    ValueError: a spec that cannot be built, with the spec in the message.
  """
  import synthjax

  if spec.startswith("synthjax:"):
    preset, *changes = re.split(r"(?=[~+])", spec.split(":", 1)[1])
    preset, *ats = preset.split("@")
    unknown = sorted(set(ats) - {"seeds", "priors", "nopriors"})
    if unknown:
      raise ValueError(f"{spec}: unknown '@{unknown[0]}' (@seeds, @priors, @nopriors)")
    build = {"synthseg": synthjax.presets.synthseg, "fetal": synthjax.presets.fetal}
    if preset not in build:
      raise ValueError(f"{spec}: unknown preset {preset!r} (synthseg, fetal)")
    kwargs = {}
    if "seeds" in ats:
      if preset != "fetal":
        raise ValueError(f"{spec}: '@seeds' (FetalSynthGen's seed maps) is for the fetal preset")
      kwargs["seeds"] = True
    if "priors" in ats:
      if priors is None:
        raise ValueError(f"{spec}: '@priors' needs --priors FILE (benchmarks/estimate_priors.py)")
      kwargs["priors"] = priors
    if "nopriors" in ats:  # the preset's own wide ranges (the fetal preset's T2w ones off)
      kwargs["priors"] = None
    cfg = build[preset](tuple(values), tuple(shape), tuple(spacing), **kwargs)
    for change in changes:
      if change.startswith("~"):  # ~STAGE: the stage off
        stage, update = change[1:], {"enabled": False}
      else:  # +STAGE.FIELD=JSON: one field set; +FIELD=JSON: a config field
        target, _, value = change[1:].partition("=")
        stage, _, field = target.partition(".")
        try:
          update = {field or stage: json.loads(value)}
        except json.JSONDecodeError:
          raise ValueError(f"{spec}: {change!r} needs +STAGE.FIELD=JSON or +FIELD=JSON") from None
        update = {k: tuple(v) if isinstance(v, list) else v for k, v in update.items()}
        if not field:
          try:
            cfg = cfg.replace(**update)
          except (TypeError, ValueError) as e:
            raise ValueError(f"{spec}: {change!r}: {e}") from None
          continue
      if not hasattr(cfg, stage) or not dataclasses.is_dataclass(getattr(cfg, stage)):
        raise ValueError(f"{spec}: the config has no stage {stage!r}")
      try:
        cfg = cfg.replace(**{stage: update})
      except (TypeError, ValueError) as e:
        raise ValueError(f"{spec}: {change!r}: {e}") from None
    return cfg
  if spec.startswith("config:"):
    name = spec.split(":", 1)[1]
    if name not in configs:
      raise ValueError(f"{spec}: give its file with --config {name}=cfg.json")
    with open(configs[name]) as f:
      cfg = synthjax.SynthConfig.from_dict(json.load(f))
    return cfg.replace(shape=tuple(shape), spacing=tuple(spacing))
  raise ValueError(f"unknown generator {spec!r}")
