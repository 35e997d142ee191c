r"""Reproduction: Yosinski et al. 2014, "How transferable are features in deep neural networks?"

  jaxadapt bench --suite configs/suites/transferability.py --out results/transferability
  jaxadapt bench --suite configs/suites/transferability.py --out results/tq --quick

Fashion-MNIST's ten classes are split at random into halves A and B (one
split per seed). baseA and baseB are the 8-weight-layer CNN of
configs/suites/transferability_run.py trained from scratch on each half.
For every cut n = 1..7: BnB / AnB copy layers 1..n of baseB / baseA, freeze
them and train re-initialised layers n+1..8 on B; BnB+ / AnB+ fine-tune the
copied layers too. report.md and transferability.png give the paper's Fig. 2.
Arguments: splits (how many random class splits, default 2), steps (per
run, default 600; every run gets the same), quick (tiny model and steps, two cuts).
"""

import ml_collections
import numpy as np

from jaxadapt import config as config_lib

CONFIG = 'configs/suites/transferability_run.py'


def class_split(seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """A random half of the ten classes and its complement, fixed by `seed`."""
  perm = np.random.RandomState(seed).permutation(10)
  return tuple(sorted(int(c) for c in perm[:5])), tuple(sorted(int(c) for c in perm[5:]))


def get_suite(arg=None):
  arg = config_lib.parse_arg(arg, splits=2, steps=600, quick=False)
  s = ml_collections.ConfigDict()
  s.report = 'transferability'
  s.title = 'Transferability of features (Yosinski et al. 2014) on Fashion-MNIST halves'
  s.published = {
      'baseB': 'top-1 about 0.625 on ImageNet half B (Fig. 2)',
      'BnB': 'on par with baseB for n=1,2 and n=6,7; drops for n=3-5 (fragile co-adaptation '
      'of middle layers), lowest around n=4',
      'BnB+': 'on par with baseB at every n (fine-tuning repairs the co-adaptation)',
      'AnB': 'on par for n=1,2 (general first-layer features), then falls, steepest at '
      'n=6,7 (specific features + co-adaptation)',
      'AnB+': 'above baseB at every n (transfer then fine-tune boosts generalisation, '
      'by about 1-2 points even at n=7)',
  }
  s.common = ('eval_batch_size=200',)
  quick = (
      'num_steps=6',
      'batch_size=16',
      'dataset.examples_per_class=20',
      'dataset.test_split=test[:400]',
      'model.kwargs.widths=(2, 4, 4)',
      'model.kwargs.dense=8',
  )
  cuts = (2, 6) if arg.quick else range(1, 8)
  s.runs = []
  for split in range(1 if arg.quick else arg.splits):
    a, b = class_split(split)
    extra = quick if arg.quick else (f'num_steps={arg.steps}',)
    on = (
        lambda classes: (
            f'dataset.classes={classes}',
            'seed=' + str(split),
            'dataset.subset_seed=' + str(split),
        )
        + extra
    )
    s.runs.append(
        dict(
            name=f's{split}/baseA',
            config=CONFIG,
            overrides=on(a),
            tags=dict(split=split, variant='baseA', classes=list(a)),
        )
    )
    s.runs.append(
        dict(
            name=f's{split}/baseB',
            config=CONFIG,
            overrides=on(b),
            tags=dict(split=split, variant='baseB', classes=list(b)),
        )
    )
    for n in cuts:
      for source in ('B', 'A'):
        for plus in (False, True):
          variant = f"{source}nB{'+' if plus else ''}"
          args = f"base={{run:s{split}/base{source}}},n={n}{',fine_tune' if plus else ''}"
          s.runs.append(
              dict(
                  name=f's{split}/{variant}/{n}',
                  config=f'{CONFIG}:{args}',
                  overrides=on(b),
                  tags=dict(split=split, variant=variant, n=n),
              )
          )
  return s
