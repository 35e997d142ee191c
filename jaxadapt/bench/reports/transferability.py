"""Transferability report (Yosinski et al. 2014, Fig. 2): accuracy on task B vs copied layers n.

Tags: split, variant (baseA | baseB | BnB | BnB+ | AnB | AnB+), n. The tables give the mean
over class splits and the change vs the same split's baseB; the figure plots both.
"""

from __future__ import annotations

import numpy as np

from jaxadapt.bench.reports import common

VARIANTS = ('baseB', 'BnB', 'BnB+', 'AnB', 'AnB+')  # the paper's order and names


def write(records: list[dict], meta: dict, out: str) -> common.Report:
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

  base = common.stats(acc('baseB')) if acc('baseB') else (float('nan'), 0.0, 0)
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
      + f'); {common.training_minutes(records)}.',
      '',
      '| variant | ' + ' | '.join(f'n={n}' for n in ns) + ' |',
      '|---|' + '---:|' * len(ns),
      f'| baseB | {common.pct(base[0])} |' + ' |' * (len(ns) - 1),
  ]
  for v in VARIANTS[1:]:
    cells = [common.pct(float(np.mean(a))) if (a := acc(v, n)) else '' for n in ns]
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
      m, sd, k = common.stats(d) if d else (0.0, 0.0, 0)
      cells.append('' if not d else f'{100 * m:+.1f}' + (f' ± {100 * sd:.1f}' if k > 1 else ''))
    lines.append(f'| {v} | ' + ' | '.join(cells) + ' |')
  if meta.get('published'):
    lines += ['', 'Published (ImageNet, 8-layer AlexNet-style network):', '']
    order = sorted(meta['published'], key=lambda k: VARIANTS.index(k) if k in VARIANTS else 99)
    lines += [f"- {k}: {meta['published'][k]}" for k in order]

  # Left: the paper's Fig. 2 (absolute accuracy, every run a faint point). Right: the same
  # runs minus their split's baseB, which removes the spread between easy and hard splits.
  fig = common.figure(13, 4.8)
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
  return common.page(meta, '\n'.join(lines), [common.save(fig, out, 'transferability.png')])
