r"""The default comparison: scratch vs transfer vs fine-tune vs PEFT vs distillation, offline.

  jaxadapt bench --suite configs/suites/fashion_mnist.py --out results/          # full
  jaxadapt bench --suite configs/suites/fashion_mnist.py --out results/ --quick  # fewer sizes, 1 seed
  jaxadapt report results/                                                     # rebuild report

Upstream: a small CNN (~210k params) pretrained from scratch on Fashion-MNIST
classes 0-4. Downstream tasks:
  related   - Fashion-MNIST classes 5-9 (sandals, shirts, sneakers, bags, boots);
  unrelated - scikit-learn's 8x8 digits, resized to 28x28 (10 classes, 1,300 train, >= 109 per class).
Every method starts from the same upstream checkpoint (scratch and the
students from random init) and gets the same step budget for a data size.
Argument `tiny`: a couple of steps per cell on a tiny model (for tests).
"""

import ml_collections

from jaxadapt import config as config_lib

FM = 'configs/fashion_mnist'


def get_suite(arg=None):
  arg = config_lib.parse_arg(arg, tiny=False)
  s = ml_collections.ConfigDict()
  model = ('model.name=cnn', 'model.kwargs.widths=(16, 32)', 'model.kwargs.dense=128')
  s.common = ('eval_batch_size=200',)
  s.upstream = dict(
      config=f'{FM}/pretrain.py', overrides=model + ('num_epochs=2.0', 'batch_size=64')
  )
  s.tasks = dict(
      related=dict(overrides=('dataset.classes=(5, 6, 7, 8, 9)',)),
      unrelated=dict(
          max_size=100,
          overrides=(
              'dataset.name=digits',
              'dataset.classes=()',
              'dataset.train_split=train[:1300]',
              'dataset.val_split=train[1300:]',
              'dataset.test_split=test',
              'preprocess.train=scale|resize(28,28)|normalize(0.286,0.353)',
              'preprocess.eval=scale|resize(28,28)|normalize(0.286,0.353)',
          ),
      ),
  )
  s.methods = dict(
      scratch=dict(config=f'{FM}/scratch.py', overrides=model),
      linear_probe=dict(config=f'{FM}/linear_probe.py', overrides=model),
      linear_probe_fast=dict(config=f'{FM}/linear_probe.py', args='fast=softmax', overrides=model),
      partial_ft=dict(config=f'{FM}/partial_ft.py', args='k=1', overrides=model),
      full_ft=dict(config=f'{FM}/full_ft.py', overrides=model),
      lora=dict(config=f'{FM}/lora.py', args='rank=4', overrides=model),
      bitfit=dict(config=f'{FM}/bitfit.py', overrides=model),
      # The student: a ~8x smaller CNN, alone and taught by the full_ft cell of the same
      # task, size and seed (the best big model available for that data).
      student_alone=dict(config=f'{FM}/distill.py', args='alone'),
      distill=dict(config=f'{FM}/distill.py'),
  )
  s.sizes = (1, 10, 100, 1000, 0)  # examples per class; 0 = all
  s.seeds = (0, 1, 2)
  s.quick = dict(sizes=(10, 0), seeds=(0,))
  s.batch_size = 64
  s.steps = dict(epochs=20.0, min=40, max=300)
  if arg.tiny:
    for name in ('linear_probe', 'partial_ft', 'bitfit'):
      del s.methods[name]  # the tiny suite exercises every code path, not every method
    tiny = ('model.kwargs.widths=(4, 8)', 'model.kwargs.dense=16')
    for name in s.methods:
      if name not in ('student_alone', 'distill'):
        s.methods[name].overrides = model + tiny
    s.upstream.overrides = (
        model + tiny + ('num_epochs=0.0', 'num_steps=4', 'dataset.train_split=train[:2000]')
    )
    s.common = ('eval_batch_size=200', 'dataset.test_split=test[:400]')
    s.sizes, s.seeds = (2, 10), (0,)
    s.quick = dict(sizes=(10,), seeds=(0,))
    s.steps = dict(epochs=1.0, min=2, max=2)
  return s
