"""A run whose loss turns NaN or infinite stops there, before that state is saved or evaluated.

The step's metrics stay on the device until the loop needs them (log, eval or save
steps), so checking costs no extra host round trip per step; the error still names the
first bad step. A non-finite gradient norm counts too: that update already spoiled the
parameters even if the loss printed for that step was finite. A state is saved only after
its step's values were checked, and the checkpoint whose parameters produced the first
bad values is moved aside, so the latest checkpoint is always one a rerun can resume from.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax

from jaxadapt.checkpoint import DIVERGED_DIR
from jaxadapt.errors import UserError

WATCHED = ('loss', 'grad_norm')


class DivergedError(UserError):
  """Training produced a non-finite loss or gradient; the message says where and what to do."""


def first_nonfinite(
    pending: Sequence[dict[str, Any]], first_step: int
) -> tuple[int, str, float] | None:
  """(step, metric, value) of the first of the `pending` step metrics that is NaN or inf.

  `pending[i]` holds the metrics of step `first_step + i`.
  """
  host = jax.device_get([{k: m[k] for k in WATCHED if k in m} for m in pending])
  for i, metrics in enumerate(host):
    for name, value in metrics.items():
      if not math.isfinite(float(value)):
        return first_step + i, name, float(value)
  return None


def check(pending: Sequence[dict[str, Any]], first_step: int, ckpt, lr: float) -> None:
  """Raises DivergedError if any pending step's loss or gradient norm is not finite.

  The parameters saved after the step before the bad one produced the bad values (with
  the same batch they produce them again, whatever the new lr), so that checkpoint and any
  later one are moved aside first: the latest checkpoint left is one to resume from.
  """
  bad = first_nonfinite(pending, first_step)
  if bad is None:
    return
  step, name, value = bad
  moved, latest = ckpt.discard_from(step - 1)
  aside = f'; checkpoint {moved[-1]} moved to {DIVERGED_DIR}/' if moved else ''
  resume = f'resume from step {latest} (the latest checkpoint)' if latest else 'start over'
  raise DivergedError(
      f'training diverged: train/{name} is {value} at step {step}{aside}; lower optim.lr '
      f'(now {lr:g}) or set optim.grad_clip, then rerun to {resume}'
  )
