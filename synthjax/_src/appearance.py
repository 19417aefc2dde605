"""Analysis by synthesis: fit the generator's appearance params to a real image.

Gradient descent (optax's Adam) fits the GMM means and stds, the bias field's strength and
the gamma exponent so that `synthjax.synthesize`, with the identity spatial transform and a
fixed key, renders each label with the real image's intensity distribution. The loss
compares each label's mean and standard deviation in the rendered image with those in the
real one (both min-max normalised, as `synthesize` normalises): a voxel-wise error would
drive the noise stds to zero, since the generator's noise is not the scan's. It needs
`jax.grad` through the whole generator, which no PyTorch or TensorFlow generator offers.
`fit` needs optax (the `train` extra).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt

from synthjax._src.config import SynthConfig


@dataclasses.dataclass
class Fit:
  """What `fit` returns: the fitted params, the loss per step and per-label statistics.

  Attributes:
    params: the fitted params pytree (NumPy arrays), as `synthesize` takes it.
    losses: the loss at each Adam step.
    real_means, rendered_means: each label's mean in the real and the rendered image.
    real_stds, rendered_stds: each label's standard deviation in them.
  """

  params: dict[str, Any]
  losses: list[float]
  real_means: np.ndarray
  rendered_means: np.ndarray
  real_stds: np.ndarray
  rendered_stds: np.ndarray


def coarsen(t1: npt.ArrayLike, labels: npt.ArrayLike, down: int) -> tuple[np.ndarray, np.ndarray]:
  """`down`-mm image (block means) and labels (block centres), cropped to whole blocks."""
  t1, labels = np.asarray(t1), np.asarray(labels)
  shape = tuple(n // down * down for n in labels.shape)
  t1 = t1[: shape[0], : shape[1], : shape[2]]
  blocks = t1.reshape(shape[0] // down, down, shape[1] // down, down, shape[2] // down, down)
  image = blocks.mean(axis=(1, 3, 5))
  c = down // 2
  return image, labels[c : shape[0] : down, c : shape[1] : down, c : shape[2] : down]


def normalise(image: npt.ArrayLike) -> np.ndarray:
  """`image` min-max normalised to [0, 1], in float64."""
  image = np.asarray(image, np.float64)
  return (image - image.min()) / (image.max() - image.min())


def config_for(labels: np.ndarray, spacing: float) -> SynthConfig:
  """The synthseg preset with the identity spatial transform and the appearance stages
  (GMM with a background Gaussian, bias field, gamma) always applied."""
  import synthjax

  values = tuple(sorted(np.unique(labels).tolist()))
  cfg = synthjax.presets.synthseg(values, labels.shape, (spacing,) * 3)
  return cfg.replace(
    affine={"enabled": False},
    deformation={"enabled": False},
    flip={"enabled": False},
    resolution={"enabled": False},
    gmm={"prob_background_zero": 0.0},
    bias={"prob": 1.0},
    gamma={"prob": 1.0},
  )


def label_stats(image: Any, labels: Any, num_labels: int) -> tuple[Any, Any]:
  """Per-label mean and standard deviation of `image` (labels 0..num_labels-1)."""
  import jax
  import jax.numpy as jnp

  flat, seg = image.reshape(-1), labels.reshape(-1)
  count = jax.ops.segment_sum(jnp.ones_like(flat), seg, num_labels)
  mean = jax.ops.segment_sum(flat, seg, num_labels) / count
  var = jax.ops.segment_sum(jnp.square(flat - mean[seg]), seg, num_labels) / count
  return mean, jnp.sqrt(var + 1e-12)


def fit(
  image: npt.ArrayLike,
  labels: np.ndarray,
  spacing: float,
  *,
  steps: int = 300,
  lr: float = 0.02,
  seed: int = 0,
) -> Fit:
  """Fits the appearance params of `config_for(labels)` to the real `image`.

  Args:
    image: the real image on the labels' grid (any scale; min-max normalised here).
    labels: int label map, values 0..L-1.
    spacing: isotropic voxel size in mm.
    steps, lr: Adam steps and learning rate (on means and stds in units of 255, the
      GMM's range).
    seed: the key of the rendering (noise and bias-field realisations, fixed during the
      fit) and of the initial params.

  Returns:
    A `Fit`.
  """
  import jax
  import jax.numpy as jnp
  import optax

  import synthjax

  cfg = config_for(labels, spacing)
  num = len(cfg.label_values)
  lut = np.zeros(int(labels.max()) + 1, np.int32)
  lut[list(cfg.label_values)] = np.arange(num)
  index = jnp.asarray(lut[labels])
  real = jnp.asarray(normalise(image), jnp.float32)
  real_mean, real_std = label_stats(real, index, num)
  base = synthjax.sample_params(jax.random.key(seed), cfg)
  key = jax.random.key(seed + 1)
  device_labels = jnp.asarray(labels, jnp.int32)

  def params_of(theta):
    return {
      **base,
      "gmm": {
        **base["gmm"],
        "means": 255.0 * theta["means"],
        "stds": 255.0 * jnp.abs(theta["stds"]),
      },
      "bias": {**base["bias"], "std": jnp.abs(theta["bias_std"])},
      "gamma": {**base["gamma"], "log_gamma": theta["log_gamma"]},
    }

  def loss_fn(theta):
    rendered, _ = synthjax.synthesize(key, params_of(theta), device_labels, cfg)
    mean, std = label_stats(rendered, index, num)
    return jnp.sum(jnp.square(mean - real_mean)) + jnp.sum(jnp.square(std - real_std))

  theta = {
    "means": jnp.full(num, 0.5),
    "stds": jnp.full(num, 0.05),
    "bias_std": jnp.asarray(0.1),
    "log_gamma": jnp.asarray(0.0),
  }
  tx = optax.adam(lr)
  state = tx.init(theta)

  @jax.jit
  def step(theta, state):
    loss, grads = jax.value_and_grad(loss_fn)(theta)
    updates, state = tx.update(grads, state)
    return optax.apply_updates(theta, updates), state, loss

  losses = []
  for _ in range(steps):
    theta, state, loss = step(theta, state)
    losses.append(float(loss))
  params = params_of(theta)
  rendered, _ = synthjax.synthesize(key, params, device_labels, cfg)
  mean, std = label_stats(rendered, index, num)
  return Fit(
    params=jax.tree.map(np.asarray, params),
    losses=losses,
    real_means=np.asarray(real_mean),
    rendered_means=np.asarray(mean),
    real_stds=np.asarray(real_std),
    rendered_stds=np.asarray(std),
  )


def tissue_errors(result: Fit) -> np.ndarray:
  """Relative error of each tissue's rendered mean (labels 1.., not the background, whose
  real mean is near zero)."""
  real = result.real_means[1:]
  return np.abs(result.rendered_means[1:] - real) / real


def report(result: Fit, names: dict[int, str]) -> str:
  """A Markdown table of each label's real and rendered statistics and the fitted GMM, then
  the fitted bias std, gamma and the loss's first and last values."""
  lines = [
    "| tissue | real mean | rendered mean | error | real std | rendered std | "
    "fitted GMM mean | fitted GMM std |",
    "|---|---|---|---|---|---|---|---|",
  ]
  gmm = result.params["gmm"]
  errors = tissue_errors(result)
  for i, name in enumerate(names.values()):
    err = f"{100 * errors[i - 1]:.2f} %" if i else "(not a tissue)"
    lines.append(
      f"| {name} | {result.real_means[i]:.4f} | {result.rendered_means[i]:.4f} | "
      f"{err} | {result.real_stds[i]:.4f} | "
      f"{result.rendered_stds[i]:.4f} | {gmm['means'][i]:.2f} | "
      f"{gmm['stds'][i]:.2f} |"
    )
  lines.append(
    f"\nbias std {float(result.params['bias']['std']):.4f}, gamma "
    f"{float(np.exp(result.params['gamma']['log_gamma'])):.4f}; loss "
    f"{result.losses[0]:.5f} -> {result.losses[-1]:.5f}"
  )
  return "\n".join(lines)
