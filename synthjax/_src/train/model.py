"""A 2-D or 3-D U-Net in Flax NNX, shaped like SynthSeg's and FetalSynthSeg's networks.

SynthSeg (Billot et al., MedIA 2023) uses a 5-level U-Net with 24 features at the first
level, doubled at each level, two 3x3x3 convolutions per level, ELU and max-pooling.
FetalSynthSeg (Zalevskyi et al., 2024) uses MONAI's 3-D U-Net with 32..512 channels,
instance norm and LeakyReLU. `UNet` covers both: levels, features and convolutions per
level, norm, activation and upsampling are arguments. The net returns logits; `softmax`
over the last axis gives the label probabilities.

Convolutions have two implementations with the same parameters:
- `"xla"`: `lax.conv_general_dilated` (channels last);
- `"im2col"`: the shifted copies of the input concatenated on the channel axis, then one
  matrix product. On CPU, XLA's own convolution of few channels is slow; the im2col
  form trains 1.2-1.8x faster there (see `benchmarks/RESULTS.md`), at the cost of a
  column matrix of `k^d` times the input's size kept for the backward pass.
- `"auto"` (default): im2col on CPU while the column matrix is under `IM2COL_MAX_BYTES`,
  else XLA's convolution (always on GPU, where it goes to cuDNN).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

NORMS = ("instance", "group", "none")
ACTIVATIONS = ("leaky_relu", "elu", "relu")
UPSAMPLING = ("transpose", "resize")
CONV_IMPLS = ("auto", "im2col", "xla")
# "auto" uses im2col on CPU while its column matrix stays under this size: the backward
# pass keeps one per convolution (at 128^3, batch 2 and 8 channels, 3.6 GB each).
IM2COL_MAX_BYTES = 2 << 30


def _normal(rngs: nnx.Rngs, shape, std):
  """He-normal weights drawn by numpy from the next `params` key of `rngs`.

  Eager `jax.random.normal` compiles one program per weight shape (about 0.4 s each on a
  CPU); numpy, seeded by the key, gives the same determinism without compiling.
  """
  seed = np.asarray(jax.random.key_data(rngs.params())).ravel().tolist()
  return jnp.asarray(std * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _activation(name):
  return {
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.01),
    "elu": jax.nn.elu,
    "relu": jax.nn.relu,
  }[name]


class Conv(nnx.Module):
  """A 'same'-padded convolution of odd kernel size, channels last, with bias.

  The kernel has the layout of `flax.nnx.Conv`: `(k,) * dim + (in, out)`, He-normal
  initialised (the default of MONAI's and Keras' convolutions is similar in scale).
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    *,
    dim: int,
    kernel_size: int = 3,
    impl: str = "auto",
    rngs: nnx.Rngs,
  ):
    if impl not in CONV_IMPLS:
      raise ValueError(f"conv impl must be one of {CONV_IMPLS}, got {impl!r}")
    if kernel_size % 2 != 1:
      raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    shape = (kernel_size,) * dim + (in_features, out_features)
    std = math.sqrt(2.0 / (in_features * kernel_size**dim))
    self.kernel: nnx.Param[jax.Array] = nnx.Param(_normal(rngs, shape, std))
    self.bias: nnx.Param[jax.Array] = nnx.Param(jnp.zeros((out_features,), jnp.float32))
    self.dim: int = dim
    self.kernel_size: int = kernel_size
    self.impl: str = impl

  def __call__(self, x: jax.Array) -> jax.Array:
    w = self.kernel[...]
    k, d = self.kernel_size, self.dim
    if k == 1:
      return x @ w.reshape(w.shape[-2:]) + self.bias[...]
    impl = self.impl
    if impl == "auto":
      col_bytes = x.size * k**d * x.dtype.itemsize
      cpu = jax.default_backend() == "cpu"
      impl = "im2col" if cpu and col_bytes <= IM2COL_MAX_BYTES else "xla"
    if impl == "xla":
      spatial = "DHW"[-d:] if d == 3 else "HW"
      dn = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
      y = jax.lax.conv_general_dilated(x, w, (1,) * d, "SAME", dimension_numbers=dn)
      return y + self.bias[...]
    r = k // 2
    xp = jnp.pad(x, ((0, 0),) + ((r, r),) * d + ((0, 0),))
    size = x.shape[1 : 1 + d]
    # Offsets in C order over the kernel axes, matching `w.reshape(-1, out)`.
    cols = [
      xp[(slice(None),) + tuple(slice(o, o + n) for o, n in zip(offset, size))]
      for offset in itertools.product(range(k), repeat=d)
    ]
    col = jnp.concatenate(cols, axis=-1)
    return col @ w.reshape(-1, w.shape[-1]) + self.bias[...]


class GroupNorm(nnx.Module):
  """Group normalisation over the spatial axes and the channels of each group.

  `num_groups == channels` is instance norm (MONAI's `Norm.INSTANCE` with an affine).
  """

  def __init__(self, channels: int, num_groups: int, *, eps: float = 1e-5):
    if channels % num_groups:
      raise ValueError(f"{channels} channels do not split into {num_groups} groups")
    self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
    self.offset = nnx.Param(jnp.zeros((channels,), jnp.float32))
    self.num_groups, self.eps = num_groups, eps

  def __call__(self, x):
    shape = x.shape
    g = x.reshape(shape[:-1] + (self.num_groups, shape[-1] // self.num_groups))
    axes = tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)
    mean = jnp.mean(g, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(g - mean), axis=axes, keepdims=True)
    g = (g - mean) * jax.lax.rsqrt(var + self.eps)
    return g.reshape(shape) * self.scale[...] + self.offset[...]


class ConvBlock(nnx.Module):
  """`n` x (convolution, norm, activation)."""

  def __init__(self, in_features, out_features, *, dim, n, norm, activation, conv_impl, rngs):
    self.convs = nnx.List()
    self.norms = nnx.List()
    for i in range(n):
      self.convs.append(
        Conv(
          in_features if i == 0 else out_features, out_features, dim=dim, impl=conv_impl, rngs=rngs
        )
      )
      if norm == "none":
        self.norms.append(None)
      else:
        groups = out_features if norm == "instance" else math.gcd(8, out_features)
        self.norms.append(GroupNorm(out_features, groups))
    self.activation = activation

  def __call__(self, x):
    act = _activation(self.activation)
    for conv, norm in zip(self.convs, self.norms):
      x = conv(x)
      if norm is not None:
        x = norm(x)
      x = act(x)
    return x


def _max_pool(x, dim):
  """2x max-pooling of the spatial axes (each must be even)."""
  b, c = x.shape[0], x.shape[-1]
  size = x.shape[1 : 1 + dim]
  split = sum(((n // 2, 2) for n in size), ())
  x = x.reshape((b,) + split + (c,))
  return x.max(axis=tuple(2 + 2 * i for i in range(dim)))


class Upsample(nnx.Module):
  """2x upsampling to `out_features` channels: a stride-2 transposed convolution (kernel 2,
  computed as one matrix product and a pixel shuffle), or a linear resize then a 1x1 conv."""

  def __init__(self, in_features, out_features, *, dim, mode, rngs):
    self.dim, self.mode = dim, mode
    if mode == "transpose":
      std = math.sqrt(2.0 / in_features)
      self.kernel = nnx.Param(_normal(rngs, (in_features, 2**dim * out_features), std))
      self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
      self.out_features = out_features
    else:
      self.proj = Conv(in_features, out_features, dim=dim, kernel_size=1, rngs=rngs)

  def __call__(self, x):
    b, size = x.shape[0], x.shape[1 : 1 + self.dim]
    if self.mode == "resize":
      x = jax.image.resize(x, (b,) + tuple(2 * n for n in size) + x.shape[-1:], "linear")
      return self.proj(x)
    c = self.out_features
    y = (x @ self.kernel[...]).reshape((b,) + size + (2,) * self.dim + (c,))
    d = self.dim
    # (b, n1..nd, 2..2, c) -> (b, n1, 2, n2, 2, ..., c)
    order = (0,) + sum(((1 + i, 1 + d + i) for i in range(d)), ()) + (1 + 2 * d,)
    y = y.transpose(order).reshape((b,) + tuple(2 * n for n in size) + (c,))
    return y + self.bias[...]


class UNet(nnx.Module):
  """U-Net: `len(features)` levels, max-pooling down, skip connections, logits out.

  Args:
    num_classes: output channels (one per segmentation class).
    dim: 2 (slices) or 3 (volumes).
    in_channels: input channels.
    features: channels at each level, e.g. `(24, 48, 96, 192, 384)` (SynthSeg) or
      `(32, 64, 128, 256, 512)` (FetalSynthSeg).
    convs_per_level: convolutions per level on each side.
    norm: "instance", "group" (8 groups or fewer) or "none".
    activation: "leaky_relu" (slope 0.01), "elu" or "relu".
    upsample: "transpose" (stride-2 transposed conv) or "resize" (linear resize + 1x1 conv).
    conv_impl: "auto", "im2col" or "xla" (see the module docstring).
    rngs: `nnx.Rngs` for the initialisation.

  Inputs have shape `(B, *spatial, in_channels)` with every spatial size divisible by
  `2 ** (len(features) - 1)`.

  Examples:
    >>> net = UNet(4, dim=2, features=(8, 16), rngs=nnx.Rngs(0))
    >>> net(jnp.zeros((1, 16, 16, 1))).shape
    (1, 16, 16, 4)
  """

  def __init__(
    self,
    num_classes: int,
    *,
    dim: int = 3,
    in_channels: int = 1,
    features: Sequence[int] = (8, 16, 32, 64),
    convs_per_level: int = 2,
    norm: str = "instance",
    activation: str = "leaky_relu",
    upsample: str = "transpose",
    conv_impl: str = "auto",
    rngs: nnx.Rngs,
  ) -> None:
    if dim not in (2, 3):
      raise ValueError(f"dim must be 2 or 3, got {dim}")
    for name, value, allowed in (
      ("norm", norm, NORMS),
      ("activation", activation, ACTIVATIONS),
      ("upsample", upsample, UPSAMPLING),
      ("conv_impl", conv_impl, CONV_IMPLS),
    ):
      if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    features = tuple(int(f) for f in features)
    if not features or min(features) < 1 or convs_per_level < 1:
      raise ValueError(
        f"features must be positive and convs_per_level >= 1, got {features} and {convs_per_level}"
      )
    self.dim: int = dim
    self.levels: int = len(features)
    block = dict(
      dim=dim, n=convs_per_level, norm=norm, activation=activation, conv_impl=conv_impl, rngs=rngs
    )
    self.down: nnx.List[ConvBlock] = nnx.List()
    cin = in_channels
    for f in features:
      self.down.append(ConvBlock(cin, f, **block))
      cin = f
    self.up: nnx.List[Upsample] = nnx.List()
    self.up_blocks: nnx.List[ConvBlock] = nnx.List()
    for f in reversed(features[:-1]):
      self.up.append(Upsample(cin, f, dim=dim, mode=upsample, rngs=rngs))
      self.up_blocks.append(ConvBlock(2 * f, f, **block))
      cin = f
    self.head: Conv = Conv(cin, num_classes, dim=dim, kernel_size=1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    size = x.shape[1 : 1 + self.dim]
    factor = 2 ** (self.levels - 1)
    if x.ndim != self.dim + 2 or any(n % factor for n in size):
      raise ValueError(
        f"UNet input must be (B, *spatial, C) with {self.dim} spatial sizes "
        f"divisible by {factor}, got shape {x.shape}"
      )
    skips = []
    for i, block in enumerate(self.down):
      x = block(x)
      if i < self.levels - 1:
        skips.append(x)
        x = _max_pool(x, self.dim)
    for up, block, skip in zip(self.up, self.up_blocks, reversed(skips)):
      x = block(jnp.concatenate([up(x), skip], axis=-1))
    return self.head(x)


def build(model_config: dict[str, Any], num_classes: int, *, seed: int = 0) -> UNet:
  """A `UNet` from a JSON-able dict of its keyword arguments (as stored in a run)."""
  return UNet(num_classes, rngs=nnx.Rngs(seed), **model_config)
