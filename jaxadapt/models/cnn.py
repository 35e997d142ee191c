"""Compact VGG-style conv net for small images (MNIST / CIFAR sized)."""

import functools
from typing import Sequence

import flax.linen as nn
import jax

from . import conv
from .common import he_init, make_norm, zeros
from .pooling import max_pool
from .spec import Blocks, ModelSpec

# nn.Conv with a kernel gradient XLA:CPU computes faster (models/conv.py); same parameters.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv.conv_general_dilated)


class ConvBlock(nn.Module):
  """`convs` x (conv3x3 -> norm -> relu) followed by a 2x2 max-pool."""

  width: int
  norm: str
  convs: int = 2

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(1, self.convs + 1):
      x = Conv(self.width, (3, 3), kernel_init=he_init, name=f'conv{i}')(x)
      norm = make_norm(self.norm, self.width, name=f'norm{i}')
      if norm is not None:
        x = norm(x)
      x = nn.relu(x)
    return max_pool(x, (2, 2), strides=(2, 2))


class CNN(nn.Module):
  """Conv blocks, flatten, optional hidden dense layer, linear `head`.

  Flattening the final map (7x7 for 28x28 inputs) keeps spatial detail that
  global average pooling would throw away, which matters on Fashion-MNIST.
  """

  num_classes: int
  widths: Sequence[int] = (32, 64)
  dense: int = 128  # 0 disables the hidden dense layer
  dropout: float = 0.0
  norm: str = 'layer'  # 'layer' | 'group' | 'none'
  convs: int = 2  # conv layers per block (1 = the classic 2-conv Fashion-MNIST net)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False) -> jax.Array:
    for b, width in enumerate(self.widths, start=1):
      x = ConvBlock(width, self.norm, self.convs, name=f'block{b}')(x)
    x = x.reshape(x.shape[0], -1)
    if self.dense:
      x = nn.relu(nn.Dense(self.dense, kernel_init=he_init, name='dense')(x))
    if features_only:
      return x
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=zeros, bias_init=zeros, name='head')(x)


SPEC = ModelSpec(
    module=CNN,
    input_kind='image',
    blocks=lambda m: Blocks(
        body=tuple(f'block{i}' for i in range(1, len(m.widths) + 1)),
        post=('dense',) if m.dense else (),
    ),
    lora_targets=r'(block\d+/conv\d+|dense)/kernel',
    smoke=dict(widths=(4, 8), dense=16),
)
