"""What the report kinds share: the Report they return, figures, number formats, the page.

Every helper is deterministic (no timestamps, no version strings in PNGs), so a report is a
pure function of results.jsonl and suite.json.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Callable, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Report:
  """A written report: report.md's text, the figures beside it, what the terminal shows."""

  markdown: str
  plots: list[str]
  summary: str


def figure(width: float, height: float):
  """A matplotlib Figure on an Agg canvas: no pyplot global state, safe in tests."""
  # Imported here so importing a report stays cheap.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(width, height), dpi=120)
  FigureCanvasAgg(fig)
  return fig


def save(fig, out: str, name: str) -> str:
  """Writes `fig` to out/name; returns the path."""
  path = os.path.join(out, name)
  fig.savefig(path, dpi=120, metadata={'Software': None})  # no version string: stable bytes
  return path


def method_legend(fig, axes, key: Callable[[str], tuple], fontsize: int) -> None:
  """One legend on the figure's right for every method that appears in any of `axes`."""
  handles, labels = [], []
  for ax in axes:
    for h, l in zip(*ax.get_legend_handles_labels()):
      if l not in labels:
        handles, labels = handles + [h], labels + [l]
  order = sorted(range(len(labels)), key=lambda i: key(labels[i]))
  fig.legend(
      [handles[i] for i in order],
      [labels[i] for i in order],
      loc='center right',
      fontsize=fontsize,
      frameon=False,
  )


def stats(values: list[float]) -> tuple[float, float, int]:
  """Mean, sample std (0 for one value) and count."""
  a = np.asarray(values, dtype=np.float64)
  return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0, len(a)


def pct(mean: float, std: float | None = None, n: int = 1) -> str:
  """An accuracy in percent, with its std when there is more than one value."""
  if std is None or n < 2:
    return f'{100 * mean:.1f}'
  return f'{100 * mean:.1f} ± {100 * std:.1f}'


def training_minutes(records: list[dict]) -> str:
  return (
      f"{len(records)} runs, {sum(r.get('wall_seconds', 0.0) for r in records) / 60:.1f} min "
      f'of training (sum of run wall times)'
  )


def page(meta: dict, body: str, plots: list[str]) -> Report:
  """A reproduction's report: the suite's title, a quick-variant note, body, figures.

  The terminal shows the whole page.
  """
  title = meta.get('title') or meta['report']
  quick = (
      '\n_Quick variant: tiny models and steps; the numbers only show that it runs._\n'
      if meta.get('quick')
      else ''
  )
  text = f'# {title}\n{quick}\n{body.rstrip()}\n'
  for p in plots:
    text += f'\n![{os.path.basename(p)[:-4]}]({os.path.basename(p)})\n'
  return Report(text, plots, text)


def method_key(order: Sequence[str]) -> Callable[[str], tuple[int, str]]:
  """Sorts methods in the suite's order; methods it does not list come last, by name."""
  index = {m: i for i, m in enumerate(order)}
  return lambda method: (index.get(method, len(index)), '' if method in index else method)


def size_key(size: int) -> tuple[bool, int]:
  return size == 0, size  # 0 means "all the data": the largest, so it sorts last


def size_label(size: int) -> str:
  return 'all' if size == 0 else str(size)


def fmt_flops(x: float) -> str:
  if not math.isfinite(x):
    return '-'
  for scale, unit in (
      (1e15, 'PFLOP'),
      (1e12, 'TFLOP'),
      (1e9, 'GFLOP'),
      (1e6, 'MFLOP'),
      (1e3, 'kFLOP'),
  ):
    if x >= scale:
      v = x / scale
      return f'{v:.1f} {unit}' if v < 10 else f'{v:.0f} {unit}'
  return f'{x:.0f} FLOP'


def fmt_seconds(x: float) -> str:
  return f'{x:.1f} s' if math.isfinite(x) else '-'
