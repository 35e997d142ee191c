"""Adaptation methods as config edits: which parameters train, at which rate.

Each method fills in `adapt.*`, `optim.lr_rules` and `init.dont_load` with path rules
for the config's model, read from the model's registry entry (its block prefixes and
LoRA targets, jaxadapt/models/spec.py), so one method name works with every model and
this module knows none by name. The trainer never sees a method name, only rules.
"""

from __future__ import annotations

import dataclasses
import difflib

import ml_collections

from jaxadapt import models
from jaxadapt.errors import UserError

METHODS = (
    'scratch',
    'linear_probe',
    'partial_ft',
    'full_ft',
    'lora',
    'bitfit',
    'dora',
    'ia3',
    'prompt',
)


class MethodError(UserError):
  """An unknown method or an argument the model cannot honour."""


def under(prefix: str) -> str:
  """Rule regex for a block prefix: the parameter itself (e.g. `cls`) and all below it."""
  return f'{prefix}(/.*)?'


def apply(
    config: ml_collections.ConfigDict,
    method: str,
    k: int = 1,
    rank: int = 8,
    layer_decay: float = 1.0,
    fast: str = '',
    prompts: int = 8,
    deep: bool = False,
) -> ml_collections.ConfigDict:
  """Sets `config` up for `method` on `config.model`; returns it for chaining.

  k: blocks partial_ft unfreezes (the last ones); rank: LoRA rank; layer_decay: full_ft's
  layer-wise lr decay (1.0 = off); fast: linear_probe's fast path ('' = the epoch loop,
  'ridge' or 'softmax' on cached backbone features); prompts: prompt tokens per block,
  deep: new prompts at every block (deep VPT) rather than before the first only.
  """
  if method not in METHODS:
    close = difflib.get_close_matches(method, METHODS, n=1)
    raise MethodError(
        f"unknown method '{method}'; choose one of: {', '.join(METHODS)}"
        + (f" (did you mean '{close[0]}'?)" if close else '')
    )
  name = config.model.name
  spec = models.get_spec(name)
  stem, body, post = models.blocks(name, **config.model.kwargs.to_dict())
  config.adapt.method = method
  if method != 'scratch':
    config.init.dont_load = ('head/.*',)  # a new task gets a new head
  if method in ('scratch', 'full_ft'):
    config.adapt.trainable = (('.*', 'train'),)
    if layer_decay != 1.0:
      config.optim.lr_rules = layer_decay_rules(stem, body, layer_decay)
  elif method == 'linear_probe':
    config.adapt.trainable = (('head/.*', 'train'), ('.*', 'frozen'))
    config.adapt.fast_probe = fast
  elif method == 'partial_ft':
    if not body:
      raise MethodError(
          f"partial_ft: model '{name}' has no blocks to unfreeze; use linear_probe or full_ft"
      )
    if not 1 <= k <= len(body):
      raise MethodError(
          f'partial_ft: k={k} but the model has {len(body)} blocks; use 1..{len(body)}'
      )
    unfrozen = body[len(body) - k :] + post
    config.adapt.trainable = tuple((under(u), 'train') for u in unfrozen) + (
        ('head/.*', 'train'),
        ('.*', 'frozen'),
    )
  elif method == 'bitfit':
    config.adapt.trainable = (('head/.*', 'train'), ('.*/(bias|scale)', 'train'), ('.*', 'frozen'))
  elif method == 'lora':
    if spec.lora_targets is None:
      raise MethodError(f"lora: no adapter targets for model '{name}': {spec.no_lora}")
    config.adapt.lora.rules = ((spec.lora_targets, rank),)
    config.adapt.trainable = (('lora/.*', 'train'), ('head/.*', 'train'), ('.*', 'frozen'))
  elif method == 'dora':
    if spec.lora_targets is None:
      raise MethodError(f"dora: no adapter targets for model '{name}': {spec.no_lora}")
    config.adapt.dora.rules = ((spec.lora_targets, rank),)
    config.adapt.trainable = (('dora/.*', 'train'), ('head/.*', 'train'), ('.*', 'frozen'))
  elif method == 'ia3':
    if spec.ia3_rules is None:
      raise MethodError(
          f"ia3: model '{name}' has no attention keys/values and MLP to rescale (IA3 works on "
          f"{', '.join(n for n, s in models.REGISTRY.items() if s.ia3_rules)}); "
          f'use lora or bitfit instead'
      )
    config.adapt.ia3.rules = spec.ia3_rules
    config.adapt.trainable = (('ia3/.*', 'train'), ('head/.*', 'train'), ('.*', 'frozen'))
  elif method == 'prompt':
    _set_prompts(config, name, spec, prompts, deep, len(body))
  return config


def _set_prompts(config, name, spec, prompts: int, deep: bool, depth: int) -> None:
  """Prompt tuning is a model option (its tokens join the sequence the blocks see)."""
  if 'num_prompts' not in {f.name for f in dataclasses.fields(spec.module)}:
    supported = [
        n
        for n, s in models.REGISTRY.items()
        if 'num_prompts' in {f.name for f in dataclasses.fields(s.module)}
    ]
    raise MethodError(
        f"prompt: model '{name}' reads no token sequence to prepend prompts to (prompt "
        f"tuning works on {', '.join(supported)}); use lora or bitfit instead"
    )
  if prompts < 1:
    raise MethodError(f'prompt: prompts={prompts}; use 1 or more prompt tokens, e.g. 8')
  config.model.kwargs.num_prompts = prompts
  config.model.kwargs.prompt_depth = depth if deep else 1
  config.init.dont_load = ('head/.*', 'prompt')  # prompts are new, like the head
  config.adapt.trainable = (('prompt', 'train'), ('head/.*', 'train'), ('.*', 'frozen'))


def layer_decay_rules(
    stem: tuple[str, ...], body: tuple[str, ...], decay: float
) -> tuple[tuple[str, float], ...]:
  """BEiT/MAE-style lr multipliers: block i of n gets decay^(n+1-i), the stem decay^(n+1).

  Post-block layers and the head keep 1.0.
  """
  n = len(body)
  rules = [(under(b), decay ** (n - i)) for i, b in enumerate(body)]
  rules += [(under(s), decay ** (n + 1)) for s in stem]
  return tuple(rules) + (('.*', 1.0),)
