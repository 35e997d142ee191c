"""Per-method selection on validation: pick each (task, method, size)'s grid point.

A matrix method with a `grid` runs once per grid point (matrix.expand tags each run with its
point as `tags['grid']`). The choice is made here, from the records alone, so resumed and
sharded benchmarks select the same way: the point with the best mean validation accuracy
over seeds wins (ties: the first point in run order), and only its runs reach the report's
test-accuracy columns. The validation split is disjoint from the training examples.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import numpy as np


def point_key(record: dict) -> str:
  """A record's grid point as a stable string ('{}' for a method without a grid)."""
  return json.dumps(record.get('tags', {}).get('grid', {}), sort_keys=True)


def select(runs: Iterable[dict]) -> tuple[list[dict], list[dict]]:
  """(the runs of each group's chosen point, one choice per group).

  `runs` carry flattened tags task, method, examples_per_class; a choice is
  dict(task, method, examples_per_class, chosen={key: value}, scores={point: mean val acc}).
  """
  groups: dict[tuple, dict[str, list[dict]]] = {}
  for r in runs:
    key = (r['task'], r['method'], r['examples_per_class'])
    groups.setdefault(key, {}).setdefault(point_key(r), []).append(r)
  kept, choices = [], []
  for (task, method, size), points in groups.items():
    scores = {p: _mean_val(rs) for p, rs in points.items()}
    best = max(points, key=lambda p: (np.nan_to_num(scores[p], nan=-1.0)))  # first max wins
    kept += points[best]
    choices.append(
        dict(
            task=task,
            method=method,
            examples_per_class=size,
            chosen=json.loads(best),
            scores=scores,
        )
    )
  return kept, choices


def _mean_val(rs: list[dict]) -> float:
  values = [float(r['val_accuracy']) for r in rs if r.get('val_accuracy') is not None]
  return float(np.mean(values)) if values else float('nan')
