"""Matrix expansion: run names, order, tags, placeholders, max_size and the step budget."""

import pathlib

import pytest

from jaxadapt import config as config_lib
from jaxadapt.bench import matrix

ROOT = pathlib.Path(__file__).resolve().parents[1]

MATRIX = dict(
    tasks=[dict(name='near', overrides=('dataset.classes=(5, 6)',)), dict(name='far', max_size=5)],
    methods=[
        dict(name='full_ft', config='m/full_ft.py', overrides=('init.checkpoint={run:upstream}',)),
        dict(
            name='distill',
            config='m/distill.py:tag={method}',
            overrides=("distill.teachers=('{run:{task}/full_ft/{size}/{seed}}',)",),
        ),
    ],
    sizes=(1, 10),
    seeds=(0, 3),
    batch_size=64,
    steps=dict(epochs=2.0, min=10, max=50),
)


def test_runs_are_named_tagged_and_ordered_task_seed_size_method():
  runs = matrix.expand(MATRIX)
  assert [r['name'] for r in runs] == [
      'near/full_ft/1/0',
      'near/distill/1/0',
      'near/full_ft/10/0',
      'near/distill/10/0',
      'near/full_ft/1/3',
      'near/distill/1/3',
      'near/full_ft/10/3',
      'near/distill/10/3',
      'far/full_ft/1/0',  # max_size=5: no size 10
      'far/distill/1/0',
      'far/full_ft/1/3',
      'far/distill/1/3',
  ]
  run = runs[7]
  assert run['tags'] == dict(task='near', method='distill', size=10, seed=3)
  assert run['budget'] == dict(epochs=2.0, min=10, max=50, batch_size=64)


def test_overrides_task_then_method_then_cell_with_placeholders_filled():
  run = matrix.expand(MATRIX)[7]  # near/distill/10/3
  assert run['config'] == 'm/distill.py:tag=distill'
  assert run['overrides'] == (
      'dataset.classes=(5, 6)',
      "distill.teachers=('{run:near/full_ft/10/3}',)",
      'seed=3',
      'dataset.subset_seed=3',
      'dataset.examples_per_class=10',
  )
  assert matrix.expand(MATRIX)[0]['overrides'][1] == 'init.checkpoint={run:upstream}'


def test_placeholders_are_found_but_run_references_are_not():
  assert matrix.placeholders("x={task}/{size} y='{run:a/{seed}}' z={'k': 1}") == [
      'task',
      'size',
      'seed',
  ]


@pytest.mark.parametrize(
    'n, batch, steps',
    [(5, 5, 10), (100, 64, 10), (1000, 64, 32), (100000, 64, 50)],  # min, min, epochs, max
)
def test_steps_for_is_epochs_clipped_to_min_and_max(n, batch, steps):
  assert matrix.steps_for(MATRIX['steps'], n, batch) == steps


def test_fit_budget_caps_the_batch_by_the_subset_and_evaluates_five_times():
  config = config_lib.load_config(str(ROOT / 'configs/fashion_mnist/pretrain.py'))
  budget = dict(MATRIX['steps'], batch_size=64)
  matrix.fit_budget(config, budget, n_train=20, n_devices=8)
  assert config.batch_size == 16  # the largest multiple of 8 devices within 20 examples
  assert (config.num_epochs, config.num_steps) == (0.0, 10)  # 2 epochs = 3 steps < min
  # Five evals, the last at the end: enough to see the last fifth of the val curve.
  assert config.eval_every == 2 and config.log_every == 2 and config.ckpt_every == 0
  matrix.fit_budget(config, budget, n_train=6400, n_devices=8)
  assert (config.batch_size, config.num_steps) == (64, 50)  # 200 steps > max
  assert config.eval_every == 10
  matrix.fit_budget(config, dict(budget, evals=3), n_train=6400, n_devices=8)
  assert config.eval_every == 17  # ceil(50 / 3): evals at 17, 34 and the end
