"""Train a small 3-D segmentation net on synthetic images rendered inside the jitted step.

The Grain pipeline (CPU workers, no JAX there) cuts label patches and gives each sample
its key; the training step renders the images on the device with `synthesize_batch`, so a
batch is one XLA program from labels to gradients. Any sample can later be replayed from
its index and the seed.

Run:
  python examples/train_segmentation.py                # fetal maps if ../shared exists,
                                                       # else the built-in phantom
  python examples/train_segmentation.py --steps 200 --workers 2 --patch 48
"""

import argparse
import os
import pathlib
import tempfile
import time

import numpy as np
import jax
import jax.numpy as jnp
import nibabel as nib

import synthjax
from synthjax import data
from synthjax.phantom import brain_phantom

FETAL = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fetal"


def label_folder():
  """The fetal label maps if present, else three phantoms written to a temporary folder."""
  if FETAL.exists():
    return str(FETAL), "**/sub-sta*_rec-irtk_T2w_dseg.nii.gz"
  folder = tempfile.mkdtemp(prefix="synthjax-phantoms-")
  for i, shape in enumerate([(96, 96, 96), (90, 100, 92), (100, 92, 96)]):
    labels, affine = brain_phantom(shape, 2.0)
    nib.save(nib.Nifti1Image(labels.astype(np.int16), affine),
             os.path.join(folder, f"phantom{i}_dseg.nii.gz"))
  return folder, "*_dseg.nii.gz"


def init_net(key, channels, n_classes):
  sizes = [(1, channels), (channels, channels), (channels, n_classes)]
  params = []
  for k, (cin, cout) in zip(jax.random.split(key, len(sizes)), sizes):
    ksize = 1 if cout == n_classes else 3
    w = jax.random.normal(k, (ksize, ksize, ksize, cin, cout)) * np.sqrt(2.0 / (cin * ksize ** 3))
    params.append((w, jnp.zeros(cout)))
  return params


def apply_net(params, x):
  dn = ("NDHWC", "DHWIO", "NDHWC")
  for i, (w, b) in enumerate(params):
    x = jax.lax.conv_general_dilated(x, w, (1, 1, 1), "SAME", dimension_numbers=dn) + b
    if i < len(params) - 1:
      x = jax.nn.relu(x)
  return x


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--patch", type=int, default=32)
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--lr", type=float, default=0.05)
  args = parser.parse_args()

  folder, pattern = label_folder()
  source = data.NiftiSource.from_folder(folder, pattern)
  values = sorted(set().union(*(np.unique(source[i]["labels"].read()).tolist()
                                for i in range(len(source)))))
  spacing = tuple(float(s) for s in source[0]["spacing"])
  cfg = synthjax.presets.synthseg(values, (args.patch,) * 3, spacing)
  classes = jnp.asarray(np.asarray(cfg.segmentation_values))
  print(f"{source}; labels {values}; patch {args.patch}^3; {args.workers} workers")

  ds = data.pipeline(source, patch_size=args.patch, batch_size=args.batch, seed=args.seed,
                     workers=args.workers, patches_per_volume=4, sampler=data.LabelSampler())
  net = init_net(jax.random.key(args.seed), 8, len(values))

  @jax.jit
  def step(net, batch):
    images, segs, _ = data.synthesize_batch(batch, cfg)
    target = jnp.searchsorted(classes, segs)

    def loss_fn(net):
      logits = apply_net(net, images[..., None])
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), target[..., None], -1))

    loss, grads = jax.value_and_grad(loss_fn)(net)
    net = jax.tree.map(lambda p, g: p - args.lr * g, net, grads)
    return net, loss

  it = iter(ds)
  start, losses = time.time(), []
  for i in range(args.steps):
    batch = next(it)
    net, loss = step(net, {"key": batch["key"], "labels": batch["labels"]})
    losses.append(float(loss))
    if i % 10 == 0 or i == args.steps - 1:
      print(f"step {i:4d}  loss {losses[-1]:.3f}  samples {batch['index'].tolist()}  "
            f"{(i + 1) * args.batch / (time.time() - start):.1f} samples/s")
  state = it.get_state()  # checkpoint this with the net to resume the exact stream
  it.close()
  k = max(1, len(losses) // 5)
  print(f"mean loss first {k} steps {np.mean(losses[:k]):.3f}, last {k} steps "
        f"{np.mean(losses[-k:]):.3f}; iterator state {state}")


if __name__ == "__main__":
  main()
