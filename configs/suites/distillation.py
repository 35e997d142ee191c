r"""Reproduction: Hinton, Vinyals and Dean 2015, "Distilling the knowledge in a neural network".

  jaxadapt bench --suite configs/suites/distillation.py --out results/distillation
  jaxadapt bench --suite configs/suites/distillation.py --out results/distillation_quick --quick

On MNIST-1D (4,000 training sequences; configs/mnist1d/train.py recipe): a
large, regularised teacher (the paper's CNN at 4x the channels, dropout 0.3
before the head, ~66k parameters) and the paper's small CNN as the student
(25 channels, no dropout, ~5k parameters). The student is trained alone and
distilled (`kl`: alpha = 0.9 soft targets at temperature T with the T^2
scale, 0.1 hard labels) at several temperatures, same steps, five seeds.
The report gives the share of the teacher-student gap each T closes.
Arguments: seeds (default 5), quick (smoke models, a few steps, one seed).
"""

import ml_collections

from jaxadapt import config as config_lib

CONFIG = 'configs/mnist1d/train.py'
TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 16.0)


def get_suite(arg=None):
  arg = config_lib.parse_arg(arg, seeds=5, quick=False)
  s = ml_collections.ConfigDict()
  s.report = 'distillation'
  s.title = 'Distillation (Hinton et al. 2015) on MNIST-1D: 66k-parameter teacher, 5k student'
  s.test_examples = 1000
  s.published = {
      'MNIST, 784-1200-1200-10 teacher (dropout, jitter)': '67 test errors',
      'MNIST, 784-800-800-10 student alone': '146 test errors',
      'same student distilled at T=20': '74 test errors: 91% of the gap closed',
      'temperature': 'T >= 8 worked for 300+ hidden units per layer; with 30 units, '
      'T = 2.5-4 worked much better than higher or lower',
  }
  smoke = ',smoke' if arg.quick else ''
  s.runs = [
      dict(
          name='teacher',
          config=f'{CONFIG}:model=cnn1d{smoke}',
          overrides=('model.kwargs.channels=100', 'model.kwargs.dropout=0.3'),
          tags=dict(role='teacher', seed=0),
      )
  ]
  for seed in range(1 if arg.quick else arg.seeds):
    student = dict(config=f'{CONFIG}:model=cnn1d{smoke}')
    s.runs.append(
        dict(
            student,
            name=f'alone/{seed}',
            overrides=(f'seed={seed}',),
            tags=dict(role='alone', seed=seed),
        )
    )
    for t in ((2.0, 8.0) if arg.quick else TEMPERATURES):
      s.runs.append(
          dict(
              student,
              name=f'distilled/T{t:g}/{seed}',
              overrides=(
                  f'seed={seed}',
                  'adapt.method=distill',
                  "distill.teachers=('{run:teacher}',)",
                  f'distill.temperature={t}',
                  'distill.alpha=0.9',
              ),
              tags=dict(role='distilled', temperature=t, seed=seed),
          )
      )
  return s
