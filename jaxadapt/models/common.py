"""Small helpers shared by the model definitions."""

import math
import re

import flax.linen as nn
from jaxadapt.errors import UserError


class ModelError(UserError):
  """A model name or option that does not exist or does not fit."""


# ReLU nets train best from He init; zeros for the head so a fresh head starts
# from uniform predictions and does not disturb pretrained features.
he_init = nn.initializers.he_normal()
zeros = nn.initializers.zeros


def num_groups(channels: int, max_groups: int = 32) -> int:
  """Largest group count <= max_groups that divides `channels` (BiT uses 32)."""
  return math.gcd(channels, max_groups)


def make_norm(kind: str, channels: int, name: str) -> nn.Module | None:
  """Batch-independent norm layer by name, or None for 'none'."""
  if kind == 'layer':
    # Normalise over channels per position (ConvNeXt style).
    return nn.LayerNorm(name=name)
  if kind == 'group':
    return nn.GroupNorm(num_groups=num_groups(channels), name=name)
  if kind == 'none':
    return None
  raise ModelError(f'unknown norm {kind!r}; choose one of: layer, group, none')


# Leaves that are constants of the model, not parameters to learn: frozen BatchNorm
# statistics (resnet_bn). The trainer freezes them whatever adapt.trainable says.
_CONSTANT = re.compile(r'(.*/)?(norm\d*|proj_norm)/(mean|var)')


def is_constant(path: str) -> bool:
  """True for a parameter path that must never train (frozen BatchNorm statistics)."""
  return bool(_CONSTANT.fullmatch(path))
