"""Optax optimizers from config: schedules, rule-driven groups, frozen leaves.

Every parameter gets a label from the rule lists: `frozen`, or a group named
by its learning-rate and weight-decay multipliers. `optax.multi_transform`
maps `frozen` to `set_to_zero` (which holds no state), and each group to the
configured optimizer scaled by its multipliers, so frozen parameters cost no
optimizer memory at all.
"""

from __future__ import annotations

from typing import Any, Mapping

import ml_collections
import optax

from jaxadapt import ema, path_rules, param_tree
from jaxadapt.config import ConfigError
from jaxadapt.models.common import is_constant

FROZEN = 'frozen'


def schedule(optim: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Warmup (linear from 0) followed by cosine, linear or constant decay."""
  warmup = optim.warmup_steps or int(optim.warmup_fraction * total_steps)
  warmup = min(warmup, max(total_steps - 1, 0))
  decay_steps = max(total_steps - warmup, 1)
  if optim.schedule == 'cosine':
    main = optax.cosine_decay_schedule(optim.lr, decay_steps)
  elif optim.schedule == 'linear':
    main = optax.linear_schedule(optim.lr, 0.0, decay_steps)
  elif optim.schedule == 'constant':
    main = optax.constant_schedule(optim.lr)
  else:
    raise ConfigError(
        f"unknown optim.schedule '{optim.schedule}'; choose cosine, linear or constant"
    )
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, optim.lr, warmup), main], [warmup])


def trainable_mask(trainable_rules: path_rules.Rules, paths: list[str]) -> dict[str, bool]:
  """{path: True if it trains} from the `adapt.trainable` rules."""
  labels = path_rules.match(trainable_rules, paths, 'adapt.trainable')
  bad = {v for v in labels.values() if v not in ('train', FROZEN)}
  if bad:
    raise path_rules.RuleError(
        f"adapt.trainable: values must be 'train' or 'frozen', got {sorted(map(str, bad))}"
    )
  # Model constants (frozen BatchNorm statistics) never train, whatever the rules say.
  return {p: v == 'train' and not is_constant(p) for p, v in labels.items()}


def param_groups(
    optim: ml_collections.ConfigDict, flat_params: Mapping[str, Any], trainable: Mapping[str, bool]
) -> dict[str, dict[str, Any]]:
  """Per-path decisions: {'label', 'lr_mult', 'wd_mult'}; frozen paths get label 'frozen'.

  Freezing has one spelling, `adapt.trainable`: a learning-rate multiplier of zero or below
  is an error, not a second way to freeze (a negative one would be gradient ascent).
  """
  paths = list(flat_params)
  lr = path_rules.match(optim.lr_rules, paths, 'optim.lr_rules')
  wd = path_rules.match(optim.wd_rules, paths, 'optim.wd_rules')
  groups = {}
  for p in paths:
    lr_mult, wd_mult = _multiplier(lr[p], 'optim.lr_rules', p), _multiplier(
        wd[p], 'optim.wd_rules', p
    )
    if lr_mult <= 0.0:
      raise path_rules.RuleError(
          f"optim.lr_rules: multiplier {lr_mult:g} for '{p}' must be > 0; to freeze "
          f"parameters use adapt.trainable, e.g. (('{p}', 'frozen'), ..., ('.*', 'train'))"
      )
    if wd_mult < 0.0:
      raise path_rules.RuleError(f"optim.wd_rules: multiplier {wd_mult:g} for '{p}' must be >= 0")
    label = f'lr{lr_mult:g}_wd{wd_mult:g}' if trainable[p] else FROZEN
    groups[p] = {'label': label, 'lr_mult': lr_mult if trainable[p] else 0.0, 'wd_mult': wd_mult}
  return groups


def _multiplier(value: Any, what: str, path: str) -> float:
  try:
    return float(value)
  except (TypeError, ValueError):
    raise path_rules.RuleError(
        f"{what}: value {value!r} for '{path}' is not a number; use e.g. ('.*', 1.0)"
    ) from None


def make_optimizer(
    optim: ml_collections.ConfigDict, groups: Mapping[str, Mapping[str, Any]], total_steps: int
) -> optax.GradientTransformation:
  """The full optimizer over the whole parameter tree (frozen leaves included)."""
  base = schedule(optim, total_steps)
  transforms = {FROZEN: optax.set_to_zero()}
  for g in {v['label']: v for v in groups.values() if v['label'] != FROZEN}.values():
    lr = _scaled(base, g['lr_mult'])
    wd = optim.weight_decay * g['wd_mult']
    if optim.name == 'adamw':
      tx = optax.adamw(lr, b1=optim.momentum, b2=optim.b2, weight_decay=wd)
    elif optim.name == 'sgd':
      tx = optax.chain(
          optax.add_decayed_weights(wd) if wd else optax.identity(),
          optax.sgd(lr, momentum=optim.momentum or None, nesterov=optim.nesterov),
      )
    else:
      raise ConfigError(f"unknown optim.name '{optim.name}'; choose adamw or sgd")
    if optim.ema:
      tx = optax.chain(tx, ema.track(optim.ema))  # per group: trainable leaves only
    transforms[g['label']] = tx
  labels = param_tree.unflatten({p: g['label'] for p, g in groups.items()})
  tx = optax.partition(transforms, labels)  # a.k.a. multi_transform
  if optim.grad_clip:
    # Frozen leaves enter with zero gradients, so the global norm is the trainable one.
    tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip), tx)
  return tx


def _scaled(base: optax.Schedule, mult: float) -> optax.Schedule:
  return base if mult == 1.0 else (lambda step: mult * base(step))
