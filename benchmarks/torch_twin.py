"""A PyTorch twin of the recipe's U-Net (`synthjax/_src/train/model.py`), for CPU.

Same architecture, layer for layer: `len(features)` levels of `convs` x (3^d conv, instance
norm with affine, LeakyReLU 0.01), 2x max-pooling, stride-2 kernel-2 transposed
convolutions, skip concatenation, a 1x1 head; He-normal weights. Same loss (DiceCE as
MONAI's `DiceCELoss(softmax=True)`) and optimizer (Adam). Used where XLA's CPU
convolutions are the bottleneck (see `benchmarks/RESULTS.md`): the images still come from
the generator under test, and the JSON of a benchmark says which trainer ran.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _he(conv):
  fan_in = conv.weight.shape[1] * math.prod(conv.weight.shape[2:])
  nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / fan_in))
  nn.init.zeros_(conv.bias)


class TwinUNet(nn.Module):
  """`TwinUNet(num_classes, dim, features, convs)`: input `(B, 1, *spatial)`, logits out."""

  def __init__(self, num_classes, *, dim=3, features=(8, 16, 32, 64), convs=2):
    super().__init__()
    Conv = nn.Conv3d if dim == 3 else nn.Conv2d
    Norm = nn.InstanceNorm3d if dim == 3 else nn.InstanceNorm2d
    Up = nn.ConvTranspose3d if dim == 3 else nn.ConvTranspose2d
    self.pool = nn.MaxPool3d(2) if dim == 3 else nn.MaxPool2d(2)

    def block(cin, cout):
      layers = []
      for i in range(convs):
        conv = Conv(cin if i == 0 else cout, cout, 3, padding=1)
        _he(conv)
        layers += [conv, Norm(cout, affine=True), nn.LeakyReLU(0.01)]
      return nn.Sequential(*layers)

    self.down = nn.ModuleList()
    cin = 1
    for f in features:
      self.down.append(block(cin, f))
      cin = f
    self.up, self.up_blocks = nn.ModuleList(), nn.ModuleList()
    for f in reversed(features[:-1]):
      up = Up(cin, f, 2, stride=2)
      nn.init.normal_(up.weight, 0.0, math.sqrt(2.0 / cin))
      nn.init.zeros_(up.bias)
      self.up.append(up)
      self.up_blocks.append(block(2 * f, f))
      cin = f
    self.head = Conv(cin, num_classes, 1)
    _he(self.head)

  def forward(self, x):
    skips = []
    for i, block in enumerate(self.down):
      x = block(x)
      if i < len(self.down) - 1:
        skips.append(x)
        x = self.pool(x)
    for up, block, skip in zip(self.up, self.up_blocks, reversed(skips)):
      x = block(torch.cat([up(x), skip], dim=1))
    return self.head(x)


def dice_ce_loss(logits, targets, smooth=1e-5):
  """MONAI `DiceCELoss(softmax=True)` defaults; `targets` are class indices."""
  logp = torch.log_softmax(logits, dim=1)
  onehot = torch.nn.functional.one_hot(targets, logits.shape[1]).movedim(-1, 1).float()
  ce = -(onehot * logp).sum(1).mean()
  p = logp.exp()
  axes = tuple(range(2, logits.ndim))
  inter = (p * onehot).sum(axes)
  denom = p.sum(axes) + onehot.sum(axes)
  dice = ((2 * inter + smooth) / (denom + smooth)).mean()
  return ce + 1 - dice
