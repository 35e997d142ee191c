r"""A larger suite for users with network and an accelerator: CIFAR-10 from the TFDS catalog.

  jaxadapt bench --suite configs/suites/cifar10.py --out results_cifar10/

Upstream: a ResNet-18-style model (BiT GroupNorm, width 64) pretrained on
CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, deer); downstream
`related` = classes 5-9 (dog, frog, horse, ship, truck). Same methods and data
sizes as the Fashion-MNIST suite, larger step budgets. The first run downloads
CIFAR-10 through TFDS (needs network and, for preparing it, TensorFlow).
Not run offline or in tests.
"""

import ml_collections

from jaxadapt import config as config_lib

FM = 'configs/fashion_mnist'
METHODS = 'configs/methods'  # the method files are dataset-agnostic once overridden
PRETRAINED = 'init.checkpoint={run:upstream}'


def method_config(name: str, args: str = '') -> str:
  """`<METHODS>/<name>.py[:args]`: the one place that names a method's config file."""
  return f'{METHODS}/{name}.py' + (f':{args}' if args else '')


def get_suite(arg=None):
  arg = config_lib.parse_arg(arg, quick=False)
  s = ml_collections.ConfigDict()
  s.report = 'adaptation'
  model = (
      'model.name=resnet',
      'model.kwargs.depth=18',
      'model.kwargs.width=64',
      'model.kwargs.num_stages=4',
  )
  data = (
      'dataset.name=cifar10',
      'dataset.train_split=train[:45000]',
      'dataset.val_split=train[45000:]',
      'dataset.test_split=test',
      'preprocess.train=scale|normalize(0.49,0.48,0.45,0.25,0.24,0.26)|pad_crop(4)|flip',
      'preprocess.eval=scale|normalize(0.49,0.48,0.45,0.25,0.24,0.26)',
  )
  s.common = data + ('eval_batch_size=200',)
  s.runs = [
      dict(
          name='upstream',
          config=f'{FM}/pretrain.py:model=resnet',
          overrides=model + ('num_epochs=30.0', 'batch_size=256'),
          tags=dict(task='upstream', method='pretrain'),
      )
  ]
  adapted = model + (PRETRAINED,)
  s.matrix = dict(
      tasks=[dict(name='related', overrides=('dataset.classes=(5, 6, 7, 8, 9)',))],
      methods=[
          dict(name='scratch', config=f'{FM}/scratch.py:model=resnet', overrides=model),
          dict(
              name='linear_probe_fast',
              config=method_config('linear_probe', 'model=resnet,fast=softmax'),
              overrides=adapted,
          ),
          dict(
              name='partial_ft',
              config=method_config('partial_ft', 'model=resnet,k=1'),
              overrides=adapted,
          ),
          dict(name='full_ft', config=method_config('full_ft', 'model=resnet'), overrides=adapted),
          dict(name='lora', config=method_config('lora', 'model=resnet,rank=8'), overrides=adapted),
          dict(name='bitfit', config=method_config('bitfit', 'model=resnet'), overrides=adapted),
      ],
      sizes=(10, 0) if arg.quick else (1, 10, 100, 1000, 0),
      seeds=(0,) if arg.quick else (0, 1, 2),
      batch_size=128,
      steps=dict(epochs=30.0, min=100, max=5000),
  )
  return s
