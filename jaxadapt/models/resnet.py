"""ResNet with GroupNorm (BiT style): no batch statistics, so no mutable state."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from . import conv
from .common import ModelError, he_init, num_groups, zeros
from .pooling import max_pool
from .spec import Blocks, ModelSpec

# depth -> (blocks per stage, bottleneck?)
STAGE_SIZES = {
    10: ((1, 1, 1, 1), False),
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
}


def _conv(features: int, k: int, stride: int, name: str) -> nn.Conv:
  # No conv bias: every conv is followed by a norm with its own bias.
  return nn.Conv(
      features,
      (k, k),
      (stride, stride),
      use_bias=False,
      kernel_init=he_init,
      conv_general_dilated=conv.conv_general_dilated,  # faster kernel gradient on CPU
      name=name,
  )


def _norm(channels: int, name: str, zero_scale: bool = False) -> nn.GroupNorm:
  # Zero scale on the last norm of a block makes each residual branch start
  # as the identity, which stabilises early training.
  return nn.GroupNorm(
      num_groups(channels), name=name, scale_init=zeros if zero_scale else nn.initializers.ones
  )


class _Block(nn.Module):
  """Residual block; subclasses provide the branch layer specs."""

  width: int
  stride: int = 1
  expansion: int = 1

  def specs(self) -> list[tuple[int, int, int]]:  # (features, kernel, stride)
    raise NotImplementedError

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out_ch = self.width * self.expansion
    shortcut = x
    if self.stride != 1 or x.shape[-1] != out_ch:
      shortcut = _conv(out_ch, 1, self.stride, 'proj')(x)
      shortcut = _norm(out_ch, 'proj_norm')(shortcut)
    specs = self.specs()
    y = x
    for i, (feat, k, s) in enumerate(specs, start=1):
      y = _conv(feat, k, s, f'conv{i}')(y)
      y = _norm(feat, f'norm{i}', zero_scale=i == len(specs))(y)
      if i < len(specs):
        y = nn.relu(y)
    return nn.relu(y + shortcut)


class BasicBlock(_Block):
  """Two 3x3 convs (ResNet-10/18/34)."""

  def specs(self) -> list[tuple[int, int, int]]:
    return [(self.width, 3, self.stride), (self.width, 3, 1)]


class Bottleneck(_Block):
  """1x1 reduce, 3x3 (strided, as in ResNet v1.5), 1x1 expand x4 (ResNet-50)."""

  expansion: int = 4

  def specs(self) -> list[tuple[int, int, int]]:
    return [(self.width, 1, 1), (self.width, 3, self.stride), (self.width * self.expansion, 1, 1)]


class Stem(nn.Module):
  """'small': 3x3/1 conv; 'imagenet': 7x7/2 conv + 3x3/2 max-pool."""

  width: int
  kind: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.kind not in ('small', 'imagenet'):
      raise ModelError(f'unknown stem {self.kind!r}; choose one of: small, imagenet')
    big = self.kind == 'imagenet'
    x = _conv(self.width, 7 if big else 3, 2 if big else 1, 'conv')(x)
    x = nn.relu(_norm(self.width, 'norm')(x))
    if big:
      x = max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
    return x


class Stage(nn.Module):
  """`num_blocks` residual blocks; the first one may stride and project."""

  width: int
  num_blocks: int
  stride: int
  bottleneck: bool

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    block_cls = Bottleneck if self.bottleneck else BasicBlock
    for b in range(1, self.num_blocks + 1):
      x = block_cls(self.width, self.stride if b == 1 else 1, name=f'block{b}')(x)
    return x


class ResNet(nn.Module):
  """Post-activation ResNet (conv -> norm -> relu, add, relu) with GroupNorm.

  `num_stages` keeps only the first stages (3 suits 28x28 inputs); stage k
  has `width * 2**(k-1)` channels and stages after the first stride by 2.
  `stem='small'` is one 3x3 stride-1 conv; 'imagenet' is 7x7/2 + max-pool/2.
  Being post-activation, there is no final norm before pooling.
  """

  num_classes: int
  depth: int = 18  # 10 | 18 | 34 | 50 (50 uses bottleneck blocks)
  width: int = 64
  num_stages: int = 4
  stem: str = 'small'  # 'small' | 'imagenet'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False) -> jax.Array:
    del train  # no dropout or batch stats; kept for a uniform signature
    if self.depth not in STAGE_SIZES:
      raise ModelError(f'depth must be one of {sorted(STAGE_SIZES)}, got {self.depth}')
    if not 1 <= self.num_stages <= 4:
      raise ModelError(f'num_stages must be in 1..4, got {self.num_stages}')
    sizes, bottleneck = STAGE_SIZES[self.depth]
    x = Stem(self.width, self.stem, name='stem')(x)
    for s in range(self.num_stages):
      x = Stage(
          self.width * 2**s, sizes[s], 1 if s == 0 else 2, bottleneck, name=f'stage{s + 1}'
      )(x)
    x = jnp.mean(x, axis=(1, 2))
    if features_only:
      return x
    return nn.Dense(self.num_classes, kernel_init=zeros, bias_init=zeros, name='head')(x)


SPEC = ModelSpec(
    module=ResNet,
    input_kind='image',
    # A stage is the unit of depth here: stages, not residual blocks, are what partial_ft unfreezes.
    blocks=lambda m: Blocks(
        stem=('stem',), body=tuple(f'stage{i}' for i in range(1, m.num_stages + 1))
    ),
    lora_targets=r'stage\d+/block\d+/conv\d+/kernel',
    smoke=dict(width=4, num_stages=2),
)
