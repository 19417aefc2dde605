"""Sim-to-real: train the same U-Net on each generator's images, test on real scans.

For every generator under test, the recipe's U-Net (`synthjax.train`) is trained
from the same initial weights, on the same label maps in the same order, for the same
number of steps, on synthetic images only; every `--eval-every` steps it segments the
real `--test` scans, and the Dice of each label is recorded. At the end it also records
the 95% Hausdorff distance, writes the JSON, a Markdown table and a PNG per test scan (the
real slice, its ground truth and each generator's prediction).

Generators:
- `synthjax:PRESET` (`synthseg`, `fetal`), rendered inside the train step; for ablations,
  a suffix `~STAGE` switches a stage off, `+STAGE.FIELD=JSON` sets one field of a stage and
  `+FIELD=JSON` one of the config (`synthjax:fetal~boundary~slice_stack`,
  `synthjax:synthseg+gmm.prob_background_zero=1`, `synthjax:fetal+noise_spacing=null`);
  `synthjax:fetal@seeds` draws the sub-label classes from FetalSynthGen's seed maps
  (`--seeds`); `@priors` takes the intensity priors of `--priors FILE`, `@nopriors` the
  preset's wide ranges (the fetal preset's T2w priors off);
- `config:NAME`, a SynthConfig JSON given with `--config NAME=cfg.json` (its shape and
  spacing are replaced by the run's);
- `torchio`: `RandomLabelsToImage`, `RandomAffine`, `RandomElasticDeformation`,
  `RandomBiasField`, `RandomGamma`, `RandomAnisotropy`, `RandomNoise`, each with TorchIO's
  defaults, in that order;
- `cornucopia`: `SynthFromLabelTransform()` with its defaults.
Peer images are rendered on the CPU, outside the train step. Every image is normalised
the same way (`scans.normalize_intensity`).

Trainers: `--trainer jax` (the recipe's train step) or `--trainer torch` (the PyTorch twin
of the same net, `torch_twin.py`, for CPUs where XLA's convolutions are slow). The JSON
and the table say which one ran.

Real data: `--test IMAGE:LABELS` pairs (any NIfTI; brought to the training grid as
`synthjax segment` does, the labels by majority vote or nearest neighbour), and `--mni152 N`:
nilearn's MNI152 2009 T1 template with a 4-class map built from its tissue maps
(background, CSF = brain mask minus GM minus WM, GM, WM) as the test pair, and N label maps
deformed from that map (random affine + smooth displacement) as the training maps.

Usage (from the repository root)::

    python benchmarks/sim2real.py --mni152 4 --generators synthjax:synthseg torchio cornucopia \\
        --dim 2 --down 2 --steps 1000 --eval-every 100 --json benchmarks/results/sim2real_mni.json
    python benchmarks/sim2real.py --train ../shared/data/fetal/sub-*/anat/*_dseg.nii.gz \\
        --test T2w.nii.gz:dseg.nii.gz --generators synthjax:fetal synthjax:synthseg torchio \\
        cornucopia --dim 2 --down 4 --steps 2000 --eval-every 200 --seed 0 --json fetal.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import numpy as np

from synthjax._src.mni152 import build_mni152, split_mni152  # noqa: F401 (the benchmark's API)
from synthjax._src.scans import common_shape, load_test, pad_to  # noqa: F401
from synthjax._src.specs import config_from_spec

# --------------------------------------------------------------------------------------
# Data


def label_reader(down, spacing=None):
  """How the benchmark reads label maps (and their seed maps): in RAS orientation,
  coarsened by `down`, or brought to `spacing` (mm, maps of any voxel size)."""
  from synthjax import scans

  if spacing is None:
    return scans.LabelReader(down=down)
  return scans.LabelReader(spacing=tuple(float(s) for s in spacing))


def load_train_maps(paths, down, spacing=None):
  """Label maps read by `label_reader(down, spacing)`; returns `(maps, spacing)`."""
  from synthjax import scans

  reader = label_reader(down, spacing)
  maps, first = [], None
  for p in paths:
    arr, affine = reader(p)
    sp = scans.spacing_of(affine)
    if first is None:
      first = sp
    elif not np.allclose(sp, first, rtol=1e-3):
      raise SystemExit(
        f"{p}: spacing {sp} differs from {paths[0]}'s {first}; give --spacing "
        f"to bring maps of different voxel sizes to one grid"
      )
    maps.append(arr)
  return maps, tuple(first)


def load_seed_stacks(paths, seeds_root, shape, down, spacing=None):
  """FetalSynthGen's seed maps of each label map (`synthjax.data.load_seed_maps`), as many
  as `presets.fetal(..., seeds=True)` draws, each of the `K` layers read as its map is
  (`label_reader(down, spacing)`) and centred in `shape`: `(K, *shape)` int8 arrays on
  the training grid."""
  import synthjax
  from synthjax import data as sdata

  reader = label_reader(down, spacing)
  sc = synthjax.presets.fetal((0,), (8, 8, 8), seeds=True).subclusters
  out = []
  for p in paths:
    stack = sdata.load_seed_maps(
      p, seeds_root, num_subclusters=sc.num_subclusters[1], num_meta=sc.num_meta
    )
    out.append(np.stack([pad_to(reader.layer(layer, p), shape) for layer in stack]).astype(np.int8))
  return out


def synthetic_probe(spec, down, shape, spacing, seed, target=None):
  """A test pair rendered from a label map (`MAP:SIZE`): the map coarsened by `down` (or
  brought to the `target` spacing), shown
  at SIZE times its size, by the synthseg preset with no other spatial change."""
  import jax

  import synthjax
  from synthjax import scans

  path, size = spec.rsplit(":", 1)
  (labels,), _ = load_train_maps([path], down, target)
  labels = pad_to(labels, shape)
  values = sorted(np.unique(labels).tolist())
  cfg = synthjax.presets.synthseg(values, shape, spacing)
  cfg = cfg.replace(affine={"object_size": (float(size), float(size))})
  fixed = {
    "affine": {
      "applied": True,
      "rotation": [0.0] * 3,
      "scaling": [1.0] * 3,
      "shear": [0.0] * 6,
      "translation": [0.0] * 3,
    },
    "deformation": {"applied": False},
    "flip": {"applied": False},
    "crop": {"position": [0.5] * 3},
  }
  params = synthjax.sample_params(jax.random.key(seed), cfg, fixed=fixed)
  image, seg = synthjax.synthesize(jax.random.key(seed + 1), params, labels, cfg)
  name = f"probe-{os.path.basename(path).split('.nii')[0]}-x{float(size):g}"
  return name, scans.normalize_intensity(np.asarray(image)), np.asarray(seg, np.int32)


# --------------------------------------------------------------------------------------
# Generators


class SynthjaxGenerator:
  """A synthjax config, rendered inside the jitted train step (or on the host)."""

  inside_step = True

  def __init__(self, name, config):
    self.name, self.config = name, config
    self._host = None

  @property
  def uses_seeds(self):
    sc = self.config.subclusters
    return sc.enabled and sc.source == "seeds"

  def render_host(self, labels, key_data, classes, image=None, seeds=None):
    """Renders on the host (for the torch trainer): numpy images and class indices."""
    import jax

    from synthjax._src.train import steps

    if self._host is None:
      cfg = self.config
      self._host = jax.jit(lambda b: steps.render(b, cfg, classes)[:2])
    batch = {"labels": labels, "key": key_data}
    if image is not None:
      batch["image"] = image
    if seeds is not None:
      batch["seeds"] = seeds
    images, targets = self._host(batch)
    return np.asarray(images), np.asarray(targets)


class TorchioGenerator:
  inside_step = False
  name = "torchio"

  def __init__(self, spacing):
    import torchio as tio

    self.spacing = spacing
    self.transform = tio.Compose(
      [
        tio.RandomLabelsToImage(label_key="label", image_key="image"),
        tio.RandomAffine(),
        tio.RandomElasticDeformation(),
        tio.RandomBiasField(),
        tio.RandomGamma(),
        tio.RandomAnisotropy(),
        tio.RandomNoise(),
      ]
    )

  def __call__(self, labels, seed):
    import torch
    import torchio as tio

    torch.manual_seed(seed)
    affine = np.diag(list(self.spacing) + [1.0])
    subject = tio.Subject(
      label=tio.LabelMap(tensor=torch.from_numpy(labels.astype(np.int64))[None], affine=affine)
    )
    out = self.transform(subject)
    return out["image"].data[0].numpy().astype(np.float32), out["label"].data[0].numpy()


class CornucopiaGenerator:
  inside_step = False
  name = "cornucopia"

  def __init__(self, spacing):
    import cornucopia as cc

    self.transform = cc.SynthFromLabelTransform()

  def __call__(self, labels, seed):
    import random

    import torch

    torch.manual_seed(seed)
    random.seed(seed)
    with torch.no_grad():
      image, label = self.transform(torch.from_numpy(labels.astype(np.int64))[None])
    return image[0].numpy().astype(np.float32), label[0].numpy()


def read_priors(path):
  """The `--priors` file's intensity priors, or None without one."""
  if not path:
    return None
  import synthjax

  try:
    return synthjax.priors.load(path)
  except ValueError as e:
    raise SystemExit(str(e)) from None


def make_generator(spec, values, shape, spacing, configs, priors=None):
  """The generator a spec names: `torchio`, `cornucopia`, or a synthjax config built from
  the spec string (`synthjax:...`, `config:NAME`; `synthjax._src.specs`)."""
  if spec == "torchio":
    return TorchioGenerator(spacing)
  if spec == "cornucopia":
    return CornucopiaGenerator(spacing)
  try:
    return SynthjaxGenerator(spec, config_from_spec(spec, values, shape, spacing, configs, priors))
  except ValueError as e:
    raise SystemExit(str(e)) from None


# --------------------------------------------------------------------------------------
# Trainers


class JaxTrainer:
  name = "jax"

  def __init__(self, args, classes, synth_config):
    from flax import nnx

    from synthjax._src.train import model, steps

    net = model.build(model_config(args), len(classes), seed=args.seed)
    graphdef, state = nnx.split(net)
    self.params = nnx.to_pure_dict(state)
    self.tx = steps.make_optimizer(args.lr, args.steps, schedule=args.schedule)
    self.opt_state = self.tx.init(self.params)
    self.step_fn = steps.make_train_step(
      graphdef,
      self.tx,
      synth_config=synth_config,
      classes=classes,
      dim=args.dim,
      slices_per_volume=args.slices,
    )
    self.predict_fn = steps.make_predictor(graphdef, dim=args.dim)
    self.args, self.graphdef, self.classes = args, graphdef, classes

  def step_fn_for(self, synth_config):
    """Another train step on the same net and optimizer, rendering with `synth_config`."""
    from synthjax._src.train import steps

    return steps.make_train_step(
      self.graphdef,
      self.tx,
      synth_config=synth_config,
      classes=self.classes,
      dim=self.args.dim,
      slices_per_volume=self.args.slices,
    )

  def step(self, batch, fn=None):
    fn = fn or self.step_fn
    self.params, self.opt_state, out = fn(self.params, self.opt_state, batch)
    return float(out["loss"])

  def predict(self, image, patch):
    from synthjax._src.train import steps

    return steps.segment_array(self.predict_fn, self.params, image, dim=self.args.dim, patch=patch)


class TorchTrainer:
  name = "torch"

  def __init__(self, args, classes, synth_config):
    import torch

    from torch_twin import TwinUNet

    torch.manual_seed(args.seed)
    self.net = TwinUNet(len(classes), dim=args.dim, features=tuple(args.features), convs=args.convs)
    self.opt = torch.optim.Adam(self.net.parameters(), args.lr)
    if args.schedule == "cosine":
      self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        self.opt, args.steps, eta_min=args.lr / 100
      )
    else:
      self.sched = None
    self.args, self.classes = args, classes

  def step(self, batch):
    import torch

    from torch_twin import dice_ce_loss

    x = torch.from_numpy(np.array(batch["image"], dtype=np.float32))[:, None]
    t = torch.from_numpy(np.ascontiguousarray(batch["target"]).astype(np.int64))
    self.net.train()
    self.opt.zero_grad()
    loss = dice_ce_loss(self.net(x), t)
    loss.backward()
    self.opt.step()
    if self.sched is not None:
      self.sched.step()
    return loss.item()

  def predict(self, image, patch):
    import torch

    from synthjax._src.train import steps

    net = self.net

    def predict_fn(_, patches):
      x = torch.from_numpy(np.asarray(patches, np.float32))[:, None]
      with torch.no_grad():
        if self.args.dim == 2:
          y = torch.softmax(net(x[..., 0]), dim=1).movedim(1, -1)[:, :, :, None]
        else:
          y = torch.softmax(net(x), dim=1).movedim(1, -1)
      return y.numpy()

    return steps.segment_array(predict_fn, None, image, dim=self.args.dim, patch=patch)


def model_config(args):
  return {
    "dim": args.dim,
    "features": list(args.features),
    "convs_per_level": args.convs,
    "norm": "instance",
    "activation": "leaky_relu",
    "upsample": "transpose",
    "conv_impl": "auto",
  }


# --------------------------------------------------------------------------------------
# The benchmark


def batch_plan(seed, step, batch, n_maps):
  """Map index and global sample index of each sample of a step (same for every generator)."""
  rng = np.random.default_rng([seed, 7, step])
  return rng.integers(0, n_maps, batch), [step * batch + i for i in range(batch)]


def evaluate(trainer, tests, classes, patch, spacing, *, final=False):
  """Each test scan's `metrics.score_scan` record (with HD95 and the prediction at the end)."""
  from synthjax._src.train import metrics

  out = {}
  labels = [c for c in classes if c != 0]
  table = np.asarray(sorted(classes), np.int32)
  for name, image, truth in tests:
    seg = table[np.argmax(trainer.predict(image, patch), axis=-1)]
    record = metrics.score_scan(seg, truth, labels, spacing=spacing if final else None)
    if final:
      record["prediction"] = seg
    out[name] = record
  return out


def run_generator(gen, args, maps, classes, shape, spacing, tests, patch, real=(), seeds=None):
  import jax

  from synthjax import data as sdata
  from synthjax import scans
  from synthjax._src.train import metrics, steps

  trainer_cls = JaxTrainer if args.trainer == "jax" else TorchTrainer
  inside = gen.inside_step and args.trainer == "jax"
  trainer = trainer_cls(args, classes, gen.config if inside else None)
  curves = {name: [] for name, _, _ in tests}
  mean_curve = []
  use_seeds = isinstance(gen, SynthjaxGenerator) and gen.uses_seeds
  if use_seeds and seeds is None:
    raise SystemExit(f"{gen.name}: uses seed maps; give their folder with --seeds")
  if use_seeds and real:
    raise SystemExit(f"{gen.name}: real-image fine-tuning does not take seed maps")
  losses, render_s, train_s = [], 0.0, 0.0
  take = jax.jit(lambda k, i, t: steps.take_slices(k, i, t, args.slices))
  if real:
    # The real image replaces the generator's intensities; its spatial and intensity
    # stages augment it (same params pytree as a synthetic sample).
    real_cfg = gen.config.replace(image_intensity={"prob": 1.0, "enabled": True})
    if args.trainer == "jax":
      real_fn = trainer.step_fn_for(real_cfg)
    else:
      real_gen = SynthjaxGenerator(gen.name + "+real", real_cfg)
  final = None
  for step in range(1, args.steps + 1):
    which, indices = batch_plan(args.seed, step, args.batch, len(maps))
    labels = np.stack([maps[i] for i in which])
    seed_batch = np.stack([seeds[i] for i in which]) if use_seeds else None
    key_data = np.stack([sdata.sample_key_data(args.seed, j) for j in indices])
    t0 = time.perf_counter()
    if real and step % args.real_every == 0:
      pick = np.random.default_rng([args.seed, 11, step]).integers(0, len(real), args.batch)
      rl = np.stack([real[i][0] for i in pick])
      ri = np.stack([real[i][1] for i in pick])
      rkeys = np.stack([sdata.sample_key_data((args.seed + 1) % (1 << 32), j) for j in indices])
      if args.trainer == "jax":
        losses.append(trainer.step({"labels": rl, "key": rkeys, "image": ri}, fn=real_fn))
      else:
        images, targets = real_gen.render_host(rl, rkeys, classes, image=ri)
        if args.dim == 2:
          im, tg = take(jax.random.wrap_key_data(rkeys), images, targets)
          images, targets = np.asarray(im), np.asarray(tg)
        losses.append(trainer.step({"image": images, "target": targets}))
      train_s += time.perf_counter() - t0
    else:  # a synthetic step
      if inside:
        batch = {"labels": labels, "key": key_data}
        if use_seeds:
          batch["seeds"] = seed_batch
      else:
        if isinstance(gen, SynthjaxGenerator):
          images, targets = gen.render_host(labels, key_data, classes, seeds=seed_batch)
        else:
          pairs = [gen(lab, args.seed * 1_000_003 + j) for lab, j in zip(labels, indices)]
          images = np.stack([scans.normalize_intensity(p[0]) for p in pairs])
          segs = np.stack([p[1] for p in pairs]).astype(np.int32)
          unknown = set(np.unique(segs).tolist()) - set(classes)
          if unknown:
            raise SystemExit(
              f"{gen.name}: produced label values {sorted(unknown)} not in {classes}"
            )
          targets = np.searchsorted(np.asarray(classes), segs).astype(np.int32)
        t1 = time.perf_counter()
        render_s += t1 - t0
        t0 = t1
        if args.trainer == "torch":
          if args.dim == 2:
            im, tg = take(jax.random.wrap_key_data(key_data), images, targets)
            images, targets = np.asarray(im), np.asarray(tg)
          batch = {"image": images, "target": targets}
        else:
          batch = {"image": images, "seg": np.asarray(classes, np.int32)[targets], "key": key_data}
      losses.append(trainer.step(batch))
      train_s += time.perf_counter() - t0
    last = step == args.steps
    if (args.eval_every and step % args.eval_every == 0) or last:
      result = evaluate(trainer, tests, classes, patch, spacing, final=last)
      for name, rec in result.items():
        entry = {"step": step, "mean_dice": rec["mean_dice"], "per_label": rec["per_label"]}
        curves[name].append(entry)
        if last:
          final = result
      mean = dict(metrics.mean_over_scans(result.values()), step=step)
      mean_curve.append(mean)
      if len(result) <= 3:
        means = ", ".join(f"{n} {r['mean_dice']:.3f}" for n, r in result.items())
      else:
        means = (
          f"mean over {len(result)} scans {mean['mean_dice']:.3f} (lowest "
          f"{mean['min_dice']:.3f}); per label "
          + " ".join(f"{k}:{v:.2f}" for k, v in mean["per_label"].items())
        )
      print(
        f"  {gen.name} [{args.trainer}] step {step}: loss {np.mean(losses[-10:]):.4f}; "
        f"mean Dice {means}",
        flush=True,
      )
  return {
    "curves": curves,
    "mean_curve": mean_curve,
    "losses": losses,
    "render_seconds": render_s,
    "train_seconds": train_s,
    "final": final,
  }


def summary_table(results, tests, args):
  """The mean over scans per generator at each evaluation step and per label at the end,
  then each scan's mean Dice at each evaluation step."""
  lines = []
  first = next(iter(results.values()))
  steps = [e["step"] for e in first["mean_curve"]]
  labels = list(first["mean_curve"][-1]["per_label"])
  lines.append(
    f"Mean over {len(tests)} test scan(s); trainer {args.trainer}, {args.dim}-D net "
    f"{'-'.join(map(str, args.features))} ch, batch {args.batch}"
    f"{f' x {args.slices} slices' if args.dim == 2 else ''}, {grid_text(args)}, "
    f"seed {args.seed}."
  )
  lines.append("")
  lines.append(
    "| generator | "
    + " | ".join(f"step {k}" for k in steps)
    + " | "
    + " | ".join(f"Dice {l} (end)" for l in labels)
    + " | lowest scan (end) |"
  )
  lines.append("|---|" + "---|" * (len(steps) + len(labels) + 1))
  for gen, r in results.items():
    end = r["mean_curve"][-1]
    lines.append(
      f"| {gen} | "
      + " | ".join(f"{e['mean_dice']:.3f}" for e in r["mean_curve"])
      + " | "
      + " | ".join(f"{end['per_label'].get(l, float('nan')):.2f}" for l in labels)
      + f" | {end['min_dice']:.3f} |"
    )
  lines.append("")
  lines.append("Mean Dice of each scan at steps " + " / ".join(map(str, steps)) + ":")
  lines.append("")
  lines.append("| scan | " + " | ".join(results) + " |")
  lines.append("|---|" + "---|" * len(results))
  for name, _, _ in tests:
    lines.append(
      f"| {name} | "
      + " | ".join(
        " / ".join(f"{e['mean_dice']:.2f}" for e in r["curves"][name]) for r in results.values()
      )
      + " |"
    )
  lines.append("")
  return "\n".join(lines)


def grid_text(args):
  if args.spacing:
    return f"labels at {'x'.join(f'{v:g}' for v in args.spacing)} mm"
  return f"labels coarsened {args.down}x"


def markdown_table(results, tests, args):
  lines = [summary_table(results, tests, args)] if len(tests) > 1 else []
  for name, _, _ in tests[:3]:
    labels = None
    for r in results.values():
      labels = list(r["final"][name]["per_label"])
      break
    lines.append(
      f"Test scan `{name}`; trainer {args.trainer}, {args.dim}-D net "
      f"{'-'.join(map(str, args.features))} ch, {args.steps} steps of batch "
      f"{args.batch}{f' x {args.slices} slices' if args.dim == 2 else ''}, "
      f"{grid_text(args)}, seed {args.seed}."
    )
    lines.append("")
    lines.append(
      "| generator | mean Dice (final) | best along the run (step) | "
      + " | ".join(f"Dice {l}" for l in labels)
      + " | mean HD95 (mm) |"
    )
    lines.append("|---|---|---|" + "---|" * len(labels) + "---|")
    for gen, r in results.items():
      final = r["final"][name]
      curve = r["curves"][name]
      best = max(curve, key=lambda e: e["mean_dice"])
      hd = [v for v in final["hd95"].values() if np.isfinite(v)]
      hd_text = f"{np.mean(hd):.1f}" if hd else "—"
      lines.append(
        f"| {gen} | {final['mean_dice']:.3f} | {best['mean_dice']:.3f} "
        f"({best['step']}) | "
        + " | ".join(f"{final['per_label'][l]:.2f}" for l in labels)
        + f" | {hd_text} |"
      )
    lines.append("")
  return "\n".join(lines)


def save_curves_png(path, results):
  """Mean Dice over the test scans against the step, one line per generator, with the
  lowest and highest scan shaded."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.0, 4.0))
  for gen, r in results.items():
    steps = [e["step"] for e in r["mean_curve"]]
    per_scan = np.array([[e["mean_dice"] for e in c] for c in r["curves"].values()])
    (line,) = ax.plot(steps, [e["mean_dice"] for e in r["mean_curve"]], marker="o", label=gen)
    ax.fill_between(
      steps, per_scan.min(axis=0), per_scan.max(axis=0), alpha=0.15, color=line.get_color()
    )
  ax.set_xlabel("step")
  ax.set_ylabel("mean Dice over scans (band: their range)")
  ax.set_ylim(0, 1)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save_png(path, name, image, truth, results, classes):
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  z = int(np.argmax((truth > 0).sum(axis=(0, 1))))
  panels = [("real scan", image[:, :, z], "gray"), ("ground truth", truth[:, :, z], "tab10")]
  for gen, r in results.items():
    pred = r["final"][name]["prediction"]
    panels.append((f"{gen}\nDice {r['final'][name]['mean_dice']:.2f}", pred[:, :, z], "tab10"))
  fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0))
  vmax = max(classes)
  for ax, (title, arr, cmap) in zip(np.atleast_1d(axes), panels):
    ax.imshow(
      np.rot90(arr),
      cmap=cmap,
      vmin=0,
      vmax=1 if cmap == "gray" else max(vmax, 9),
      interpolation="nearest",
    )
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--train", nargs="*", default=[], help="training label maps")
  p.add_argument("--test", nargs="*", default=[], metavar="IMAGE:LABELS")
  p.add_argument(
    "--test-dir",
    nargs="*",
    default=[],
    metavar="DIR",
    help="test on every image/label pair below DIR (BIDS-like names, see "
    "--image-suffix and --label-suffix)",
  )
  p.add_argument(
    "--test-match",
    metavar="REGEX",
    help="keep the test pairs whose image path matches (e.g. an age range)",
  )
  p.add_argument(
    "--spacing",
    type=float,
    nargs="+",
    metavar="MM",
    help="training spacing (one or three values): brings label maps of any voxel "
    "size to it (default: the maps' spacing times --down)",
  )
  p.add_argument("--image-suffix", default="_T2w", help="image names end with this")
  p.add_argument(
    "--label-suffix",
    default="_dseg",
    help="a label map's name: its image's with this suffix instead",
  )
  p.add_argument(
    "--seeds",
    metavar="DIR",
    help="FetalSynthGen's seed-map folder (holding subclasses_K) of the training "
    "maps, for generators 'synthjax:fetal@seeds'",
  )
  p.add_argument(
    "--priors",
    metavar="FILE",
    help="intensity priors for 'synthjax:PRESET@priors' (estimate_priors.py)",
  )
  p.add_argument(
    "--mni152",
    type=int,
    default=0,
    metavar="N",
    help="add the MNI152 test pair and N label maps deformed from it",
  )
  p.add_argument(
    "--mni152-split",
    action="store_true",
    help="with --mni152: test on the inferior half of the MNI152 brain and offer "
    "the superior half for --real fine-tuning (--real-every)",
  )
  p.add_argument(
    "--real",
    nargs="*",
    default=[],
    metavar="IMAGE:LABELS",
    help="real pairs for real-image fine-tuning (synthjax generators)",
  )
  p.add_argument(
    "--real-every",
    type=int,
    default=0,
    help="every K-th step trains on a real pair augmented by the generator's "
    "spatial and intensity stages (0: never)",
  )
  p.add_argument(
    "--probe",
    nargs="*",
    default=[],
    metavar="MAP:SIZE",
    help="add a synthetic test pair: MAP rendered once by the synthseg preset "
    "at SIZE times its size (e.g. a younger-looking brain: 0.5)",
  )
  p.add_argument("--generators", nargs="+", default=["synthjax:synthseg", "torchio", "cornucopia"])
  p.add_argument("--config", nargs="*", default=[], metavar="NAME=FILE")
  p.add_argument("--dim", type=int, choices=(2, 3), default=2)
  p.add_argument(
    "--down",
    type=int,
    default=None,
    help="coarsening factor of the label maps (default 4; or --spacing)",
  )
  p.add_argument("--steps", type=int, default=1000)
  p.add_argument("--eval-every", type=int, default=100)
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--slices", type=int, default=8)
  p.add_argument("--features", type=int, nargs="+", default=[16, 32, 64, 128])
  p.add_argument("--convs", type=int, default=2)
  p.add_argument("--lr", type=float, default=2e-3)
  p.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--trainer", choices=("jax", "torch"), default="jax")
  p.add_argument(
    "--work",
    default=os.path.join(ROOT, "benchmarks", "results", "sim2real-data"),
    help="folder for the built MNI152 data",
  )
  p.add_argument("--json", required=True)
  p.add_argument("--table", help="write the Markdown table here")
  p.add_argument("--png-dir", help="folder for the per-scan PNGs (default: next to --json)")
  args = p.parse_args(argv)
  commit = subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
  ).stdout.strip()

  from synthjax import scans
  from synthjax._src.train import train as train_script

  train_paths = train_script.expand_paths(args.train) if args.train else []
  test_pairs = scans.parse_pairs(args.test)
  if args.test_match:
    test_pairs = [t for t in test_pairs if re.search(args.test_match, t[0])]
  try:
    test_pairs += scans.pairs_in(
      args.test_dir,
      image_suffix=args.image_suffix,
      label_suffix=args.label_suffix,
      match=args.test_match,
    )
  except scans.ScanError as e:
    raise SystemExit(f"--test-dir: {e}") from None
  real_pairs = scans.parse_pairs(args.real)
  if args.mni152:
    paths, pair = build_mni152(args.work, args.mni152, seed=args.seed)
    train_paths += paths
    if args.mni152_split:
      superior, inferior = split_mni152(*pair, args.work)
      test_pairs.append(inferior)
      real_pairs.append(superior)
    else:
      test_pairs.append(pair)
  if not train_paths or not (test_pairs or args.probe):
    raise SystemExit(
      "give training label maps (--train or --mni152) and test pairs (--test, --probe or --mni152)"
    )
  configs = dict(c.split("=", 1) for c in args.config)
  priors = read_priors(args.priors)

  target = None
  if args.spacing:
    try:
      target = scans.spacing_option(args.spacing)
    except scans.ScanError as e:
      raise SystemExit(str(e)) from None
    if args.down is not None:
      raise SystemExit("give --down or --spacing, not both")
  elif args.down is None:
    args.down = 4
  maps, spacing = load_train_maps(train_paths, args.down, target)
  multiple = 2 ** (len(args.features) - 1)
  shape = common_shape(maps, multiple, args.dim)
  maps = [pad_to(m, shape) for m in maps]
  seeds = None
  if args.seeds:
    seeds = load_seed_stacks(train_paths, args.seeds, shape, args.down, target)
  tests = [load_test(pair, spacing) for pair in test_pairs]
  tests += [
    synthetic_probe(spec, args.down, shape, spacing, seed=1000 + i, target=target)
    for i, spec in enumerate(args.probe)
  ]
  real = []
  if args.real_every:
    for pair in real_pairs:
      scan, grid = scans.load_pair(pair[0], pair[1], spacing)
      real.append((pad_to(grid, shape), pad_to(scan.image, shape)))
    if not real:
      raise SystemExit("--real-every needs real pairs (--real, or --mni152 --mni152-split)")
  values = sorted(set().union(*(np.unique(m).tolist() for m in maps)))
  for name, _, truth in tests:
    extra = sorted(set(np.unique(truth).tolist()) - set(values))
    if extra:
      raise SystemExit(f"{name}: test labels {extra} do not occur in the training maps")
  patch = shape if args.dim == 3 else shape[:2] + (1,)
  print(
    f"{len(maps)} training maps {shape} at {spacing} mm, labels {values}; "
    f"{len(tests)} test scan(s): {[t[0] for t in tests]}",
    flush=True,
  )

  results, gens_meta = {}, {}

  def write_json(final):
    out = {"meta": meta, "generators": gens_meta, "results": {}, "complete": final}
    for gen, r in results.items():
      out["results"][gen] = dict(
        r,
        final={
          n: {k: v for k, v in rec.items() if k != "prediction"} for n, rec in r["final"].items()
        },
      )
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
      json.dump(out, f, indent=1, default=float)
    os.replace(tmp, args.json)

  import jax

  meta = {
    "date": datetime.date.today().isoformat(),
    "commit": commit,
    "machine": platform.processor() or platform.machine(),
    "cpus": os.cpu_count(),
    "jax_devices": [str(d) for d in jax.devices()],
    "trainer": args.trainer,
    "args": vars(args),
    "command": "python benchmarks/sim2real.py " + " ".join(sys.argv[1:] if argv is None else argv),
    "train_maps": train_paths,
    "test_pairs": test_pairs,
    "probes": args.probe,
    "real_pairs": real_pairs if real else [],
    "real_every": args.real_every,
    "shape": list(shape),
    "spacing": list(spacing),
    "labels": values,
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  for spec in args.generators:
    gen = make_generator(spec, values, shape, spacing, configs, priors)
    classes = values
    t0 = time.perf_counter()
    if real and not isinstance(gen, SynthjaxGenerator):
      raise SystemExit(
        f"{spec}: real-image fine-tuning uses synthjax's stages; use it with "
        f"synthjax generators only"
      )
    results[spec] = run_generator(
      gen, args, maps, classes, shape, spacing, tests, patch, real, seeds
    )
    results[spec]["wall_seconds"] = time.perf_counter() - t0
    gens_meta[spec] = (
      gen.config.to_dict() if hasattr(gen, "config") else repr(getattr(gen, "transform", None))
    )
    write_json(final=False)  # a later failure keeps the generators done so far

  table = markdown_table(results, tests, args)
  print(table)
  png_dir = args.png_dir or os.path.dirname(os.path.abspath(args.json))
  os.makedirs(png_dir, exist_ok=True)
  stem = os.path.splitext(os.path.basename(args.json))[0]
  if len(tests) > 1:
    save_curves_png(os.path.join(png_dir, f"{stem}_curves.png"), results)
  for name, image, truth in tests:
    save_png(os.path.join(png_dir, f"{stem}_{name}.png"), name, image, truth, results, values)
  write_json(final=True)
  if args.table:
    with open(args.table, "w") as f:
      f.write(table + "\n")


if __name__ == "__main__":
  main()
