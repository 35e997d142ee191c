"""Matrix suites: every task x seed x data size x method, expanded into named runs.

A suite's `matrix` field holds

  tasks       [dict(name, overrides=(...), max_size=0)]: downstream data as config
              overrides; `max_size` drops the data sizes above it (a task with little data)
  methods     [dict(name, config='file.py[:args]', overrides=(...), grid={key: [values]})],
              in the order the report lists them; a `grid` runs the method once per point
              of the product of its values (run `task/method/size/seed/key=value+...`,
              tagged `grid`), and the report keeps the point best on validation
              (selection.py)
  sizes       training examples per class (0 = all)
  seeds
  batch_size  the largest batch; a subset too small for it gets a smaller one
  steps       dict(epochs, min, max[, evals]): the step budget of a run (`steps_for`) and
              how many times it evaluates (default 5: enough to see the last fifth)

The cell (task, method, size, seed) becomes the run `task/method/size/seed`, tagged with the
same four. Its config is the method's file with the task's overrides, then the method's,
then the cell's seed and data size. A method's config and overrides may name the cell:
`{task}`, `{method}`, `{size}` and `{seed}` are replaced by its values, so a student's
teacher is `distill.teachers=('{run:{task}/full_ft/{size}/{seed}}',)` and a method that
adapts the pretrained model reads `init.checkpoint={run:upstream}` (a run the suite lists in
`runs`). What depends on the data (batch size and steps) is applied to the built config by
`fit_budget`, once the runner knows the size of the training set.
"""

from __future__ import annotations

import math
import re
from typing import Any

import ml_collections

PLACEHOLDERS = ('task', 'method', 'size', 'seed')
_PLACEHOLDER = re.compile(r'\{([A-Za-z_]\w*)\}')


def expand(matrix: dict[str, Any]) -> list[dict[str, Any]]:
  """The matrix's runs in run order: task, then seed, then size, then method as listed."""
  runs = []
  budget = dict(matrix['steps'], batch_size=matrix['batch_size'])
  for task in matrix['tasks']:
    for seed in matrix['seeds']:
      for size in task_sizes(task, matrix['sizes']):
        for method in matrix['methods']:
          cell = dict(task=task['name'], method=method['name'], size=size, seed=seed)
          for point in grid_points(method.get('grid', {})):
            suffix = '+'.join(f'{k}={v}' for k, v in point.items())
            runs.append(
                dict(
                    name='{task}/{method}/{size}/{seed}'.format(**cell)
                    + (f'/{suffix}' if suffix else ''),
                    config=fill(method['config'], cell),
                    overrides=(
                        *task.get('overrides', ()),
                        *(fill(o, cell) for o in method.get('overrides', ())),
                        *(f'{k}={v}' for k, v in point.items()),
                        f'seed={seed}',
                        f'dataset.subset_seed={seed}',
                        f'dataset.examples_per_class={size}',
                    ),
                    tags=dict(cell, grid=point) if point else cell,
                    budget=budget,
                )
            )
  return runs


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
  """Every point of a method's grid, in order ([{}] for no grid: one run, the defaults)."""
  points = [{}]
  for key, values in grid.items():
    points = [dict(p, **{key: v}) for p in points for v in values]
  return points


def task_sizes(task: dict[str, Any], sizes) -> tuple[int, ...]:
  """The data sizes a task runs: those up to its `max_size` (0 = all of them)."""
  cap = task.get('max_size', 0)
  return tuple(s for s in sizes if not cap or s <= cap)


def placeholders(text: str) -> list[str]:
  """The `{name}` placeholders in `text` (`{run:NAME}` references are not placeholders)."""
  return _PLACEHOLDER.findall(text)


def fill(text: str, cell: dict[str, Any]) -> str:
  """`text` with `{task}`, `{method}`, `{size}` and `{seed}` replaced by the cell's values."""
  return _PLACEHOLDER.sub(lambda m: str(cell.get(m.group(1), m.group(0))), text)


def steps_for(budget: dict[str, Any], n_examples: int, batch_size: int) -> int:
  """The budget rule: `epochs` passes over the subset, clipped to [min, max] steps.

  Every method at a data size gets the same steps of the same batch, so the same examples
  seen; `min` keeps tiny subsets from stopping after a handful of steps and `max` bounds the
  largest ones (set it so the whole training set still gets several epochs).
  """
  steps = math.ceil(budget['epochs'] * n_examples / batch_size)
  return int(min(max(steps, budget['min']), budget['max']))


def fit_budget(
    config: ml_collections.ConfigDict, budget: dict[str, Any], n_train: int, n_devices: int
) -> None:
  """Sets batch size, steps, eval and logging of a run with `n_train` training examples."""
  config.batch_size = min(budget['batch_size'], n_train // n_devices * n_devices)
  config.num_epochs, config.num_steps = 0.0, steps_for(budget, n_train, config.batch_size)
  # A few evals (the last one at the end, the number the report shows): the val curve says
  # whether the run was still improving over its last fifth (convergence.still_rising).
  config.eval_every = max(1, math.ceil(config.num_steps / budget.get('evals', 5)))
  config.log_every = max(1, config.num_steps // 5)
  config.ckpt_every, config.keep_ckpts = 0, 1
