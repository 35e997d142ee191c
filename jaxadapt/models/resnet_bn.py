"""ResNet with frozen BatchNorm and torch-style padding: timm / torchvision ResNets, exactly.

BatchNorm statistics are frozen constants, the usual practice when fine-tuning a
pretrained classification backbone (torchvision's FrozenBatchNorm2d). They live in
the parameter tree beside the affine parameters, at `.../norm{j}/{mean,var}`, so
checkpoints, sharding, export and prediction carry them with no extra state; the
model reads them through `stop_gradient` and the trainer never trains them
(`models.common.is_constant`), whatever the rules say. The train step stays a pure
function of (state, batch), with no mutable collection to thread through it.

Training from scratch with frozen statistics (mean 0, var 1) is training without
normalisation: use `resnet` (GroupNorm) for that.

Paths: `stem/conv/kernel`, `stem/norm/{scale,bias,mean,var}`,
`stage{s}/block{b}/conv{j}/kernel`, `stage{s}/block{b}/norm{j}/*`,
`stage{s}/block1/proj/kernel`, `stage{s}/block1/proj_norm/*`, `head/{kernel,bias}`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from .common import ModelError, he_init, zeros
from .spec import Blocks, ModelSpec

# Knowledge methods need, for the registry spec (issue 11).


def torch_pad(kernel: int, stride: int = 1) -> tuple[tuple[int, int], tuple[int, int]]:
  """torch's symmetric padding ((k - 1) // 2 each side), not flax's input-size-based 'SAME'.

  They differ for strided even inputs: a 7x7/2 conv on 224 pixels pads (3, 3) in torch
  and (2, 3) with 'SAME'.
  """
  p = ((stride - 1) + (kernel - 1)) // 2
  return ((p, p), (p, p))


class FrozenBatchNorm(nn.Module):
  """scale * (x - mean) / sqrt(var + eps) + bias with constant (non-trained) statistics."""

  eps: float = 1e-5
  zero_scale: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    scale = self.param('scale', zeros if self.zero_scale else nn.initializers.ones, (c,))
    bias = self.param('bias', zeros, (c,))
    mean = jax.lax.stop_gradient(self.param('mean', zeros, (c,)))
    var = jax.lax.stop_gradient(self.param('var', nn.initializers.ones, (c,)))
    return (x - mean) * (jax.lax.rsqrt(var + self.eps) * scale) + bias


def _conv(features: int, k: int, stride: int, name: str) -> nn.Conv:
  return nn.Conv(
      features,
      (k, k),
      (stride, stride),
      padding=torch_pad(k, stride),
      use_bias=False,
      kernel_init=he_init,
      name=name,
  )


class Block(nn.Module):
  """BasicBlock (two 3x3) or Bottleneck (1x1, 3x3 strided as in v1.5, 1x1 x4)."""

  planes: int
  stride: int
  bottleneck: bool
  eps: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p, s = self.planes, self.stride
    specs = [(p, 1, 1), (p, 3, s), (4 * p, 1, 1)] if self.bottleneck else [(p, 3, s), (p, 3, 1)]
    out = specs[-1][0]
    shortcut = x
    if s != 1 or x.shape[-1] != out:
      shortcut = FrozenBatchNorm(self.eps, name='proj_norm')(_conv(out, 1, s, 'proj')(x))
    y = x
    for i, (feat, k, stride) in enumerate(specs, start=1):
      y = _conv(feat, k, stride, f'conv{i}')(y)
      y = FrozenBatchNorm(self.eps, zero_scale=i == len(specs), name=f'norm{i}')(y)
      if i < len(specs):
        y = nn.relu(y)
    return nn.relu(y + shortcut)


class ResNetBN(nn.Module):
  """torch ResNet v1.5: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool, stages, global average, head.

  `layers` blocks per stage, `widths` each stage's planes (x4 out for bottlenecks),
  stages after the first stride by 2. ResNet-50 is layers=(3, 4, 6, 3),
  bottleneck=True; ResNet-18 layers=(2, 2, 2, 2), bottleneck=False.
  """

  num_classes: int
  layers: tuple[int, ...] = (3, 4, 6, 3)
  bottleneck: bool = True
  widths: tuple[int, ...] = (64, 128, 256, 512)
  stem_width: int = 64
  bn_eps: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False) -> jax.Array:
    del train  # frozen statistics, no dropout
    if len(self.widths) < len(self.layers):
      raise ModelError(
          f'resnet_bn: {len(self.layers)} stages need as many widths, got {self.widths}'
      )
    x = Stem(self.stem_width, self.bn_eps, name='stem')(x)
    for s, (planes, n) in enumerate(zip(self.widths, self.layers), start=1):
      x = Stage(planes, n, 1 if s == 1 else 2, self.bottleneck, self.bn_eps, name=f'stage{s}')(x)
    x = jnp.mean(x, axis=(1, 2))
    if features_only:
      return x
    return nn.Dense(self.num_classes, kernel_init=zeros, bias_init=zeros, name='head')(x)


class Stage(nn.Module):
  planes: int
  num_blocks: int
  stride: int
  bottleneck: bool
  eps: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for b in range(1, self.num_blocks + 1):
      stride = self.stride if b == 1 else 1
      x = Block(self.planes, stride, self.bottleneck, self.eps, name=f'block{b}')(x)
    return x


class Stem(nn.Module):
  width: int
  eps: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(FrozenBatchNorm(self.eps, name='norm')(_conv(self.width, 7, 2, 'conv')(x)))
    # torch pads max-pool inputs with -inf, as flax's max_pool does.
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


SPEC = ModelSpec(
    module=ResNetBN,
    input_kind='image',
    blocks=lambda m: Blocks(
        stem=('stem',), body=tuple(f'stage{i}' for i in range(1, len(m.layers) + 1))
    ),
    lora_targets=r'stage\d+/block\d+/conv\d+/kernel',
    smoke=dict(layers=(1, 1), widths=(4, 8), stem_width=4),
)
