r"""Reproduction: MNIST-1D (Greydanus 2020, "Scaling down deep learning"), the from-scratch table.

  jaxadapt bench --suite configs/suites/mnist1d.py --out results/mnist1d
  jaxadapt bench --suite configs/suites/mnist1d.py --out results/mnist1d_quick --quick

Logistic regression, MLP, CNN and GRU (configs/mnist1d/train.py: the paper's
models and recipe, Adam 1e-2, batch 100, 6,000 steps) on the 4,000/1,000
split generated offline by the mnist1d package, with the sequence positions
in order and shuffled by one fixed permutation. Arguments: seeds (default 3),
quick (smoke models, a few steps, one seed).
"""

import ml_collections

from jaxadapt import config as config_lib

CONFIG = 'configs/mnist1d/train.py'
MODELS = ('linear', 'mlp', 'cnn1d', 'gru')


def get_suite(arg=None):
  arg = config_lib.parse_arg(arg, seeds=3, quick=False)
  s = ml_collections.ConfigDict()
  s.report = 'table'
  s.title = 'MNIST-1D from scratch (Greydanus 2020), ours / published test accuracy (%)'
  s.table = dict(rows='model', columns='positions')
  # The paper's Table (README of github.com/greydanus/mnist1d): logistic regression, MLP,
  # CNN, GRU on MNIST-1D and on MNIST-1D with shuffled positions.
  s.published = dict(
      linear=dict(ordered=0.32, shuffled=0.32),
      mlp=dict(ordered=0.68, shuffled=0.68),
      cnn1d=dict(ordered=0.94, shuffled=0.56),
      gru=dict(ordered=0.91, shuffled=0.57),
  )
  s.runs = []
  for seed in range(1 if arg.quick else arg.seeds):
    for model in MODELS:
      for shuffled in (False, True):
        args = f"model={model}{',shuffle' if shuffled else ''}{',smoke' if arg.quick else ''}"
        positions = 'shuffled' if shuffled else 'ordered'
        s.runs.append(
            dict(
                name=f'{model}/{positions}/{seed}',
                config=f'{CONFIG}:{args}',
                overrides=(f'seed={seed}',),
                tags=dict(model=model, positions=positions, seed=seed),
            )
        )
  return s
