"""Metric sinks: `metrics.jsonl` (one object per log step) and TensorBoard events.

Only process 0 writes; other processes get a writer that does nothing, so the
training loop calls `write` unconditionally. A resumed run passes the step it resumed
from: records after it (written before a crash, and about to be written again) are
dropped from `metrics.jsonl`, and TensorBoard is told to purge them (`purge_step`).
"""

from __future__ import annotations

import json
import math
from typing import Mapping

import jax
from etils import epath


class MetricWriter:
  """Appends `{'step': s, 'split/metric': value, ...}` lines and TensorBoard scalars."""

  def __init__(
      self, workdir: epath.PathLike, enabled: bool | None = None, keep_through: int | None = None
  ):
    """`keep_through`: drop the records of later steps (a resumed run passes its start step)."""
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.path = epath.Path(workdir) / 'metrics.jsonl'
    self._tb = None
    if self.enabled:
      from tensorboardX import SummaryWriter  # Imported here: only process 0 needs it.

      if keep_through is not None:
        _drop_after(self.path, keep_through)
      purge = None if keep_through is None else keep_through + 1
      self._tb = SummaryWriter(str(epath.Path(workdir) / 'tensorboard'), purge_step=purge)
      self._file = self.path.open('a')

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    record = {'step': int(step), **{k: _plain(v) for k, v in metrics.items()}}
    self._file.write(json.dumps(record) + '\n')
    self._file.flush()
    for name, value in record.items():
      if name != 'step' and isinstance(value, (int, float)):
        self._tb.add_scalar(name, value, step)
    self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      self._tb.close()


def read_metrics(workdir: epath.PathLike) -> list[dict]:
  """All records of a workdir's metrics.jsonl, in order."""
  path = epath.Path(workdir) / 'metrics.jsonl'
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _drop_after(path: epath.Path, step: int) -> None:
  """Rewrites metrics.jsonl without records after `step` (and without a torn last line)."""
  if not path.exists():
    return
  kept = []
  for line in path.read_text().splitlines():
    try:
      record = json.loads(line)
    except ValueError:
      continue  # a line cut by a crash mid-write
    if isinstance(record, dict) and record.get('step', 0) <= step:
      kept.append(line + '\n')
  tmp = path.parent / (path.name + '.tmp')
  tmp.write_text(''.join(kept))
  tmp.replace(path)


def _plain(value):
  value = float(value) if hasattr(value, '__float__') else value
  return None if isinstance(value, float) and not math.isfinite(value) else value
