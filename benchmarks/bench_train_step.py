"""Speed of the recipe's train step: render + forward + backward + Adam, one XLA program.

For each patch size, on the built-in brain phantom (SynthSeg preset, FreeSurfer labels),
batch B, the recipe's 3-D U-Net (default 8-16-32-64 channels, 2 convolutions per level,
instance norm, LeakyReLU, transposed-conv upsampling):

* `step`: the full train step (`steps.make_train_step`, images rendered inside);
* `render`: the rendering part alone (`steps.render`: generator + normalisation);
* `net`: forward + backward + update on pre-rendered images;
* `torch` (with `--torch`): the PyTorch twin (`benchmarks/torch_twin.py`) doing the
  `net` part on the same CPU, for comparison.

The render share is `render / step`. Each timing is the median of `--repeats` calls after
one warm-up call (which compiles); the compile time of the step is reported apart.

Usage (from the repository root)::

    python benchmarks/bench_train_step.py --sizes 64 96 128 --torch \\
        --json benchmarks/results/train_step_cpu.json
    python benchmarks/bench_train_step.py --sizes 64 --conv-impl xla     # XLA convolutions

Only timings on the same machine are comparable. Run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np

from common import timed  # noqa: E402


def bench_size(size, args):
  import jax
  import jax.numpy as jnp
  import optax
  from flax import nnx

  import synthjax
  from synthjax.phantom import brain_phantom
  from synthjax.train import build_model, dice_ce_loss, make_train_step, render

  labels, _ = brain_phantom((size,) * 3, spacing=192.0 / size)
  values = sorted(np.unique(labels).tolist())
  build = {"synthseg": synthjax.presets.synthseg, "fetal": synthjax.presets.fetal}[args.preset]
  cfg = build(values, (size,) * 3, (192.0 / size,) * 3)
  classes = sorted(set(cfg.segmentation_values))
  mcfg = {
    "dim": 3,
    "features": args.features,
    "convs_per_level": args.convs,
    "norm": args.norm,
    "activation": "leaky_relu",
    "upsample": "transpose",
    "conv_impl": args.conv_impl,
  }
  net = build_model(mcfg, len(classes), seed=0)
  graphdef, state = nnx.split(net)
  params = nnx.to_pure_dict(state)
  tx = optax.adam(1e-3)
  opt_state = tx.init(params)
  b = args.batch
  batch = {
    "labels": jnp.asarray(np.broadcast_to(labels, (b,) + labels.shape).copy()),
    "key": jax.random.key_data(jax.random.split(jax.random.key(0), b)),
  }

  step = make_train_step(graphdef, tx, synth_config=cfg, classes=classes, dim=3)
  state_box = [params, opt_state]

  def full():
    p, o, m = step(state_box[0], state_box[1], batch)
    state_box[:] = [p, o]
    return m["loss"]

  compile_s, step_s, step_all = timed(full, args.repeats)
  render_fn = jax.jit(lambda bt: render(bt, cfg, classes)[:2])
  _, render_s, _ = timed(lambda: render_fn(batch), args.repeats)
  images, targets = render_fn(batch)

  @jax.jit
  def net_step(p, o, x, t):
    def loss_fn(p):
      return dice_ce_loss(nnx.merge(graphdef, p)(x[..., None]), t)[0]

    loss, g = jax.value_and_grad(loss_fn)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o, loss

  box = [state_box[0], state_box[1]]

  def net_only():
    p, o, loss = net_step(box[0], box[1], images, targets)
    box[:] = [p, o]
    return loss

  _, net_s, _ = timed(net_only, args.repeats)
  out = {
    "size": size,
    "batch": b,
    "num_classes": len(classes),
    "compile_s": compile_s,
    "step_s": step_s,
    "steps_per_s": 1.0 / step_s,
    "samples_per_s": b / step_s,
    "render_s": render_s,
    "net_s": net_s,
    "render_share": render_s / step_s,
    "step_all_s": step_all,
  }
  if args.torch:
    out.update(torch_step(size, len(classes), args, np.asarray(images), np.asarray(targets)))
  return out


def torch_step(size, num_classes, args, images, targets):
  import torch

  from torch_twin import TwinUNet, dice_ce_loss

  torch.manual_seed(0)
  net = TwinUNet(num_classes, dim=3, features=tuple(args.features), convs=args.convs)
  opt = torch.optim.Adam(net.parameters(), 1e-3)
  x = torch.from_numpy(images[:, None].copy())
  t = torch.from_numpy(targets.astype(np.int64))

  def one():
    opt.zero_grad()
    loss = dice_ce_loss(net(x), t)
    loss.backward()
    opt.step()

  one()
  times = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    one()
    times.append(time.perf_counter() - t0)
  return {
    "torch_net_s": float(np.median(times)),
    "torch_threads": torch.get_num_threads(),
    "torch_version": torch.__version__,
  }


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--features", type=int, nargs="+", default=[8, 16, 32, 64])
  p.add_argument("--convs", type=int, default=2)
  p.add_argument("--norm", default="instance")
  p.add_argument("--conv-impl", default="auto", choices=("auto", "im2col", "xla"))
  p.add_argument("--preset", default="synthseg", choices=("synthseg", "fetal"))
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--torch", action="store_true", help="also time the PyTorch twin")
  p.add_argument("--json", help="write the results here")
  args = p.parse_args()
  import jax

  commit = subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
  ).stdout.strip()
  meta = {
    "date": datetime.date.today().isoformat(),
    "commit": commit,
    "machine": platform.processor() or platform.machine(),
    "cpus": os.cpu_count(),
    "devices": [str(d) for d in jax.devices()],
    "jax": jax.__version__,
    "args": vars(args),
    "command": " ".join(sys.argv),
  }
  results = []
  for size in args.sizes:
    r = bench_size(size, args)
    results.append(r)
    line = (
      f"{size:4d}^3 B={r['batch']}: step {r['step_s']:.3f} s ({r['samples_per_s']:.2f} "
      f"samples/s), render {r['render_s']:.3f} s ({100 * r['render_share']:.0f} %), "
      f"net {r['net_s']:.3f} s, compile {r['compile_s']:.1f} s"
    )
    if "torch_net_s" in r:
      line += f"; torch net {r['torch_net_s']:.3f} s ({r['net_s'] / r['torch_net_s']:.1f}x)"
    print(line, flush=True)
    if args.json:  # after every size, so a later failure keeps the earlier results
      os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
      with open(args.json, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)


if __name__ == "__main__":
  main()
