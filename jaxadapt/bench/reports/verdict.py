"""The adaptation report's opening section and terminal lines: "Which approach should I use?"

Renders bench/verdict.py (the logic) as markdown tables, a few terminal lines and
verdict.png (accuracy vs training FLOPs per task and data size, the Pareto front marked).
"""

from __future__ import annotations

import math
import os
from typing import Sequence

from jaxadapt.bench import verdict as verdict_lib
from jaxadapt.bench.reports import common

HEADING = '## Which approach should I use?'
FIGURE = 'verdict.png'


def _acc(cell: dict, std: bool = True) -> str:
  text = f"{100 * cell['accuracy']:.1f}"
  if std and cell['n_seeds'] > 1:
    text += f" ± {100 * cell['std']:.1f}"
  return text


def _cost(cell: dict) -> str:
  return f"{common.fmt_flops(cell['train_flops'])}, {common.fmt_seconds(cell['wall_seconds'])}"


def _budget_label(name: str, limit: float) -> str:
  return f'{name} (any)' if math.isinf(limit) else f'{name} (≤ {common.fmt_flops(limit)})'


def _size_words(size: int) -> str:
  return 'all data' if size == 0 else f'{size}/class'


def _tied_text(v: dict) -> str:
  parts = []
  for e in v['tied']:
    c = e['cell']
    if e['test'] == 'paired':
      p = f"; p = {e['p']:.2g}"
    else:  # fewer than two paired seeds beside a tested best: say why there is no p
      p = '' if v['one_seed'] else '; unpaired: within 1 point, not tested'
    parts.append(f"{c['method']} {_acc(c)} ({_cost(c)}{p})")
  return ', '.join(parts) or 'none'


def markdown_lines(result: dict[str, dict], with_figure: bool) -> list[str]:
  """The section: the rule, then per task a best/tied table and a size x budget table."""
  lines = [
      HEADING,
      '',
      'For each task and data size (examples per class): the **best** method, by mean test '
      'accuracy of its setting chosen on validation, and every method **not significantly '
      f'worse**: a one-sided paired t-test over seeds on the per-seed test-accuracy '
      f'differences keeps a method when p ≥ {verdict_lib.ALPHA:g} (no correction for '
      'multiple comparisons). With one seed there is no significance test: the methods '
      f'within {100 * verdict_lib.TOLERANCE:g} point of the best are listed. Cost is training '
      "FLOPs and wall time (seed means) of the method's own runs, a distilled student's "
      'teacher included; the upstream pre-training shared by the pre-trained methods is not '
      'counted. **Compute budgets** per task: low = at most the first tertile of the training '
      "FLOPs of all the task's cells (every method at every size), moderate = at most the "
      'second tertile, high = no limit; each budget column names the best method whose '
      'training FLOPs fit it.',
  ]
  for task, t in result.items():
    lines += ['', f'### Task: {task}', '']
    one_seed = any(v['one_seed'] for v in t['verdicts'].values())
    tied_head = (
        'within 1 point (one seed: no significance test)'
        if one_seed
        else ('not significantly worse')
    )
    lines += [
        f'| examples per class | best: test accuracy % (training FLOPs, time) | {tied_head} |',
        '|---|---|---|',
    ]
    for size in t['sizes']:
      v = t['verdicts'][size]
      b = v['best']
      lines.append(
          f"| {common.size_label(size)} | **{b['method']}** {_acc(b)} ({_cost(b)}) "
          f'| {_tied_text(v)} |'
      )
    head = [_budget_label(name, t['budgets'][name]) for name in verdict_lib.BUDGETS]
    lines += [
        '',
        '| examples per class | ' + ' | '.join(f'{h} compute' for h in head) + ' |',
        '|---|' + '---|' * len(head),
    ]
    for size in t['sizes']:
      row = [
          f"{c['method']} {_acc(c, std=False)}" if c else 'nothing fits'
          for c in (t['by_budget'][size][name] for name in verdict_lib.BUDGETS)
      ]
      lines.append(f'| {common.size_label(size)} | ' + ' | '.join(row) + ' |')
  if with_figure:
    lines += [
        '',
        f'![verdict]({FIGURE})',
        '',
        'Test accuracy against training FLOPs per task and data size: the line joins the '
        'Pareto front (no method is both cheaper and more accurate), the star is the best.',
    ]
  return lines


def summary_lines(result: dict[str, dict]) -> list[str]:
  """What `jaxadapt report` prints: per task and size the best and the tied, then budgets."""
  lines = ['Which approach should I use? (best mean test accuracy; "or": not significantly worse)']
  for task, t in result.items():
    for size in t['sizes']:
      v = t['verdicts'][size]
      b = v['best']
      tied = ', '.join(f"{e['cell']['method']} {_acc(e['cell'], False)}" for e in v['tied'])
      note = ' (one seed: no significance test; within 1 point)' if v['one_seed'] else ''
      lines.append(
          f"  {task}, {_size_words(size)}: {b['method']} {_acc(b)}% ({_cost(b)})"
          + (f'; or {tied}{note}' if tied else '')
      )
    for name in verdict_lib.BUDGETS:
      picks = ', '.join(
          f"{common.size_label(s)}: {c['method'] if c else '-'}"
          for s, c in ((s, t['by_budget'][s][name]) for s in t['sizes'])
      )
      lines.append(f"  {task}, {_budget_label(name, t['budgets'][name])} compute: {picks}")
  return lines


def figure(
    result: dict[str, dict], out_dir: str | os.PathLike, methods: Sequence[str] = ()
) -> str | None:
  """verdict.png: rows tasks, columns sizes; accuracy vs FLOPs, the Pareto front joined."""
  from matplotlib.ticker import NullFormatter  # here: importing the report stays cheap

  tasks = list(result)
  if not tasks:
    return None
  sizes = sorted({s for t in result.values() for s in t['sizes']}, key=common.size_key)
  names = sorted(
      {c['method'] for t in result.values() for cs in t['cells'].values() for c in cs},
      key=common.method_key(methods),
  )
  colour = {m: f'C{i % 10}' for i, m in enumerate(names)}
  fig = common.figure(3.2 * len(sizes) + 2.2, 3.0 * len(tasks) + 0.8)
  axes = fig.subplots(len(tasks), len(sizes), squeeze=False)
  for i, task in enumerate(tasks):
    t = result[task]
    for j, size in enumerate(sizes):
      ax = axes[i][j]
      if size not in t['sizes']:  # a task with less data (max_size)
        ax.set_visible(False)
        continue
      ax.set_xscale('log')
      ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap within a decade
      ax.margins(x=0.15, y=0.1)
      ax.set_title(f'{task}, {_size_words(size)}', fontsize=10)
      ax.grid(True, which='major', alpha=0.3)
      ax.tick_params(labelsize=8)
      cs = [c for c in t['cells'].get(size, []) if c['train_flops'] > 0]  # log axis: no 0
      if not cs:
        continue
      for c in cs:
        ax.scatter(
            c['train_flops'],
            100 * c['accuracy'],
            color=colour[c['method']],
            s=25,
            label=c['method'],
            zorder=3,
        )
      front = verdict_lib.pareto(cs)
      ax.plot(
          [c['train_flops'] for c in front],
          [100 * c['accuracy'] for c in front],
          color='black',
          linewidth=1,
          zorder=2,
      )
      top = t['verdicts'][size]['best']
      ax.scatter(
          top['train_flops'],
          100 * top['accuracy'],
          marker='*',
          s=160,
          facecolor='none',
          edgecolor='black',
          zorder=4,
      )
      span = [c['train_flops'] for c in cs]
      for name in ('low', 'moderate'):  # only inside the points' range: no stretched axes
        if min(span) <= t['budgets'][name] <= max(span):
          ax.axvline(t['budgets'][name], color='grey', linestyle=':', linewidth=1)
      if j == 0:
        ax.set_ylabel('test accuracy (%)', fontsize=9)
      if i == len(tasks) - 1:
        ax.set_xlabel('training FLOPs', fontsize=9)
  common.method_legend(fig, axes.flat, common.method_key(methods), fontsize=9)
  fig.suptitle(
      'Which approach: accuracy vs training compute (dotted: low / moderate budget)', fontsize=11
  )
  fig.subplots_adjust(
      left=0.06, right=1 - 1.9 / fig.get_figwidth(), bottom=0.12, top=0.85, wspace=0.3, hspace=0.5
  )
  os.makedirs(out_dir, exist_ok=True)
  return common.save(fig, os.fspath(out_dir), FIGURE)
