"""Model zoo: build a flax.linen classifier by name; each entry describes itself.

`REGISTRY` maps a name to the model's `ModelSpec` (jaxadapt/models/spec.py): the flax
class, its input kind, its block prefixes in depth order, its default LoRA targets and
its smoke size. Adding a model is one module (class + SPEC) and one line here.

Models: ``cnn`` (CNN), ``resnet`` (GroupNorm ResNet), ``vit`` (ViT), and the
MNIST-1D paper's ``linear``, ``mlp``, ``cnn1d``, ``gru`` (small.py). All share

    model.apply({'params': params}, images, train=False, features_only=False,
                rngs={'dropout': key})

with float32 NHWC images, [B, L, C] sequences for the MNIST-1D models, or int32
token ids [B, L] for ``bert``.
``train`` enables dropout; ``features_only`` returns the (B, D) vector fed to
``head`` instead of logits. There are no mutable
collections: ``init`` returns only ``'params'`` (``resnet_bn``'s frozen BatchNorm
statistics are parameters that never train, see ``is_constant``). Every kernel is
2D (Dense) or 4D (Conv), except cnn1d's 3D Conv1D kernels; ``head`` is
zero-initialised.

Parameter paths ('/'-joined, indices 1-based):

- cnn: ``block{i}/conv{1,2}/{kernel,bias}``, ``block{i}/norm{1,2}/{scale,bias}``
  (absent with ``norm='none'``), ``dense/{kernel,bias}`` (absent with
  ``dense=0``), ``head/{kernel,bias}``.
- resnet: ``stem/conv/kernel``, ``stem/norm/{scale,bias}``,
  ``stage{s}/block{b}/conv{j}/kernel`` and ``.../norm{j}/{scale,bias}`` (j = 1..2,
  or 1..3 for bottleneck depth 50), shortcut projection
  ``stage{s}/block1/proj/kernel`` and ``.../proj_norm/{scale,bias}`` where
  shape changes, ``head/{kernel,bias}``. Convs have no bias (a norm follows);
  post-activation, so no final norm.
- vit: ``embedding/{kernel,bias}``, ``cls`` (pool='cls' only), ``pos_embedding``,
  ``encoder/block{i}/norm{1,2}/{scale,bias}``,
  ``encoder/block{i}/attn/{query,key,value,out}/{kernel,bias}``,
  ``encoder/block{i}/mlp/{fc1,fc2}/{kernel,bias}``, ``encoder/norm/{scale,bias}``,
  ``head/{kernel,bias}``.
- resnet_bn (timm/torchvision ResNets, frozen BatchNorm): as resnet, norms also hold
  ``mean`` and ``var``. bit (BiT ResNetV2): see bit.py. bert: see bert.py
  (``encoder/block{i}/...`` as vit).
- linear: ``head/{kernel,bias}``. mlp: ``fc{i}/{kernel,bias}``, ``head/*``.
  cnn1d: ``conv{1,2,3}/{kernel,bias}``, ``head/*``.
- gru: ``gru/{forward_rnn,backward_rnn}/cell/{ir,iz,in,hr,hz,hn}/{kernel,bias}``
  (``gru/cell/...`` with ``bidirectional=False``), ``head/*``.
"""

import dataclasses
import difflib

import flax.linen as nn

from . import bert, bit, cnn, resnet, resnet_bn, small, vit
from .cnn import CNN
from .common import ModelError
from .bert import Bert
from .bit import BiT
from .common import is_constant
from .resnet import ResNet
from .resnet_bn import ResNetBN
from .small import CNN1D, GRU, MLP, Linear
from .spec import INPUT_KINDS, Blocks, ModelSpec
from .vit import ViT

REGISTRY: dict[str, ModelSpec] = {
    'cnn': cnn.SPEC,
    'resnet': resnet.SPEC,
    'vit': vit.SPEC,
    'linear': small.LINEAR_SPEC,
    'mlp': small.MLP_SPEC,
    'cnn1d': small.CNN1D_SPEC,
    'gru': small.GRU_SPEC,
    # Architectures of other libraries' checkpoints (jaxadapt/importers/).
    'resnet_bn': resnet_bn.SPEC,
    'bit': bit.SPEC,
    'bert': bert.SPEC,
}

# Dataclass fields that are flax plumbing or set by build_model itself.
_RESERVED = {'parent', 'name', 'num_classes'}


def get_spec(name: str) -> ModelSpec:
  """The registry entry of model `name`; an unknown name suggests the nearest."""
  if name in REGISTRY:
    return REGISTRY[name]
  names = list(REGISTRY)
  msg = f"unknown model {name!r}; choose one of: {', '.join(names)}"
  close = difflib.get_close_matches(name, names, n=1)
  if close:
    msg += f' (did you mean {close[0]!r}?)'
  raise ModelError(msg)


def model_options(name: str) -> list[str]:
  """Keyword arguments accepted by `build_model(name, ...)`."""
  fields = dataclasses.fields(get_spec(name).module)
  return [f.name for f in fields if f.init and f.name not in _RESERVED]


def build_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """Instantiate model `name` with `num_classes` outputs and its options."""
  valid = model_options(name)
  for key in kwargs:
    if key not in valid:
      raise ModelError(
          f'unknown option {key!r} for model {name!r}; ' f"valid options: {', '.join(valid)}"
      )
  return get_spec(name).module(num_classes=num_classes, **kwargs)


def blocks(name: str, **kwargs) -> Blocks:
  """Block prefixes of model `name` built with `kwargs` (its defaults fill the rest)."""
  # The class count never changes the blocks; the module is only constructed, not initialised.
  return get_spec(name).blocks(build_model(name, 1, **kwargs))


__all__ = [
    'Bert',
    'BiT',
    'CNN',
    'CNN1D',
    'GRU',
    'INPUT_KINDS',
    'REGISTRY',
    'Blocks',
    'Linear',
    'MLP',
    'ModelError',
    'ModelSpec',
    'ResNet',
    'ResNetBN',
    'ViT',
    'blocks',
    'build_model',
    'get_spec',
    'is_constant',
    'model_options',
]
