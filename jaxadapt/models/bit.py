"""BiT ResNetV2 (Kolesnikov et al. 2020): pre-activation bottlenecks, weight-standardised
convs, GroupNorm, a final GroupNorm + ReLU before pooling. Matches timm's `resnetv2_*_bit`.

Paths: `stem/conv/kernel`, `stage{s}/block{b}/norm{1,2,3}/{scale,bias}`,
`stage{s}/block{b}/conv{1,2,3}/kernel`, `stage{s}/block1/proj/kernel`,
`norm/{scale,bias}`, `head/{kernel,bias}`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from .common import ModelError, he_init, zeros
from .spec import Blocks, ModelSpec
from .resnet_bn import torch_pad


class StdConv(nn.Module):
  """Conv whose kernel is standardised per output channel: (w - mean) / sqrt(var + eps)."""

  features: int
  kernel: int
  stride: int = 1
  eps: float = 1e-8

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel
    w = self.param('kernel', he_init, (k, k, x.shape[-1], self.features))
    mean = w.mean(axis=(0, 1, 2), keepdims=True)
    var = w.var(axis=(0, 1, 2), keepdims=True)
    w = (w - mean) * jax.lax.rsqrt(var + self.eps)
    return jax.lax.conv_general_dilated(
        x,
        w.astype(x.dtype),
        (self.stride, self.stride),
        torch_pad(k, self.stride),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    )


class PreActBottleneck(nn.Module):
  """x + conv3(act(norm3(conv2(act(norm2(conv1(act(norm1(x))))))))), stride on the 3x3."""

  out: int
  stride: int
  groups: int
  ws_eps: float
  gn_eps: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    mid = self.out // 4
    norm = lambda name: nn.GroupNorm(
        self.groups, epsilon=self.gn_eps, use_fast_variance=False, name=name
    )
    conv = lambda f, k, s, name: StdConv(f, k, s, self.ws_eps, name=name)
    preact = nn.relu(norm('norm1')(x))
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.out:
      shortcut = conv(self.out, 1, self.stride, 'proj')(preact)
    y = conv(mid, 1, 1, 'conv1')(preact)
    y = conv(mid, 3, self.stride, 'conv2')(nn.relu(norm('norm2')(y)))
    y = conv(self.out, 1, 1, 'conv3')(nn.relu(norm('norm3')(y)))
    return y + shortcut


class Stage(nn.Module):
  out: int
  num_blocks: int
  stride: int
  groups: int
  ws_eps: float
  gn_eps: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for b in range(1, self.num_blocks + 1):
      x = PreActBottleneck(
          self.out,
          self.stride if b == 1 else 1,
          self.groups,
          self.ws_eps,
          self.gn_eps,
          name=f'block{b}',
      )(x)
    return x


class BiT(nn.Module):
  """ResNetV2 with `layers` bottlenecks per stage; stage s outputs 4 * base_width *
  width_factor * 2**(s-1) channels. BiT-M-R50x1 is layers=(3, 4, 6, 3), width_factor=1.
  """

  num_classes: int
  layers: tuple[int, ...] = (3, 4, 6, 3)
  width_factor: int = 1
  base_width: int = 64
  num_groups: int = 32
  ws_eps: float = 1e-8  # timm's BiT weights; the StdConv default elsewhere is 1e-6
  gn_eps: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, features_only: bool = False) -> jax.Array:
    del train
    width = self.base_width * self.width_factor
    x = Stem(width, self.ws_eps, name='stem')(x)
    for s, n in enumerate(self.layers, start=1):
      out = 4 * width * 2 ** (s - 1)
      stride = 1 if s == 1 else 2
      x = Stage(out, n, stride, self.num_groups, self.ws_eps, self.gn_eps, name=f'stage{s}')(x)
    x = nn.relu(
        nn.GroupNorm(self.num_groups, epsilon=self.gn_eps, use_fast_variance=False, name='norm')(x)
    )
    x = jnp.mean(x, axis=(1, 2))
    if features_only:
      return x
    return nn.Dense(self.num_classes, kernel_init=zeros, bias_init=zeros, name='head')(x)


class Stem(nn.Module):
  """7x7/2 weight-standardised conv, zero padding by 1, 3x3/2 max-pool (BiT's 'fixed' stem)."""

  width: int
  ws_eps: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = StdConv(self.width, 7, 2, self.ws_eps, name='conv')(x)
    # Zeros, not -inf: the stem has no activation yet, so this padding changes the max.
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


SPEC = ModelSpec(
    module=BiT,
    input_kind='image',
    blocks=lambda m: Blocks(
        stem=('stem',), body=tuple(f'stage{i}' for i in range(1, len(m.layers) + 1)), post=('norm',)
    ),
    lora_targets=r'stage\d+/block\d+/conv\d+/kernel',
    smoke=dict(layers=(1, 1), base_width=8, num_groups=4),
)
