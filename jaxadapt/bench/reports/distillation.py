"""Distillation report (Hinton et al. 2015): teacher, student alone, distilled students by T.

Tags: role = teacher | alone | distilled, temperature, seed. The table gives the share of the
teacher-student gap each temperature closes and, per temperature, the seeds where the distilled
student beats the student alone of the same seed.
"""

from __future__ import annotations

from jaxadapt.bench.reports import common


def write(records: list[dict], meta: dict, out: str) -> common.Report:
  """Teacher, student alone and distilled students by temperature; share of the gap closed."""
  by_role = lambda role: [r for r in records if r['tags'].get('role') == role]
  teacher, alone, distilled = by_role('teacher'), by_role('alone'), by_role('distilled')
  t_acc = common.stats([r['test_accuracy'] for r in teacher]) if teacher else None
  a_acc = common.stats([r['test_accuracy'] for r in alone]) if alone else None
  temps = sorted({r['tags']['temperature'] for r in distilled})
  params = lambda rs: f"{rs[0]['total_params']:,}" if rs else '-'
  alone_by_seed = {r['tags'].get('seed', 0): r['test_accuracy'] for r in alone}
  lines = [
      f'{common.training_minutes(records)}. Accuracy mean ± std over seeds; "beats alone" '
      f'counts the seeds where the distilled student beats the student alone of the same seed.',
      '',
      '| model | params | test accuracy | test errors (of N) | gap closed | beats alone |',
      '|---|---:|---:|---:|---:|---:|',
  ]
  n_test = meta.get('test_examples')

  def errors(mean: float) -> str:
    return f'{(1 - mean) * n_test:.0f}' if n_test else '-'

  if t_acc:
    lines.append(f'| teacher | {params(teacher)} | {common.pct(*t_acc)} | {errors(t_acc[0])} | | |')
  if a_acc:
    lines.append(
        f'| student alone | {params(alone)} | {common.pct(*a_acc)} | {errors(a_acc[0])} | 0% | |'
    )
  curve = []
  for t in temps:
    rs = [r for r in distilled if r['tags']['temperature'] == t]
    m = common.stats([r['test_accuracy'] for r in rs])
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
        f'| distilled, T={t:g} | {params(rs)} | {common.pct(*m)} | {errors(m[0])} | '
        f'{100 * gap:.0f}% | {sum(paired)} of {len(paired)} |'
    )
  if n_test:
    lines[2] = lines[2].replace('of N', f'of {n_test:,}')
  if meta.get('published'):
    lines += ['', 'Published (Hinton, Vinyals and Dean 2015):', '']
    lines += [f'- {k}: {v}' for k, v in meta['published'].items()]
  if not curve:
    return common.page(meta, '\n'.join(lines), [])
  fig = common.figure(6.5, 4.3)
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
  return common.page(
      meta, '\n'.join(lines), [common.save(fig, out, 'distillation_vs_temperature.png')]
  )
