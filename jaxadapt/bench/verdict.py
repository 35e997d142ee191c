"""The verdict: which method to use for a data size and a compute budget, from the records.

Pure functions over the adaptation runs (records with flattened tags task, method,
examples_per_class, seed; every grid point, as the report reads them):

  cells         per (task, size), one cell per method: the test accuracy of the setting
                chosen on validation (selection.py), per seed and averaged, and its cost
  size_verdict  the best cell (highest mean test accuracy) and every cell not
                significantly worse: a one-sided paired t-test over the seeds both ran
                (p >= ALPHA keeps it); with one seed no test, only cells within TOLERANCE
  budgets       per task, the low / moderate training-FLOP budgets: the first and second
                tertiles of the mean training FLOPs of all the task's cells (every method
                at every size); high has no limit
  best_within   the best cell whose mean training FLOPs fit a budget
  pareto        the cells no other cell beats on both accuracy and FLOPs

A cell's cost is its own training (FLOPs, wall time; seed means) plus, for a distilled
student, its teachers' training: a teacher trained on the task is part of the method. The
upstream pre-training, shared by every pre-trained method, is not counted.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats as scipy_stats

from jaxadapt.bench import selection

ALPHA = 0.05  # one-sided significance level of "significantly worse"
TOLERANCE = 0.01  # one seed: methods within this (1 point of accuracy) are listed beside the best
BUDGETS = ('low', 'moderate', 'high')


def _size_key(size: int) -> tuple[bool, int]:
  return size == 0, size  # 0 = all the data: the largest


def _teacher_cell(path: str) -> str:
  """The run name of a teacher workdir (`<out>/runs/<name>`), whatever the results dir."""
  return path.rsplit('/runs/', 1)[-1]


def _cost(run: dict, by_cell: dict[str, dict], key: str) -> float:
  """The run's own `key` (train_flops, wall_seconds) plus its teachers' (a distilled student)."""
  total = float(run.get(key) or 0.0)
  teachers = ((run.get('config') or {}).get('distill') or {}).get('teachers') or ()
  for path in teachers:
    teacher = by_cell.get(_teacher_cell(str(path)))
    if teacher is not None:
      total += float(teacher.get(key) or 0.0)
  return total


def cells(runs: Iterable[dict], methods: Sequence[str] = ()) -> dict[tuple[str, int], list[dict]]:
  """{(task, size): [cell per method]}, cells in the order of `methods` (others by name).

  A cell: method, accuracy (mean test accuracy of the chosen setting), std (sample, 0 for
  one seed), per_seed {seed: accuracy}, n_seeds, train_flops and wall_seconds (seed means,
  teachers included).
  """
  runs = list(runs)
  by_cell = {r['cell']: r for r in runs}
  chosen, _ = selection.select(runs)
  groups: dict[tuple[str, int, str], list[dict]] = {}
  for r in chosen:
    groups.setdefault((r['task'], r['examples_per_class'], r['method']), []).append(r)
  index = {m: i for i, m in enumerate(methods)}
  order = lambda m: (index.get(m, len(index)), m)
  out: dict[tuple[str, int], list[dict]] = {}
  for task, size, method in sorted(groups, key=lambda k: (k[0], _size_key(k[1]), order(k[2]))):
    rs = sorted(groups[(task, size, method)], key=lambda r: r['seed'])
    acc = np.array([float(r['test_accuracy']) for r in rs])
    out.setdefault((task, size), []).append(
        {
            'method': method,
            'accuracy': float(acc.mean()),
            'std': float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
            'per_seed': {r['seed']: float(r['test_accuracy']) for r in rs},
            'n_seeds': len(rs),
            'train_flops': float(np.mean([_cost(r, by_cell, 'train_flops') for r in rs])),
            'wall_seconds': float(np.mean([_cost(r, by_cell, 'wall_seconds') for r in rs])),
        }
    )
  return out


def best(cells_: Sequence[dict]) -> dict:
  """The highest mean accuracy; ties go to fewer FLOPs, then to the earlier method."""
  return min(enumerate(cells_), key=lambda ic: (-ic[1]['accuracy'], ic[1]['train_flops'], ic[0]))[1]


def paired_p(best_: dict, other: dict) -> tuple[float, int]:
  """(one-sided p that `best_` beats `other`, seeds paired); p is nan below two pairs.

  A paired t-test on the per-seed differences; identical differences (zero spread) give
  p = 0 if positive, 1 if not.
  """
  seeds = sorted(set(best_['per_seed']) & set(other['per_seed']))
  if len(seeds) < 2:
    return math.nan, len(seeds)
  d = np.array([best_['per_seed'][s] - other['per_seed'][s] for s in seeds])
  sd = d.std(ddof=1)
  if sd == 0:
    return (0.0 if d.mean() > 0 else 1.0), len(seeds)
  t = d.mean() / (sd / math.sqrt(len(d)))
  return float(scipy_stats.t.sf(t, len(d) - 1)), len(seeds)


def size_verdict(
    cells_: Sequence[dict], alpha: float = ALPHA, tolerance: float = TOLERANCE
) -> dict[str, Any]:
  """The best cell, the cells not significantly worse (`tied`) and the rest (`worse`).

  Each tied/worse entry is dict(cell, p, pairs, test): test 'paired' (p from the t-test)
  or 'one seed' (fewer than two paired seeds: tied when within `tolerance` of the best).
  `one_seed` is True when no comparison could be tested.
  """
  top = best(cells_)
  tied, worse = [], []
  for cell in cells_:
    if cell is top:
      continue
    p, pairs = paired_p(top, cell)
    if math.isnan(p):
      entry = dict(cell=cell, p=p, pairs=pairs, test='one seed')
      keep = top['accuracy'] - cell['accuracy'] <= tolerance + 1e-12
    else:
      entry = dict(cell=cell, p=p, pairs=pairs, test='paired')
      keep = p >= alpha
    (tied if keep else worse).append(entry)
  one_seed = all(e['test'] == 'one seed' for e in tied + worse) and top['n_seeds'] < 2
  return dict(best=top, tied=tied, worse=worse, one_seed=one_seed)


def budgets(task_cells: Iterable[dict]) -> dict[str, float]:
  """{budget: max training FLOPs}: low and moderate are the first and second tertiles of
  the cells' mean training FLOPs (measured values: numpy's 'lower' quantile), high is inf."""
  flops = np.array([c['train_flops'] for c in task_cells if c['train_flops'] > 0])
  if not len(flops):
    return dict(low=math.inf, moderate=math.inf, high=math.inf)
  low, moderate = np.quantile(flops, [1 / 3, 2 / 3], method='lower')
  return dict(low=float(low), moderate=float(moderate), high=math.inf)


def best_within(cells_: Sequence[dict], max_flops: float) -> dict | None:
  """The best cell whose mean training FLOPs are at most `max_flops` (None: nothing fits)."""
  fit = [c for c in cells_ if c['train_flops'] <= max_flops]
  return best(fit) if fit else None


def pareto(cells_: Sequence[dict]) -> list[dict]:
  """The cells on the accuracy-vs-FLOPs front, by FLOPs: none is cheaper and as accurate."""
  front = []
  for cell in sorted(cells_, key=lambda c: (c['train_flops'], -c['accuracy'])):
    if not front or cell['accuracy'] > front[-1]['accuracy']:
      front.append(cell)
  return front


def verdict(runs: Iterable[dict], methods: Sequence[str] = ()) -> dict[str, dict]:
  """Per task: sizes, budgets, {size: size_verdict}, {size: {budget: best cell or None}}
  and {size: pareto front}."""
  by_size = cells(runs, methods)
  out: dict[str, dict] = {}
  for task in sorted({t for t, _ in by_size}):
    sizes = sorted((s for t, s in by_size if t == task), key=_size_key)
    limits = budgets(c for s in sizes for c in by_size[(task, s)])
    out[task] = dict(
        sizes=sizes,
        budgets=limits,
        cells={s: by_size[(task, s)] for s in sizes},
        verdicts={s: size_verdict(by_size[(task, s)]) for s in sizes},
        by_budget={
            s: {b: best_within(by_size[(task, s)], limits[b]) for b in BUDGETS} for s in sizes
        },
        pareto={s: pareto(by_size[(task, s)]) for s in sizes},
    )
  return out
