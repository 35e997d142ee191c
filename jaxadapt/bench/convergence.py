"""Did a run converge? Its validation curve, and whether it was still rising at the end.

A run in a matrix suite evaluates a few times (`matrix.fit_budget`); the runner keeps the
validation-accuracy curve in the run's record, and the report marks a cell whose accuracy
was still rising over the last fifth of its steps: a longer budget would likely change it.
"""

from __future__ import annotations

from typing import Iterable

# A rise below this (absolute accuracy) over the last fifth is noise, not under-training.
RISE_TOLERANCE = 0.005


def val_curve(metrics: Iterable[dict], key: str = 'val/accuracy') -> list[list[float]]:
  """[[step, accuracy], ...] of every evaluation in a run's metrics.jsonl records."""
  return [[int(r['step']), float(r[key])] for r in metrics if key in r]


def still_rising(
    curve: list[list[float]], num_steps: int, tolerance: float = RISE_TOLERANCE
) -> bool | None:
  """True when the final accuracy beats the last one at or before 4/5 of the steps by more
  than `tolerance`; None when the curve has no point that early (it cannot tell)."""
  early = [acc for step, acc in curve if step <= 0.8 * num_steps]
  if not early or not curve:
    return None
  return curve[-1][1] - early[-1] > tolerance
