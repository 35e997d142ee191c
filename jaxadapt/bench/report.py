"""Turns a bench's `results.jsonl` into tables (markdown, terminal) and plots.

Every output is a pure function of the records: rows and columns are sorted,
floats are averaged in seed order and nothing time-dependent is written, so
the same results file always gives a byte-identical `report.md`.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable

import numpy as np
from jaxadapt.errors import UserError

METHOD_ORDER = (
    'scratch',
    'linear_probe',
    'linear_probe_fast',
    'partial_ft',
    'full_ft',
    'lora',
    'bitfit',
    'student_alone',
    'distill',
)
UPSTREAM_TASK = 'upstream'
_REQUIRED = ('task', 'method', 'examples_per_class', 'seed', 'test_accuracy')


def load_results(path: str | os.PathLike) -> list[dict]:
  """Reads one JSON object per line; blank lines are skipped."""
  if not os.path.exists(path):
    raise UserError(f'no results file {path}: run `jaxadapt bench --suite ... --out DIR` first')
  records = []
  with open(path, encoding='utf-8') as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise UserError(f'{path}:{lineno}: malformed JSON ({e.msg})') from None
      if not isinstance(record, dict):
        raise UserError(f'{path}:{lineno}: expected a JSON object, got {type(record).__name__}')
      missing = [k for k in _REQUIRED if k not in record]
      if missing:
        raise UserError(f'{path}:{lineno}: record lacks {", ".join(missing)}')
      records.append(record)
  return records


def latest(records: Iterable[dict]) -> list[dict]:
  """One record per cell: a cell run twice (a resumed bench) keeps its last record."""
  by_cell: dict[Any, dict] = {}
  for r in records:
    key = r.get('cell') or (r['task'], r['method'], r['examples_per_class'], r['seed'])
    by_cell.pop(key, None)  # re-insert so the dict order follows the last occurrence
    by_cell[key] = r
  return list(by_cell.values())


def _adaptation_runs(records: Iterable[dict]) -> list[dict]:
  """The latest record of every cell but the upstream run."""
  return latest(r for r in records if r['task'] != UPSTREAM_TASK)


def _method_key(method: str) -> tuple[int, str]:
  if method in METHOD_ORDER:
    return METHOD_ORDER.index(method), ''
  return len(METHOD_ORDER), method


def _size_key(size: int) -> tuple[bool, int]:
  return size == 0, size  # 0 means "all the data": the largest, so it sorts last


def _mean(rs: list[dict], key: str) -> float:
  values = [float(r[key]) for r in rs if r.get(key) is not None]
  return float(np.mean(values)) if values else math.nan


def aggregate(records: Iterable[dict]) -> list[dict]:
  """One row per (task, method, examples_per_class): seed means (and accuracy std)."""
  groups: dict[tuple, list[dict]] = {}
  for r in _adaptation_runs(records):
    groups.setdefault((r['task'], r['method'], int(r['examples_per_class'])), []).append(r)
  rows = []
  for key in sorted(groups, key=lambda k: (k[0], _method_key(k[1]), _size_key(k[2]))):
    task, method, size = key
    rs = sorted(groups[key], key=lambda r: r['seed'])  # fixed summation order
    acc = np.array([float(r['test_accuracy']) for r in rs])
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
            'test_accuracy_mean': float(acc.mean()),
            'test_accuracy_std': float(acc.std(ddof=0)),
            'train_flops': _mean(rs, 'train_flops'),
            'wall_seconds': _mean(rs, 'wall_seconds'),
            'examples_seen': _mean(rs, 'examples_seen'),
            'trainable_fraction': float(np.mean(fraction)) if fraction else math.nan,
            'opt_state_bytes': _mean(rs, 'opt_state_bytes'),
            'pretrained': any(bool(r.get('pretrained')) for r in rs),
            'n_seeds': len(rs),
        }
    )
  return rows


def _size_label(size: int) -> str:
  return 'all' if size == 0 else str(size)


def _fmt_flops(x: float) -> str:
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


def _fmt_seconds(x: float) -> str:
  return f'{x:.1f} s' if math.isfinite(x) else '-'


def _task_tables(records: Iterable[dict], threshold: float) -> dict[str, dict]:
  """Per task: its sizes, best mean accuracy and one summary row per method."""
  by_task: dict[str, dict[str, dict[int, dict]]] = {}
  for row in aggregate(records):
    by_task.setdefault(row['task'], {}).setdefault(row['method'], {})[
        row['examples_per_class']
    ] = row
  tables = {}
  for task in sorted(by_task):
    methods = by_task[task]
    sizes = sorted({s for cells in methods.values() for s in cells}, key=_size_key)
    best = max(c['test_accuracy_mean'] for cells in methods.values() for c in cells.values())
    rows = []
    for method in sorted(methods, key=_method_key):
      cells = methods[method]
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


def _fmt_acc(cell: dict | None, sep: str = ' ± ') -> str:
  if cell is None:
    return '-'
  return f"{100 * cell['test_accuracy_mean']:.1f}{sep}{100 * cell['test_accuracy_std']:.1f}"


def _upstream_lines(records: Iterable[dict]) -> list[str]:
  ups = sorted(
      (r for r in records if r['task'] == UPSTREAM_TASK),
      key=lambda r: (str(r.get('method')), r.get('seed', 0)),
  )
  if not ups:
    return ['Upstream pre-training: no record in this results file.']
  return [
      f"Upstream pre-training (`{r['method']}`, model {r.get('model', '?')}, seed "
      f"{r.get('seed', '?')}): test accuracy {100 * float(r['test_accuracy']):.1f}%, "
      f"{_fmt_seconds(float(r.get('wall_seconds', math.nan)))} wall time."
      for r in ups
  ]


def markdown(records: Iterable[dict], threshold: float = 0.9) -> str:
  """The report: a header paragraph, then one table per task."""
  records = list(records)
  runs = _adaptation_runs(records)
  seeds = sorted({r['seed'] for r in runs})
  tables = _task_tables(runs, threshold)
  out = [
      '# Adaptation benchmark',
      '',
      f'Each table has one row per method on one downstream task. **data needed** is the '
      f"smallest number of training examples per class at which the method's mean test "
      f'accuracy reaches {threshold:g} x the best mean accuracy of any method on that task '
      f'at any data size ("all" = the whole training set). **compute** is the compiled '
      f'FLOPs of one train step (XLA cost analysis) x the number of steps; compute, time, '
      f'trainable share of the parameters and optimizer state are seed means at the '
      f"method's largest data size. The numbered columns are test accuracy (%), mean ± "
      f'std over seeds, at that many examples per class.',
      '',
      f'{len(runs)} run{"s" * (len(runs) != 1)}, {len(seeds)} seed{"s" * (len(seeds) != 1)} '
      f'({", ".join(str(s) for s in seeds) or "none"}).',
      '',
  ]
  out += _upstream_lines(records)
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
  if not tables:
    out += ['', 'No adaptation runs in this results file.']
  return '\n'.join(out) + '\n'


def terminal_table(records: Iterable[dict], threshold: float = 0.9) -> str:
  """A compact fixed-width table (all tasks) to print at the end of a bench run."""
  tables = _task_tables(records, threshold)
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


def plots(records: Iterable[dict], out_dir: str | os.PathLike) -> list[str]:
  """Writes accuracy_vs_data.png and accuracy_vs_flops.png; returns their paths."""
  # Imported here so `import report` stays cheap; Figure + Agg canvas avoids pyplot's global state.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  rows = aggregate(records)
  if not rows:
    return []
  tasks = sorted({r['task'] for r in rows})
  methods = sorted({r['method'] for r in rows}, key=_method_key)
  colour = {m: f'C{i % 10}' for i, m in enumerate(methods)}  # same colour in every subplot
  finite = [r['examples_per_class'] for r in rows if r['examples_per_class'] > 0]
  all_x = 2 * max(finite) if finite else 1  # where "all" (size 0) sits on the log axis

  def series(task: str, method: str) -> list[dict]:
    return sorted(
        (r for r in rows if r['task'] == task and r['method'] == method),
        key=lambda r: _size_key(r['examples_per_class']),
    )

  def new_figure() -> tuple[Any, list]:
    fig = Figure(figsize=(5.5 * len(tasks) + 2, 4.5), dpi=120)
    FigureCanvasAgg(fig)
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
    handles, labels = [], []
    for ax in axes:  # one legend for the figure, with every method that appears anywhere
      for h, l in zip(*ax.get_legend_handles_labels()):
        if l not in labels:
          handles, labels = handles + [h], labels + [l]
    order = sorted(range(len(labels)), key=lambda i: _method_key(labels[i]))
    fig.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc='center right',
        fontsize=10,
        frameon=False,
    )
    fig.suptitle(title, fontsize=13)
    fig.subplots_adjust(
        left=0.07, right=1 - 1.9 / fig.get_figwidth(), bottom=0.14, top=0.86, wspace=0.25
    )
    path = os.path.join(os.fspath(out_dir), name)
    fig.savefig(path, dpi=120, metadata={'Software': None})  # no version string: stable bytes
    return path

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


def write_report(results_dir: str | os.PathLike) -> tuple[str, list[str]]:
  """Reads <dir>/results.jsonl; writes <dir>/report.md and the plots next to it."""
  records = load_results(os.path.join(os.fspath(results_dir), 'results.jsonl'))
  paths = plots(records, results_dir)
  text = markdown(records)
  if paths:
    text += '\n## Plots\n\n' + ''.join(
        f'![{os.path.basename(p)[:-4].replace("_", " ")}]({os.path.basename(p)})\n\n' for p in paths
    )
    text = text.rstrip('\n') + '\n'
  with open(os.path.join(os.fspath(results_dir), 'report.md'), 'w', encoding='utf-8') as f:
    f.write(text)
  return text, paths
