"""Config values that would train silently wrong: checked in one place, before any work.

`validate(config)` runs first in `train.train` and `fast_probe.run`, before data is read
or the workdir is touched. Types are already enforced by the locked config; this checks
ranges: a negative learning rate trains by gradient ascent, `keep_ckpts=0` deletes the
trained model, `num_steps=-1` exits 0 after no training at all.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import ml_collections

from jaxadapt.config import ConfigError


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (one line: key, value, what is allowed) for the first bad value."""
  optim = config.optim
  _check('optim.lr', optim.lr, '> 0', lambda v: v > 0, 'e.g. 1e-3; freeze with adapt.trainable')
  _check('optim.grad_clip', optim.grad_clip, '>= 0', lambda v: v >= 0, '0 turns clipping off')
  _check('optim.weight_decay', optim.weight_decay, '>= 0', lambda v: v >= 0)
  _check('optim.ema', optim.ema, 'in [0, 1)', lambda v: 0 <= v < 1, 'e.g. 0.999; 0 turns it off')
  _check('optim.momentum', optim.momentum, 'in [0, 1)', lambda v: 0 <= v < 1)
  _check('optim.b2', optim.b2, 'in [0, 1)', lambda v: 0 <= v < 1)
  _check('optim.warmup_steps', optim.warmup_steps, '>= 0', lambda v: v >= 0)
  _check('optim.warmup_fraction', optim.warmup_fraction, 'in [0, 1)', lambda v: 0 <= v < 1)

  _check('num_steps', config.num_steps, '>= 0', lambda v: v >= 0, '0 means: use num_epochs')
  if config.num_steps == 0:
    _check(
        'num_epochs',
        config.num_epochs,
        '> 0 when num_steps is 0',
        lambda v: v > 0,
        'or set num_steps > 0',
    )
  _check('batch_size', config.batch_size, '>= 1', lambda v: v >= 1)
  _check('eval_batch_size', config.eval_batch_size, '>= 1', lambda v: v >= 1)
  _check('log_every', config.log_every, '>= 1', lambda v: v >= 1)
  _check('eval_every', config.eval_every, '>= 0', lambda v: v >= 0, '0 means: once per epoch')
  _check('ckpt_every', config.ckpt_every, '>= 0', lambda v: v >= 0, '0 means: at the end only')
  _check(
      'keep_ckpts',
      config.keep_ckpts,
      '>= 1',
      lambda v: v >= 1,
      'with 0 no checkpoint survives and the trained model is lost',
  )
  _check(
      'dataset.examples_per_class',
      config.dataset.examples_per_class,
      '>= 0',
      lambda v: v >= 0,
      '0 means: all examples',
  )
  _check('adapt.probe_max_iter', config.adapt.probe_max_iter, '>= 1', lambda v: v >= 1)
  _check('adapt.probe_tol', config.adapt.probe_tol, '> 0', lambda v: v > 0)
  _check('adapt.lora.alpha', config.adapt.lora.alpha, '> 0', lambda v: v > 0)
  if config.distill.teachers:
    d = config.distill
    _check('distill.temperature', d.temperature, '> 0', lambda v: v > 0)
    _check('distill.alpha', d.alpha, 'in [0, 1]', lambda v: 0 <= v <= 1)
    _check('distill.mixup_alpha', d.mixup_alpha, '> 0', lambda v: v > 0)


def _check(key: str, value: Any, allowed: str, ok, hint: str = '') -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ConfigError(f'{key}={value!r} must be a number {allowed}')
  if not math.isfinite(value) or not ok(value):
    raise ConfigError(f'{key}={value!r} must be {allowed}' + (f' ({hint})' if hint else ''))
