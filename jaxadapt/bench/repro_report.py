"""Reports for run-list (reproduction) suites: our numbers beside the paper's, and its figure.

`results.jsonl` holds one record per run with the run's `tags`; `suite.json`
names the report kind and carries the published numbers. Each kind is a pure
function of those two (no timestamps), so `jaxadapt report` rebuilds the same
report.md byte for byte:

  transferability  Yosinski et al. 2014: accuracy vs copied layers n for
                   BnB, BnB+, AnB, AnB+ and baseB (tags: split, variant, n)
  table            a rows x columns accuracy table, mean ± std over seeds,
                   with the published value in each cell (tags named in
                   suite.json 'table': {'rows': tag, 'columns': tag})
  distillation     Hinton et al. 2015: teacher, student alone, distilled
                   students by temperature and the share of the gap closed
                   (tags: role = teacher | alone | distilled, temperature)
"""

from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np
from etils import epath

from jaxadapt.bench import report, runner
from jaxadapt.errors import UserError

VARIANTS = ('baseB', 'BnB', 'BnB+', 'AnB', 'AnB+')  # the paper's order and names


def write_report(results_dir: str | os.PathLike) -> tuple[str, list[str]]:
  """Reads results.jsonl + suite.json in `results_dir`; writes report.md (+ PNGs)."""
  out = os.fspath(results_dir)
  meta_path = os.path.join(out, 'suite.json')
  if not os.path.exists(meta_path):
    raise FileNotFoundError(
        f'{out} has no suite.json: run `jaxadapt bench --suite ... --out {out}` ' f'first'
    )
  with open(meta_path, encoding='utf-8') as f:
    meta = json.load(f)
  if meta['report'] not in KINDS:
    raise UserError(f"suite.json: unknown report '{meta['report']}'; known: {', '.join(KINDS)}")
  records = report.latest(runner.read_results(epath.Path(out) / 'results.jsonl'))
  text, plots = KINDS[meta['report']](records, meta, out)
  title = meta.get('title') or meta['report']
  quick = (
      '\n_Quick variant: tiny models and steps; the numbers only show that it runs._\n'
      if meta.get('quick')
      else ''
  )
  text = f'# {title}\n{quick}\n{text.rstrip()}\n'
  for p in plots:
    text += f'\n![{os.path.basename(p)[:-4]}]({os.path.basename(p)})\n'
  with open(os.path.join(out, 'report.md'), 'w', encoding='utf-8') as f:
    f.write(text)
  return text, plots


def is_repro_results(results_dir: str | os.PathLike) -> bool:
  return os.path.exists(os.path.join(os.fspath(results_dir), 'suite.json'))


# ------------------------------------------------------------------ helpers


def _stats(values: list[float]) -> tuple[float, float, int]:
  a = np.asarray(values, dtype=np.float64)
  return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0, len(a)


def _pct(mean: float, std: float | None = None, n: int = 1) -> str:
  if std is None or n < 2:
    return f'{100 * mean:.1f}'
  return f'{100 * mean:.1f} ± {100 * std:.1f}'


def _minutes(records: list[dict]) -> str:
  total = sum(r.get('wall_seconds', 0.0) for r in records)
  return f'{len(records)} runs, {total / 60:.1f} min of training (sum of run wall times)'


def _figure(width: float, height: float):
  # Figure + Agg canvas instead of pyplot: no global state, safe in tests.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(width, height), dpi=120)
  FigureCanvasAgg(fig)
  return fig


def _save(fig, out: str, name: str) -> str:
  path = os.path.join(out, name)
  fig.savefig(path, dpi=120, metadata={'Software': None})  # no version string: stable bytes
  return path


# ---------------------------------------------------------- transferability


def transferability(records: list[dict], meta: dict, out: str) -> tuple[str, list[str]]:
  """Yosinski et al. 2014, Fig. 2: test accuracy on task B vs the number n of copied layers."""
  runs = [r for r in records if r['tags'].get('variant') in VARIANTS]
  ns = sorted({r['tags']['n'] for r in runs if r['tags']['variant'] != 'baseB'})
  splits = sorted({r['tags']['split'] for r in runs})

  def acc(variant: str, n: int | None = None) -> list[float]:
    return [
        r['test_accuracy']
        for r in runs
        if r['tags']['variant'] == variant and (n is None or r['tags'].get('n') == n)
    ]

  base = _stats(acc('baseB')) if acc('baseB') else (float('nan'), 0.0, 0)
  base_by_split = {
      r['tags']['split']: r['test_accuracy'] for r in runs if r['tags']['variant'] == 'baseB'
  }

  def change(variant: str, n: int) -> list[float]:
    """Accuracy minus the same split's baseB: splits differ in difficulty, pairs do not."""
    return [
        r['test_accuracy'] - base_by_split[r['tags']['split']]
        for r in runs
        if r['tags']['variant'] == variant
        and r['tags'].get('n') == n
        and r['tags']['split'] in base_by_split
    ]

  lines = [
      f'Test accuracy on task B, mean over {len(splits)} class splits '
      f'(baseB per split: '
      + ', '.join(f'{100 * base_by_split[k]:.1f}' for k in sorted(base_by_split))
      + f'); {_minutes(records)}.',
      '',
      '| variant | ' + ' | '.join(f'n={n}' for n in ns) + ' |',
      '|---|' + '---:|' * len(ns),
      f'| baseB | {_pct(base[0])} |' + ' |' * (len(ns) - 1),
  ]
  for v in VARIANTS[1:]:
    cells = [_pct(float(np.mean(a))) if (a := acc(v, n)) else '' for n in ns]
    lines.append(f'| {v} | ' + ' | '.join(cells) + ' |')
  lines += [
      '',
      "Change vs the same split's baseB, percentage points (mean ± std over splits):",
      '',
      '| variant | ' + ' | '.join(f'n={n}' for n in ns) + ' |',
      '|---|' + '---:|' * len(ns),
  ]
  for v in VARIANTS[1:]:
    cells = []
    for n in ns:
      d = change(v, n)
      m, sd, k = _stats(d) if d else (0.0, 0.0, 0)
      cells.append('' if not d else f'{100 * m:+.1f}' + (f' ± {100 * sd:.1f}' if k > 1 else ''))
    lines.append(f'| {v} | ' + ' | '.join(cells) + ' |')
  if meta.get('published'):
    lines += ['', 'Published (ImageNet, 8-layer AlexNet-style network):', '']
    order = sorted(meta['published'], key=lambda k: VARIANTS.index(k) if k in VARIANTS else 99)
    lines += [f"- {k}: {meta['published'][k]}" for k in order]

  # Left: the paper's Fig. 2 (absolute accuracy, every run a faint point). Right: the same
  # runs minus their split's baseB, which removes the spread between easy and hard splits.
  fig = _figure(13, 4.8)
  axes = fig.subplots(1, 2)
  style = {
      'BnB': ('C0', 'o', '-'),
      'BnB+': ('C0', 'o', '--'),
      'AnB': ('C3', 's', '-'),
      'AnB+': ('C3', 's', '--'),
  }
  offset = {'BnB': -0.15, 'BnB+': -0.05, 'AnB': 0.05, 'AnB+': 0.15}
  for r in runs:
    v = r['tags']['variant']
    if v == 'baseA':
      continue
    x = 0 if v == 'baseB' else r['tags']['n'] + offset[v]
    c, m, _ = style.get(v, ('k', 'D', ''))
    axes[0].plot(x, r['test_accuracy'], m, color=c, alpha=0.3, markersize=4)
    if v != 'baseB' and r['tags']['split'] in base_by_split:
      axes[1].plot(
          x,
          100 * (r['test_accuracy'] - base_by_split[r['tags']['split']]),
          m,
          color=c,
          alpha=0.3,
          markersize=4,
      )
  axes[0].axhline(base[0], color='k', lw=1, ls=':', label='baseB')
  axes[1].axhline(0.0, color='k', lw=1, ls=':', label='baseB')
  for v, (c, m, ls) in style.items():
    pts = [(n, np.mean(a)) for n in ns if (a := acc(v, n))]
    if pts:
      axes[0].plot(*zip(*pts), marker=m, color=c, ls=ls, label=v)
    pts = [(n, 100 * np.mean(d)) for n in ns if (d := change(v, n))]
    if pts:
      axes[1].plot(*zip(*pts), marker=m, color=c, ls=ls, label=v)
  for ax, ylabel in zip(axes, ('test accuracy on B', 'change vs baseB of the same split (points)')):
    ax.set_xticks([0, *ns])
    ax.set_xlabel('layer n at which the network is chopped and retrained')
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
  axes[0].legend(fontsize=9, frameon=False, ncol=5, loc='lower left')
  fig.suptitle(meta.get('title') or 'Transferability of features', fontsize=12)
  fig.tight_layout()
  return '\n'.join(lines), [_save(fig, out, 'transferability.png')]


# -------------------------------------------------------------------- table


def table(records: list[dict], meta: dict, out: str) -> tuple[str, list[str]]:
  """Rows x columns of test accuracy (mean ± std over seeds) beside the published values."""
  spec = meta.get('table', {})
  row_tag, col_tag = spec.get('rows', 'model'), spec.get('columns', 'variant')
  records = [dict(r, tags={row_tag: '-', col_tag: '-', **r['tags']}) for r in records]  # untagged
  rows = list(dict.fromkeys(r['tags'][row_tag] for r in records))
  cols = list(dict.fromkeys(r['tags'][col_tag] for r in records))
  published = meta.get('published', {})
  seeds = sorted({r['tags'].get('seed', 0) for r in records})
  lines = [
      f'Test accuracy, ours (mean ± std over {len(seeds)} seed(s)) / published; '
      f'{_minutes(records)}.',
      '',
      f'| {row_tag} | ' + ' | '.join(str(c) for c in cols) + ' |',
      '|---|' + '---:|' * len(cols),
  ]
  for row in rows:
    cells = []
    for col in cols:
      a = [
          r['test_accuracy']
          for r in records
          if r['tags'][row_tag] == row and r['tags'][col_tag] == col
      ]
      ours = _pct(*_stats(a)) if a else '-'
      paper = published.get(str(row), {}).get(str(col))
      cells.append(f'{ours} / {100 * paper:.0f}' if paper is not None else ours)
    lines.append(f'| {row} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines), []


# ------------------------------------------------------------- distillation


def distillation(records: list[dict], meta: dict, out: str) -> tuple[str, list[str]]:
  """Teacher, student alone and distilled students by temperature; share of the gap closed."""
  by_role = lambda role: [r for r in records if r['tags'].get('role') == role]
  teacher, alone, distilled = by_role('teacher'), by_role('alone'), by_role('distilled')
  t_acc = _stats([r['test_accuracy'] for r in teacher]) if teacher else None
  a_acc = _stats([r['test_accuracy'] for r in alone]) if alone else None
  temps = sorted({r['tags']['temperature'] for r in distilled})
  params = lambda rs: f"{rs[0]['total_params']:,}" if rs else '-'
  alone_by_seed = {r['tags'].get('seed', 0): r['test_accuracy'] for r in alone}
  lines = [
      f'{_minutes(records)}. Accuracy mean ± std over seeds; "beats alone" counts the '
      f'seeds where the distilled student beats the student alone of the same seed.',
      '',
      '| model | params | test accuracy | test errors (of N) | gap closed | beats alone |',
      '|---|---:|---:|---:|---:|---:|',
  ]
  n_test = meta.get('test_examples')

  def errors(mean: float) -> str:
    return f'{(1 - mean) * n_test:.0f}' if n_test else '-'

  if t_acc:
    lines.append(f'| teacher | {params(teacher)} | {_pct(*t_acc)} | {errors(t_acc[0])} | | |')
  if a_acc:
    lines.append(
        f'| student alone | {params(alone)} | {_pct(*a_acc)} | {errors(a_acc[0])} | 0% | |'
    )
  curve = []
  for t in temps:
    rs = [r for r in distilled if r['tags']['temperature'] == t]
    m = _stats([r['test_accuracy'] for r in rs])
    gap = (
        (m[0] - a_acc[0]) / (t_acc[0] - a_acc[0])
        if t_acc and a_acc and t_acc[0] != a_acc[0]
        else float('nan')
    )
    curve.append((t, m, gap))
    paired = [
        r['test_accuracy'] > alone_by_seed[r['tags'].get('seed', 0)]
        for r in rs
        if r['tags'].get('seed', 0) in alone_by_seed
    ]
    lines.append(
        f'| distilled, T={t:g} | {params(rs)} | {_pct(*m)} | {errors(m[0])} | '
        f'{100 * gap:.0f}% | {sum(paired)} of {len(paired)} |'
    )
  if n_test:
    lines[2] = lines[2].replace('of N', f'of {n_test:,}')
  if meta.get('published'):
    lines += ['', 'Published (Hinton, Vinyals and Dean 2015):', '']
    lines += [f'- {k}: {v}' for k, v in meta['published'].items()]
  if not curve:
    return '\n'.join(lines), []
  fig = _figure(6.5, 4.3)
  ax = fig.add_subplot(1, 1, 1)
  ax.set_xscale('log')
  x = [t for t, _, _ in curve]
  ax.errorbar(
      x,
      [m[0] for _, m, _ in curve],
      yerr=[m[1] for _, m, _ in curve],
      marker='o',
      capsize=3,
      color='C0',
      label='distilled student',
  )
  if t_acc:
    ax.axhline(t_acc[0], color='C3', ls='--', label='teacher')
  if a_acc:
    ax.axhline(a_acc[0], color='k', ls=':', label='student alone')
  ax.set_xticks(x, [f'{t:g}' for t in x])
  ax.minorticks_off()
  ax.set_xlabel('temperature T')
  ax.set_ylabel('test accuracy')
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=9, frameon=False)
  ax.set_title(meta.get('title') or 'Distillation', fontsize=11)
  fig.tight_layout()
  return '\n'.join(lines), [_save(fig, out, 'distillation_vs_temperature.png')]


KINDS: dict[str, Callable[[list[dict], dict, str], tuple[str, list[str]]]] = {
    'transferability': transferability,
    'table': table,
    'distillation': distillation,
}
