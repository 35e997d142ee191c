"""Adaptation methods as config edits: which parameters train, at which rate.

Each function takes a config whose model is set and fills in `adapt.*`,
`optim.lr_rules` and `init.dont_load` with path rules for that model, so one
method name works with every model of the registry. The trainer never sees a
method name, only rules.
"""

from __future__ import annotations

import ml_collections
from jaxadapt.errors import UserError


class MethodError(UserError):
  """An unknown method or an argument the model cannot honour."""


METHODS = ('scratch', 'linear_probe', 'partial_ft', 'full_ft', 'lora', 'bitfit')


def blocks(model: ml_collections.ConfigDict) -> tuple[list[str], list[str], list[str]]:
  """(stem regexes, ordered block regexes, post-block regexes) for a model config.

  Blocks are the units that 'unfreeze the last k' and layer-wise decay count.
  """
  kw = model.kwargs
  if model.name == 'cnn':
    n = len(kw.get('widths', (32, 64)))
    return [], [f'block{i}' for i in range(1, n + 1)], (['dense'] if kw.get('dense', 128) else [])
  if model.name == 'resnet':
    n = kw.get('num_stages', 4)
    return ['stem'], [f'stage{i}' for i in range(1, n + 1)], []
  if model.name == 'vit':
    n = kw.get('depth', 6)
    stem = (
        ['embedding', 'cls', 'pos_embedding']
        if kw.get('pool', 'cls') == 'cls'
        else ['embedding', 'pos_embedding']
    )
    return stem, [f'encoder/block{i}' for i in range(1, n + 1)], ['encoder/norm']
  if model.name == 'mlp':
    return [], [f'fc{i}' for i in range(1, len(kw.get('widths', (100, 100))) + 1)], []
  if model.name == 'cnn1d':
    return [], [f'conv{i}' for i in range(1, len(kw.get('kernel_sizes', (5, 3, 3))) + 1)], []
  if model.name == 'gru':
    return [], ['gru'], []
  if model.name == 'linear':
    return [], [], []
  spec = _imported_spec(model.name)
  if spec is not None:  # the importers' models carry this knowledge themselves
    post = spec['post'](kw) if callable(spec['post']) else spec['post']
    return list(spec['stem']), spec['blocks'](kw), list(post)
  raise MethodError(
      f"unknown model '{model.name}' for adaptation rules; choose cnn, resnet, vit, "
      f'mlp, cnn1d, gru or linear'
  )


def _imported_spec(name: str) -> dict | None:
  """SPEC dicts of resnet_bn, bit and bert (to become registry entries, issue 11)."""
  from jaxadapt.models import bert, bit, resnet_bn

  return {'resnet_bn': resnet_bn.SPEC, 'bit': bit.SPEC, 'bert': bert.SPEC}.get(name)


def _under(prefix: str) -> str:
  return prefix if prefix in ('cls', 'pos_embedding') else f'{prefix}/.*'


def apply(
    config: ml_collections.ConfigDict,
    method: str,
    k: int = 1,
    rank: int = 8,
    layer_decay: float = 1.0,
) -> ml_collections.ConfigDict:
  """Sets `config` up for `method`; returns it for chaining."""
  if method not in METHODS:
    import difflib

    close = difflib.get_close_matches(method, METHODS, n=1)
    raise MethodError(
        f"unknown method '{method}'; choose one of: {', '.join(METHODS)}"
        + (f" (did you mean '{close[0]}'?)" if close else '')
    )
  stem, body, post = blocks(config.model)
  config.adapt.method = method
  if method != 'scratch':
    config.init.dont_load = ('head/.*',)  # a new task gets a new head
  if method in ('scratch', 'full_ft'):
    config.adapt.trainable = (('.*', 'train'),)
    if layer_decay != 1.0:
      # BEiT/MAE-style: block i of n gets decay^(n+1-i), the stem decay^(n+1).
      n = len(body)
      rules = [(_under(b), layer_decay ** (n - i)) for i, b in enumerate(body)]
      rules += [(_under(s), layer_decay ** (n + 1)) for s in stem]
      config.optim.lr_rules = tuple(rules) + (('.*', 1.0),)
  elif method == 'linear_probe':
    config.adapt.trainable = (('head/.*', 'train'), ('.*', 'frozen'))
  elif method == 'partial_ft':
    if not 1 <= k <= len(body):
      raise MethodError(
          f'partial_ft: k={k} but the model has {len(body)} blocks; use 1..{len(body)}'
      )
    unfrozen = body[len(body) - k :] + post
    config.adapt.trainable = tuple((_under(u), 'train') for u in unfrozen) + (
        ('head/.*', 'train'),
        ('.*', 'frozen'),
    )
  elif method == 'bitfit':
    config.adapt.trainable = (('head/.*', 'train'), ('.*/(bias|scale)', 'train'), ('.*', 'frozen'))
  elif method == 'lora':
    kernels = {
        'cnn': r'(block\d+/conv\d+|dense)/kernel',
        'resnet': r'stage\d+/block\d+/conv\d+/kernel',
        'vit': r'encoder/block\d+/(attn/(query|value)|mlp/fc\d)/kernel',
        'mlp': r'fc\d+/kernel',
        'gru': r'gru/.*/(i|h)[rzn]/kernel',
    }.get(config.model.name)
    if kernels is None and _imported_spec(config.model.name):
      kernels = _imported_spec(config.model.name)['lora']
    if kernels is None:  # cnn1d's 3D conv kernels, linear's head only
      raise MethodError(
          f"lora: no adapter targets for model '{config.model.name}' (LoRA adapts 2D "
          f'Dense and 4D Conv kernels); use bitfit or partial_ft instead'
      )
    config.adapt.lora.rules = ((kernels, rank),)
    config.adapt.trainable = (('lora/.*', 'train'), ('head/.*', 'train'), ('.*', 'frozen'))
  return config
