"""The jitted programs of the recipe: the train step (render + forward + backward + update)
and the patch predictor, with their data-parallel sharding.

One train step is one XLA program from label maps to updated weights: the images are
rendered on the device by `synthjax.data.synthesize_batch` (or given pre-rendered, for
peer generators), normalised, cut into slices for a 2-D net, and fed to the U-Net; the
DiceCE gradient updates the weights with Optax.

Devices: the batch is sharded over a 1-D mesh of every device (all hosts), the weights
and optimizer state are replicated, and XLA inserts the gradient all-reduce. Each host
feeds its own share of the batch (`jax.make_array_from_process_local_data`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from numpy.typing import ArrayLike

from synthjax import data as sdata
from synthjax._src import scans
from synthjax._src.train import losses

if TYPE_CHECKING:
  from synthjax._src.config import SynthConfig

# `step(params, opt_state, batch) -> (params, opt_state, metrics)` (`make_train_step`) and
# `predict(params, patches) -> probabilities` (`make_predictor`). The weights and the
# optimizer state are pytrees whose structure is the net's and the optimizer's own: Any, as
# Optax types them.
TrainStep = Callable[[Any, Any, dict[str, Any]], tuple[Any, Any, dict[str, jax.Array]]]
Predictor = Callable[[Any, jax.Array], jax.Array]

# Stream of the sample key used to pick a 2-D net's slices (the generator uses the key's
# split halves; folding in a constant gives an independent stream).
_SLICE_STREAM = 0x51CE


def make_optimizer(
  lr: float, steps: int, *, schedule: str = "cosine", warmup: int = 0
) -> optax.GradientTransformation:
  """Adam with a constant or warmup-cosine learning rate (to `lr / 100` at `steps`).

  Equal settings give the same object, so that the train steps built from it are compiled
  once per process (`make_train_step` is cached on its arguments).
  """
  if schedule not in ("constant", "cosine"):
    raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
  # A constant rate does not depend on the run's length.
  horizon = int(steps) if schedule == "cosine" else None
  return _optimizer(float(lr), schedule, int(warmup), horizon)


@functools.lru_cache(maxsize=16)
def _optimizer(lr, schedule, warmup, horizon):
  if schedule == "constant":
    rate = (
      optax.constant_schedule(lr)
      if warmup <= 0
      else optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
      )
    )
  else:
    rate = optax.warmup_cosine_decay_schedule(
      0.0 if warmup > 0 else lr, lr, max(warmup, 0), max(horizon, warmup + 1), end_value=lr / 100
    )
  return optax.adam(rate)


@functools.lru_cache(maxsize=16)
def linear_ramp(start: float, steps: int) -> optax.Schedule:
  """`optax.linear_schedule(start, 1.0, steps)`, one object per setting (see
  `make_optimizer`)."""
  return optax.linear_schedule(float(start), 1.0, int(steps))


def class_table(classes: Sequence[int]) -> jnp.ndarray:
  return jnp.asarray(np.asarray(sorted(int(c) for c in classes), np.int32))


def to_class_index(segs, classes):
  """Segmentation values to class indices `0..C-1` (the values must be in `classes`)."""
  return jnp.searchsorted(class_table(classes), segs).astype(jnp.int32)


def take_slices(keys, images, targets, num_slices: int):
  """`num_slices` distinct axial slices (last axis) per volume, drawn uniformly without
  replacement (empty slices included, so the net also learns where nothing is).

  Returns `(B * num_slices, X, Y)` images and targets.
  """

  def one(key, image, target):
    key = jax.random.fold_in(key, _SLICE_STREAM)
    idx = jax.random.permutation(key, image.shape[-1])[:num_slices]
    return jnp.moveaxis(image[:, :, idx], -1, 0), jnp.moveaxis(target[:, :, idx], -1, 0)

  im, tg = jax.vmap(one)(keys, images, targets)
  return (im.reshape((-1,) + im.shape[2:]), tg.reshape((-1,) + tg.shape[2:]))


def render(
  batch: dict[str, Any],
  synth_config: SynthConfig | None,
  classes: Sequence[int],
  *,
  strength: Any = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """`(images, targets, keys)` of a batch: rendered by synthjax when `synth_config` is
  given (at augmentation `strength`, see `synthjax.sample_params`), else the batch's own
  `image` and `seg`; images normalised as real scans are."""
  keys = jax.random.wrap_key_data(batch["key"])
  if synth_config is not None:
    images, segs, _ = sdata.synthesize_batch(batch, synth_config, strength=strength)
  else:
    images, segs = batch["image"], batch["seg"]
  images = jax.vmap(lambda x: scans.normalize_intensity(x, xp=jnp))(images)
  return images, to_class_index(segs, classes), keys


def optimizer_step(opt_state):
  """The number of updates `opt_state` has made (its first `count`: Adam's), traced."""
  return optax.tree_utils.tree_get_all_with_path(opt_state, "count")[0][1]


def make_train_step(
  # Any net: `GraphDef` is invariant in the net's class, so `GraphDef[nnx.Module]` would
  # refuse a `UNet`'s.
  graphdef: nnx.GraphDef[Any],
  tx: optax.GradientTransformation,
  *,
  synth_config: SynthConfig | None,
  classes: Sequence[int],
  dim: int,
  slices_per_volume: int = 8,
  mesh: jax.sharding.Mesh | None = None,
  strength: optax.Schedule | None = None,
) -> TrainStep:
  """The jitted `step(params, opt_state, batch) -> (params, opt_state, metrics)`.

  Cached on its arguments: a second run in the same process with the same net, optimizer
  (`make_optimizer`), generator and mesh reuses the compiled step instead of tracing and
  compiling it again.

  Args:
    graphdef: the U-Net's `nnx` graph definition.
    tx: the Optax optimizer.
    synth_config: the `SynthConfig` rendering `batch["labels"]` with `batch["key"]`, or
      None for batches that carry `image` and `seg`.
    classes: the sorted output label values (the net's channels).
    dim: 2 or 3.
    slices_per_volume: slices per rendered volume for a 2-D net.
    mesh: the data mesh (weights replicated on it); None for the default device.
    strength: optional augmentation-strength schedule, a function of the step (the
      optimizer's update count, so a resumed run continues it exactly), e.g.
      `optax.linear_schedule(0.2, 1.0, 1000)`; None renders the config's ranges.

  Returns:
    A jitted function; `metrics` holds the scalar `loss` and soft `dice`. `params` and
    `opt_state` are donated.
  """
  return _train_step(
    graphdef,
    tx,
    synth_config,
    tuple(int(c) for c in classes),
    int(dim),
    int(slices_per_volume),
    mesh,
    strength,
  )


@functools.lru_cache(maxsize=16)
def _train_step(graphdef, tx, synth_config, classes, dim, slices_per_volume, mesh, strength):
  def step(params, opt_state, batch):
    s = None if strength is None else strength(optimizer_step(opt_state))
    images, targets, keys = render(batch, synth_config, classes, strength=s)
    if dim == 2:
      images, targets = take_slices(keys, images, targets, slices_per_volume)

    def loss_fn(p):
      logits = nnx.merge(graphdef, p)(images[..., None])
      return losses.dice_ce_loss(logits, targets)

    (loss, dice), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {"loss": loss, "dice": dice}
    if s is not None:
      metrics["strength"] = s
    return params, opt_state, metrics

  if mesh is None:
    return jax.jit(step, donate_argnums=(0, 1))
  repl = NamedSharding(mesh, P())
  return jax.jit(step, donate_argnums=(0, 1), out_shardings=(repl, repl, repl))


@functools.lru_cache(maxsize=16)
def make_predictor(graphdef: nnx.GraphDef[Any], *, dim: int) -> Predictor:
  """Jitted `predict(params, patches) -> probabilities`, patches `(B, px, py, pz)` in,
  `(B, px, py, pz, C)` out; a 2-D net takes patches with `pz == 1`. Cached on its
  arguments, as `make_train_step`."""

  @jax.jit
  def predict(params, patches):
    net = nnx.merge(graphdef, params)
    x = patches[..., None]
    if dim == 2:
      return jax.nn.softmax(net(x[:, :, :, 0]), axis=-1)[:, :, :, None]
    return jax.nn.softmax(net(x), axis=-1)

  return predict


def data_mesh():
  """A 1-D mesh `("data",)` over every device of every process."""
  # Auto sharding: XLA propagates the batch sharding through the generator's vmap.
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def replicate(mesh, tree):
  return jax.device_put(tree, NamedSharding(mesh, P()))


def global_batch(mesh, local: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
  """This process's share of a batch, assembled into arrays sharded over the mesh."""
  sharding = NamedSharding(mesh, P("data"))
  return {n: jax.make_array_from_process_local_data(sharding, np.asarray(local[n])) for n in names}


def to_host(x: Any) -> np.ndarray:
  """A replicated array as numpy (works when other processes hold the other replicas)."""
  return np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else np.asarray(x)


def host_tree(tree: Any) -> Any:
  return jax.tree.map(to_host, tree)


def flip_permutation(
  classes: Iterable[int],
  flip_pairs: Iterable[tuple[int, int]],
  output_labels: Sequence[int] | None = None,
  label_values: Sequence[int] | None = None,
) -> list[int]:
  """Class-channel permutation of a left/right mirror (pairs given as generation labels)."""
  classes = [int(c) for c in sorted(classes)]
  if output_labels is not None and label_values is None:
    raise ValueError("flip_permutation needs label_values to map pairs to output_labels")
  out_of = (
    dict(zip(label_values, output_labels))
    if output_labels is not None and label_values is not None
    else None
  )
  perm = list(range(len(classes)))
  for a, b in flip_pairs:
    if out_of is not None:
      a, b = out_of[a], out_of[b]
    if a in classes and b in classes and a != b:
      ia, ib = classes.index(a), classes.index(b)
      perm[ia], perm[ib] = ib, ia
  return perm


def segment_array(
  predict: Predictor,
  params: Any,
  image: ArrayLike,
  *,
  dim: int,
  patch: Sequence[int],
  overlap: Sequence[int] | None = None,
  batch_size: int = 4,
  flip_axes: Sequence[int] = (),
  flip_perm: Sequence[int] | None = None,
  progress: Callable[[], Any] | None = None,
) -> np.ndarray:
  """Class probabilities of a normalised image on the training grid, by Gaussian-blended
  sliding windows of the training patch size (MONAI `sliding_window_inference`), averaged
  over mirror images along `flip_axes` (test-time augmentation) when given.

  Returns float32 `(*image.shape, C)`.
  """
  patch = tuple(int(p) for p in patch)
  if dim == 2:
    patch = patch[:2] + (1,)
  if overlap is None:
    overlap = tuple(p // 4 for p in patch)

  def fn(batch):
    return predict(params, batch)

  def run(x):
    return sdata.sliding_window(
      fn, x, patch, overlap, batch_size=batch_size, mode="gaussian"
    ).astype(np.float32)

  image = np.asarray(image, np.float32)
  probs = run(image)
  if progress is not None:
    progress()
  for axis in flip_axes:
    mirrored = run(np.flip(image, axis))
    mirrored = np.flip(mirrored, axis)
    if flip_perm is not None and axis == 0:
      mirrored = mirrored[..., flip_perm]
    probs += mirrored
    if progress is not None:
      progress()
  return probs / (1 + len(flip_axes))
