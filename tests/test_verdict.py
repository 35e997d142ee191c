"""The verdict (bench/verdict.py) on synthetic records: which method, tied or worse, budgets."""

import math

import pytest

from jaxadapt.bench import verdict
from jaxadapt.bench.reports import adaptation
from jaxadapt.bench.reports import verdict as verdict_report


def _run(method, seed, test, val=None, flops=1e9, size=10, task='t', grid=None, wall=1.0, **kw):
  tags = dict(task=task, method=method, size=size, seed=seed)
  name = f'{task}/{method}/{size}/{seed}'
  if grid:
    tags['grid'] = grid
    name += '/' + '+'.join(f'{k}={v}' for k, v in grid.items())
  record = {
      'cell': name,
      'tags': tags,
      'test_accuracy': test,
      'val_accuracy': test if val is None else val,
      'train_flops': flops,
      'wall_seconds': wall,
      **kw,
  }
  return dict(record, **tags, examples_per_class=size)


def _only(result, task='t', size=10):
  return result[task]['verdicts'][size]


def test_best_is_the_test_accuracy_of_the_setting_chosen_on_validation():
  """Catches picking the best test accuracy over all grid points (selection on test)."""
  runs = []
  for seed in (0, 1, 2):
    # a: best on validation, 80% test; b: worse on validation but 95% test (must not count).
    runs.append(_run('m', seed, 0.80, val=0.9, grid={'lr': 0.1}))
    runs.append(_run('m', seed, 0.95, val=0.5, grid={'lr': 0.01}))
    runs.append(_run('other', seed, 0.85 + 0.01 * seed))
  v = _only(verdict.verdict(runs))
  assert v['best']['method'] == 'other'
  (m,) = [e['cell'] for e in v['tied'] + v['worse'] if e['cell']['method'] == 'm']
  assert m['accuracy'] == pytest.approx(0.80)


def test_a_significantly_worse_method_is_excluded_and_a_tie_is_kept():
  """Catches listing every method beside the best, or dropping one within the seed noise."""
  best = (0.90, 0.92, 0.91)
  worse = (0.85, 0.88, 0.86)  # 3 to 5 points below in every seed: p < 0.05
  noisy = (0.93, 0.88, 0.90)  # above and below the best: p > 0.05
  runs = [
      _run(m, s, a)
      for m, accs in (('best', best), ('worse', worse), ('noisy', noisy))
      for s, a in enumerate(accs)
  ]
  v = _only(verdict.verdict(runs, ('best', 'worse', 'noisy')))
  assert v['best']['method'] == 'best' and not v['one_seed']
  assert [e['cell']['method'] for e in v['tied']] == ['noisy']
  assert [e['cell']['method'] for e in v['worse']] == ['worse']
  assert v['worse'][0]['p'] < verdict.ALPHA <= v['tied'][0]['p']
  assert v['tied'][0]['test'] == 'paired' and v['tied'][0]['pairs'] == 3
  # The same test by hand: differences (0.05, 0.04, 0.05), t = 0.0467 / (0.00577 / sqrt 3).
  assert v['worse'][0]['p'] == pytest.approx(0.00254, abs=2e-4)


def test_paired_test_pairs_by_seed_and_constant_differences_are_significant():
  a = dict(per_seed={0: 0.9, 1: 0.8, 2: 0.7})
  b = dict(per_seed={0: 0.89, 1: 0.79, 2: 0.69})  # 1 point below in every seed
  assert verdict.paired_p(a, b) == (0.0, 3)  # unpaired, the spread would hide it
  assert verdict.paired_p(a, a) == (1.0, 3)
  p, pairs = verdict.paired_p(a, dict(per_seed={0: 0.5}))
  assert math.isnan(p) and pairs == 1


def test_budgets_filter_by_training_flops():
  """Catches a budget column that ignores cost (always the overall best)."""
  runs = []
  for size, scale in ((1, 1.0), (10, 10.0)):
    runs += [
        _run('cheap', 0, 0.70, flops=1e9 * scale, size=size),
        _run('mid', 0, 0.80, flops=1e10 * scale, size=size),
        _run('dear', 0, 0.90, flops=1e11 * scale, size=size),
    ]
  t = verdict.verdict(runs)['t']
  # Six cells' FLOPs 1e9, 1e10, 1e10, 1e11, 1e11, 1e12: tertiles (lower) 1e10 and 1e11.
  assert t['budgets'] == dict(low=1e10, moderate=1e11, high=math.inf)
  pick = lambda size: {b: c and c['method'] for b, c in t['by_budget'][size].items()}
  assert pick(1) == dict(low='mid', moderate='dear', high='dear')
  assert pick(10) == dict(low='cheap', moderate='mid', high='dear')
  assert verdict.best_within(t['cells'][10], 1e8) is None
  text = '\n'.join(verdict_report.markdown_lines(verdict.verdict(runs), False))
  assert '| 10 | cheap 70.0 | mid 80.0 | dear 90.0 |' in text
  assert 'low (≤ 10 GFLOP) compute | moderate (≤ 100 GFLOP) compute | high (any) compute' in text


def test_one_seed_lists_methods_within_a_point_and_says_there_is_no_test():
  """Catches a significance claim from one seed."""
  runs = [_run('a', 0, 0.900), _run('b', 0, 0.895), _run('c', 0, 0.870)]
  result = verdict.verdict(runs)
  v = _only(result)
  assert v['one_seed'] and v['best']['method'] == 'a'
  assert [e['cell']['method'] for e in v['tied']] == ['b']
  assert [e['cell']['method'] for e in v['worse']] == ['c']
  text = '\n'.join(verdict_report.markdown_lines(result, False))
  assert 'within 1 point (one seed: no significance test)' in text
  assert '| 10 | **a** 90.0 (1.0 GFLOP, 1.0 s) | b 89.5 (1.0 GFLOP, 1.0 s) |' in text
  assert 'p =' not in text
  summary = '\n'.join(verdict_report.summary_lines(result))
  assert 't, 10/class: a 90.0% (1.0 GFLOP, 1.0 s); or b 89.5 (one seed: no significance test' in (
      summary
  )


def test_a_distilled_students_cost_includes_its_teacher():
  """Catches distillation looking cheap because its teacher's training is left out."""
  teacher = _run('full_ft', 0, 0.9, flops=5e9, wall=4.0)
  student = _run(
      'distill',
      0,
      0.8,
      flops=1e9,
      wall=1.0,
      config={'distill': {'teachers': ['/any/results/runs/t/full_ft/10/0']}},
  )
  cells = {c['method']: c for c in verdict.cells([teacher, student])[('t', 10)]}
  assert cells['distill']['train_flops'] == 6e9 and cells['distill']['wall_seconds'] == 5.0
  assert cells['full_ft']['train_flops'] == 5e9


def test_pareto_front():
  cells = [
      dict(method='a', accuracy=0.7, train_flops=1.0),
      dict(method='b', accuracy=0.6, train_flops=2.0),  # dominated by a
      dict(method='c', accuracy=0.9, train_flops=3.0),
      dict(method='d', accuracy=0.9, train_flops=4.0),  # as accurate as c, dearer
  ]
  assert [c['method'] for c in verdict.pareto(cells)] == ['a', 'c']


def test_report_opens_with_the_verdict():
  runs = [_run(m, s, a, flops=f) for m, a, f in (('x', 0.8, 1e9), ('y', 0.7, 1e8)) for s in (0,)]
  text = adaptation.markdown(runs, ('x', 'y'))
  assert text.startswith('# Adaptation benchmark\n\n## Which approach should I use?\n')
  assert text.index('## Which approach') < text.index('## Task: t')


def test_a_method_without_paired_seeds_says_it_was_not_tested():
  """Catches an untested entry shown as if it passed the t-test beside tested ones."""
  runs = [_run('a', s, 0.90 + 0.01 * s) for s in (0, 1, 2)] + [_run('b', 0, 0.905)]
  runs += [_run('c', s, 0.905 - 0.005 * s) for s in (0, 1, 2)]
  result = verdict.verdict(runs)
  text = '\n'.join(verdict_report.markdown_lines(result, False))
  assert 'b 90.5 (1.0 GFLOP, 1.0 s; unpaired: within 1 point, not tested)' in text
  assert 'c 90.0 ± 0.5 (1.0 GFLOP, 1.0 s; p = ' in text
