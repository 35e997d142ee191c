"""Adaptation report: one table per downstream task of every method's accuracy, data and cost.

Reads the runs of a matrix suite (tags task, method, size, seed; the pretraining run has task
`upstream`). Methods are listed in the suite's order (suite.json `methods`). Every output is a
pure function of the records: rows and columns are sorted, floats are averaged in seed order
and nothing time-dependent is written, so the same results file always gives a byte-identical
report.md.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from jaxadapt.bench import results, selection, verdict as verdict_lib
from jaxadapt.bench.reports import common, verdict as verdict_report
from jaxadapt.errors import UserError

UPSTREAM_TASK = 'upstream'
TAGS = ('task', 'method', 'size', 'seed')
# Class-balanced test metrics a suite may report beside accuracy (suite field macro_metric).
MACRO_METRICS = {'macro_f1': 'macro F1', 'macro_accuracy': 'macro accuracy'}


def write(records: list[dict], meta: dict, out: str) -> common.Report:
  """report.md (tables, then the plots) and the terminal table of a matrix suite's runs."""
  methods = meta.get('methods', ())
  result = verdict_lib.verdict(_adaptation_runs(records), methods)
  figure = verdict_report.figure(result, out, methods)
  paths = plots(records, out, methods)
  text = markdown(
      records,
      methods,
      with_figure=figure is not None,
      notes=meta.get('notes', ()),
      macro_metric=meta.get('macro_metric'),
  )
  if paths:
    text += '\n## Plots\n\n' + ''.join(
        f'![{os.path.basename(p)[:-4].replace("_", " ")}]({os.path.basename(p)})\n\n' for p in paths
    )
    text = text.rstrip('\n') + '\n'
  summary = terminal_table(records, methods)
  if result:
    summary += '\n' + '\n'.join(verdict_report.summary_lines(result)) + '\n'
  return common.Report(text, ([figure] if figure else []) + paths, summary)


def _upstream(records: Iterable[dict]) -> list[dict]:
  return [r for r in records if r.get('tags', {}).get('task') == UPSTREAM_TASK]


def _adaptation_runs(records: Iterable[dict]) -> list[dict]:
  """Every run but the upstream one, its tags flattened into it (size as examples_per_class)."""
  runs = []
  for r in results.latest(records):  # a run recorded twice (a resumed bench) counts once
    tags = r.get('tags', {})
    if tags.get('task') == UPSTREAM_TASK:
      continue
    missing = [f'tag {t}' for t in TAGS if t not in tags]
    missing += ['test_accuracy (a test split)'] if r.get('test_accuracy') is None else []
    if missing:
      raise UserError(
          f"run '{r['cell']}' lacks {', '.join(missing)}; the adaptation report reads tags "
          f"{', '.join(TAGS)} (task '{UPSTREAM_TASK}' for the pretraining run) and test_accuracy"
      )
    runs.append(dict(r, **{k: tags[k] for k in TAGS}, examples_per_class=int(tags['size'])))
  return runs


_method_key = common.method_key
_size_key = common.size_key
_size_label = common.size_label
_fmt_flops = common.fmt_flops
_fmt_seconds = common.fmt_seconds


def _mean(rs: list[dict], key: str) -> float:
  values = [float(r[key]) for r in rs if r.get(key) is not None]
  return float(np.mean(values)) if values else math.nan


def aggregate(records: Iterable[dict], methods: Sequence[str] = ()) -> list[dict]:
  """One row per (task, method, examples_per_class): seed means (and accuracy std).

  Rows are sorted by task, then method in the order `methods` lists them, then data size.
  """
  groups: dict[tuple, list[dict]] = {}
  chosen, _ = selection.select(_adaptation_runs(records))  # test accuracy of chosen points only
  for r in chosen:
    groups.setdefault((r['task'], r['method'], r['examples_per_class']), []).append(r)
  rows = []
  method_key = _method_key(methods)
  for key in sorted(groups, key=lambda k: (k[0], method_key(k[1]), _size_key(k[2]))):
    task, method, size = key
    rs = sorted(groups[key], key=lambda r: r['seed'])  # fixed summation order
    mean, std, _ = common.stats([float(r['test_accuracy']) for r in rs])
    macro = {}
    for name in MACRO_METRICS:  # absent from records written before they were recorded
      values = [float(r[f'test_{name}']) for r in rs if r.get(f'test_{name}') is not None]
      m, sd, _ = common.stats(values) if values else (math.nan, math.nan, 0)
      macro.update({f'test_{name}_mean': m, f'test_{name}_std': sd})
    fraction = [
        float(r['trainable_params']) / float(r['total_params'])
        for r in rs
        if r.get('trainable_params') is not None and r.get('total_params')
    ]
    rows.append(
        {
            'task': task,
            'method': method,
            'examples_per_class': size,
            'test_accuracy_mean': mean,
            'test_accuracy_std': std,  # sample std (ddof=1); 0 for one seed
            # Val accuracy still rising over the last fifth of the steps, in any seed.
            'still_rising': any(bool(r.get('still_rising')) for r in rs),
            'train_flops': _mean(rs, 'train_flops'),
            'wall_seconds': _mean(rs, 'wall_seconds'),
            'examples_seen': _mean(rs, 'examples_seen'),
            'trainable_fraction': float(np.mean(fraction)) if fraction else math.nan,
            'opt_state_bytes': _mean(rs, 'opt_state_bytes'),
            'pretrained': any(bool(r.get('pretrained')) for r in rs),
            'n_seeds': len(rs),
            **macro,
        }
    )
  return rows


def _fmt_bytes(x: float) -> str:
  if not math.isfinite(x):
    return '-'
  for scale, unit in ((2**30, 'GiB'), (2**20, 'MiB'), (2**10, 'KiB')):
    if x >= scale:
      return f'{x / scale:.1f} {unit}'
  return f'{x:.0f} B'


def _fmt_percent(fraction: float) -> str:
  if not math.isfinite(fraction):
    return '-'
  pct = 100 * fraction
  # PEFT fractions are often far below 1%; two significant digits keep them apart.
  return f'{pct:.1f}%' if pct >= 1 or pct == 0 else f'{pct:.2g}%'


def _task_tables(
    records: Iterable[dict], methods: Sequence[str], threshold: float
) -> dict[str, dict]:
  """Per task: its sizes, best mean accuracy and one summary row per method."""
  by_task: dict[str, dict[str, dict[int, dict]]] = {}
  for row in aggregate(records, methods):
    by_task.setdefault(row['task'], {}).setdefault(row['method'], {})[
        row['examples_per_class']
    ] = row
  tables = {}
  for task in sorted(by_task):
    by_method = by_task[task]
    sizes = sorted({s for cells in by_method.values() for s in cells}, key=_size_key)
    best = max(c['test_accuracy_mean'] for cells in by_method.values() for c in cells.values())
    rows = []
    for method in sorted(by_method, key=_method_key(methods)):
      cells = by_method[method]
      own_sizes = sorted(cells, key=_size_key)
      reached = [s for s in own_sizes if cells[s]['test_accuracy_mean'] >= threshold * best]
      largest = cells[own_sizes[-1]]  # costs are quoted at the method's largest data size
      rows.append(
          {
              'method': method,
              'cells': cells,
              'largest': largest,
              'model': 'pre-trained' if any(c['pretrained'] for c in cells.values()) else 'new',
              'data_needed': _size_label(reached[0]) if reached else 'not reached',
          }
      )
    tables[task] = {'sizes': sizes, 'best': best, 'rows': rows}
  return tables


RISING = ' ↑'  # marks a cell whose val accuracy was still rising at the end


def _fmt_acc(cell: dict | None, sep: str = ' ± ', metric: str = 'test_accuracy') -> str:
  """Mean, then ± sample std when there is more than one seed, then the unconverged mark."""
  if cell is None or not math.isfinite(cell[f'{metric}_mean']):
    return '-'
  text = f"{100 * cell[f'{metric}_mean']:.1f}"
  if cell['n_seeds'] > 1:
    text += f"{sep}{100 * cell[f'{metric}_std']:.1f}"
  return text + (RISING if cell.get('still_rising') else '')


def _upstream_lines(records: Iterable[dict]) -> list[str]:
  seed = lambda r: r['tags'].get('seed', r.get('config', {}).get('seed', '?'))
  ups = sorted(_upstream(records), key=lambda r: (str(r['tags'].get('method')), str(seed(r))))
  if not ups:
    return ['Upstream pre-training: no record in this results file.']
  return [
      f"Upstream pre-training (`{r['tags'].get('method', '?')}`, model {r.get('model', '?')}, "
      f"seed {seed(r)}): test accuracy {100 * float(r['test_accuracy']):.1f}%, "
      f"{_fmt_seconds(float(r.get('wall_seconds', math.nan)))} wall time."
      for r in ups
  ]


def markdown(
    records: Iterable[dict],
    methods: Sequence[str] = (),
    threshold: float = 0.9,
    with_figure: bool = False,
    notes: Sequence[str] = (),
    macro_metric: str | None = None,
) -> str:
  """The report: the verdict (which approach to use), a header paragraph and the suite's
  `notes`, one table per task (and with `macro_metric`, a table of that class-balanced
  test metric per task).

  `with_figure`: link verdict.png (written by verdict_report.figure) in the verdict.
  """
  records = list(records)
  if macro_metric and macro_metric not in MACRO_METRICS:
    raise UserError(
        f"unknown macro_metric '{macro_metric}' in suite.json; known: {', '.join(MACRO_METRICS)}"
    )
  runs = _adaptation_runs(records)
  seeds = sorted({r['seed'] for r in runs})
  tables = _task_tables(runs, methods, threshold)
  result = verdict_lib.verdict(runs, methods)
  out = ['# Adaptation benchmark', '']
  if result:
    out += [*verdict_report.markdown_lines(result, with_figure), '', '## Method tables', '']
  out += [
      f'Each table has one row per method on one downstream task. **data needed** is the '
      f"smallest number of training examples per class at which the method's mean test "
      f'accuracy reaches {threshold:g} x the best mean accuracy of any method on that task '
      f'at any data size ("all" = the whole training set). **compute** is the compiled '
      f'FLOPs of one train step (XLA cost analysis) x the number of steps; compute, time, '
      f'trainable share of the parameters and optimizer state are seed means at the '
      f"method's largest data size. The numbered columns are test accuracy (%), mean ± "
      f'sample std (ddof=1) over seeds (no ± for one seed), at that many examples per class; '
      f'{RISING.strip()} marks a cell whose validation accuracy was still rising over the last '
      f'fifth of its steps in some seed (not converged: a longer budget could change it).',
      '',
      f'{len(runs)} run{"s" * (len(runs) != 1)}, {len(seeds)} seed{"s" * (len(seeds) != 1)} '
      f'({", ".join(str(s) for s in seeds) or "none"}).',
      '',
  ]
  if notes:  # a suite without an upstream run (an imported model) says so in its notes
    out += [*notes, *([''] + _upstream_lines(records) if _upstream(records) else [])]
  else:
    out += _upstream_lines(records)
  out += ['', *_selection_lines(runs, methods)]
  for task, table in tables.items():
    sizes = table['sizes']
    head = [
        'method',
        'model used',
        'data needed',
        'compute',
        'time',
        'trainable',
        'optimizer state',
    ] + [_size_label(s) for s in sizes]
    out += [
        '',
        f'## Task: {task}',
        '',
        f'Best mean test accuracy: {100 * table["best"]:.1f}%; threshold '
        f'{100 * threshold * table["best"]:.1f}%.',
        '',
        '| ' + ' | '.join(head) + ' |',
        '|' + '---|' * len(head),
    ]
    for row in table['rows']:
      big = row['largest']
      cols = [
          row['method'],
          row['model'],
          row['data_needed'],
          _fmt_flops(big['train_flops']),
          _fmt_seconds(big['wall_seconds']),
          _fmt_percent(big['trainable_fraction']),
          _fmt_bytes(big['opt_state_bytes']),
      ]
      cols += [_fmt_acc(row['cells'].get(s)) for s in sizes]
      out.append('| ' + ' | '.join(cols) + ' |')
    if macro_metric:
      out += _macro_table(table, macro_metric)
  if not tables:
    out += ['', 'No adaptation runs in this results file.']
  return '\n'.join(out) + '\n'


def _macro_table(table: dict, metric: str) -> list[str]:
  """One task's class-balanced test metric, by method and data size (as the accuracy table)."""
  sizes = table['sizes']
  head = ['method'] + [_size_label(s) for s in sizes]
  out = [
      '',
      f'Test {MACRO_METRICS[metric]} (%), mean over classes of the per-class score, so rare '
      'classes count as much as common ones:',
      '',
      '| ' + ' | '.join(head) + ' |',
      '|' + '---|' * len(head),
  ]
  for row in table['rows']:
    cells = [_fmt_acc(row['cells'].get(s), metric=f'test_{metric}') for s in sizes]
    out.append('| ' + ' | '.join([row['method'], *cells]) + ' |')
  return out


def _selection_lines(runs: list[dict], methods: Sequence[str]) -> list[str]:
  """What was tuned on validation and what was chosen, or that nothing was."""
  _, choices = selection.select(runs)
  tuned = [c for c in choices if len(c['scores']) > 1]
  if not tuned:
    return [
        'Settings: one-point grid (each method at its default settings; nothing was selected '
        'on validation).'
    ]
  key = _method_key(methods)
  tuned.sort(key=lambda c: (c['task'], key(c['method']), _size_key(c['examples_per_class'])))
  lines = [
      'Settings chosen on the validation split (best mean val accuracy over seeds; test accuracy '
      'is reported for the chosen setting only):',
      '',
      '| task | method | size | chosen | val accuracy per setting |',
      '|---|---|---|---|---|',
  ]
  for c in tuned:
    chosen = ', '.join(f'{k}={v}' for k, v in c['chosen'].items())
    scores = '; '.join(
        f"{', '.join(f'{k}={v}' for k, v in json.loads(p).items())}: {100 * s:.1f}"
        for p, s in c['scores'].items()
    )
    lines.append(
        f"| {c['task']} | {c['method']} | {_size_label(c['examples_per_class'])} | {chosen} "
        f'| {scores} |'
    )
  return lines


def terminal_table(
    records: Iterable[dict], methods: Sequence[str] = (), threshold: float = 0.9
) -> str:
  """A compact fixed-width table (all tasks) to print at the end of a bench run."""
  tables = _task_tables(records, methods, threshold)
  sizes = sorted({s for t in tables.values() for s in t['sizes']}, key=_size_key)
  lines = [['task', 'method', 'data needed'] + [f'acc@{_size_label(s)}' for s in sizes]]
  for task, table in tables.items():
    for row in table['rows']:
      lines.append(
          [task, row['method'], row['data_needed']]
          + [_fmt_acc(row['cells'].get(s), sep='±') for s in sizes]
      )
  widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
  text = [
      '  '.join(
          c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))
      ).rstrip()
      for line in lines
  ]
  text.insert(1, '-' * len(text[0]))
  return '\n'.join(text) + '\n'


def plots(
    records: Iterable[dict], out_dir: str | os.PathLike, methods: Sequence[str] = ()
) -> list[str]:
  """Writes accuracy_vs_data.png and accuracy_vs_flops.png; returns their paths."""
  rows = aggregate(records, methods)
  if not rows:
    return []
  method_key = _method_key(methods)
  tasks = sorted({r['task'] for r in rows})
  methods = sorted({r['method'] for r in rows}, key=method_key)
  colour = {m: f'C{i % 10}' for i, m in enumerate(methods)}  # same colour in every subplot
  finite = [r['examples_per_class'] for r in rows if r['examples_per_class'] > 0]
  all_x = 2 * max(finite) if finite else 1  # where "all" (size 0) sits on the log axis

  def series(task: str, method: str) -> list[dict]:
    return sorted(
        (r for r in rows if r['task'] == task and r['method'] == method),
        key=lambda r: _size_key(r['examples_per_class']),
    )

  def new_figure() -> tuple[Any, list]:
    fig = common.figure(5.5 * len(tasks) + 2, 4.5)
    axes = list(fig.subplots(1, len(tasks), squeeze=False)[0])
    for ax in axes:  # log scale first: setting it later would reset custom ticks
      ax.set_xscale('log')
    return fig, axes

  def finish(fig, axes, xlabel: str, title: str, name: str) -> str:
    for ax, task in zip(axes, tasks):
      ax.set_title(f'task: {task}', fontsize=12)
      ax.set_xlabel(xlabel, fontsize=11)
      ax.grid(True, which='major', alpha=0.3)
      ax.tick_params(labelsize=10)
    axes[0].set_ylabel('test accuracy', fontsize=11)
    common.method_legend(fig, axes, method_key, fontsize=10)
    fig.suptitle(title, fontsize=13)
    fig.subplots_adjust(
        left=0.07, right=1 - 1.9 / fig.get_figwidth(), bottom=0.14, top=0.86, wspace=0.25
    )
    return common.save(fig, os.fspath(out_dir), name)

  os.makedirs(out_dir, exist_ok=True)
  fig, axes = new_figure()
  for ax, task in zip(axes, tasks):
    for method in methods:
      if not (s := series(task, method)):
        continue
      x = np.array([r['examples_per_class'] or all_x for r in s], dtype=float)
      y = np.array([r['test_accuracy_mean'] for r in s])
      err = np.array([r['test_accuracy_std'] for r in s])
      ax.plot(x, y, marker='o', color=colour[method], label=method)
      ax.fill_between(x, y - err, y + err, color=colour[method], alpha=0.15, linewidth=0)
    ticks = sorted({r['examples_per_class'] for r in rows}, key=_size_key)
    ax.set_xticks([t or all_x for t in ticks], [_size_label(t) for t in ticks])
    ax.minorticks_off()
  paths = [
      finish(
          fig, axes, 'examples per class', 'Test accuracy vs training data', 'accuracy_vs_data.png'
      )
  ]

  fig, axes = new_figure()
  for ax, task in zip(axes, tasks):
    for method in methods:
      if not (s := [r for r in series(task, method) if r['train_flops'] > 0]):  # log: no 0/NaN
        continue
      ax.errorbar(
          [r['train_flops'] for r in s],
          [r['test_accuracy_mean'] for r in s],
          yerr=[r['test_accuracy_std'] for r in s],
          marker='o',
          capsize=3,
          color=colour[method],
          label=method,
      )
  paths.append(
      finish(
          fig, axes, 'training FLOPs', 'Test accuracy vs training compute', 'accuracy_vs_flops.png'
      )
  )
  return paths
