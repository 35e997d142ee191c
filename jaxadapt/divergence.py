"""A run whose loss turns NaN or infinite stops there, before that state is saved or evaluated.

The step's metrics stay on the device until the loop needs them (log, eval or save
steps), so checking costs no extra host round trip per step; the error still names the
first bad step. A non-finite gradient norm counts too: that update already spoiled the
parameters even if the loss printed for that step was finite.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax

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


def check(
    pending: Sequence[dict[str, Any]], first_step: int, last_saved: int | None, lr: float
) -> None:
  """Raises DivergedError if any pending step's loss or gradient norm is not finite."""
  bad = first_nonfinite(pending, first_step)
  if bad is None:
    return
  step, name, value = bad
  kept = (
      f'the latest checkpoint is still step {last_saved}'
      if last_saved
      else 'no checkpoint was saved'
  )
  rerun = f'resume from step {last_saved}' if last_saved else 'start over'
  raise DivergedError(
      f'training diverged: train/{name} is {value} at step {step}; stopped without saving '
      f'it ({kept}); lower optim.lr (now {lr:g}) or set optim.grad_clip, then rerun to {rerun}'
  )
