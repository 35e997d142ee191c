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

FM = 'configs/fashion_mnist'  # the method files are dataset-agnostic once overridden


def get_suite(arg=None):
  del arg
  s = ml_collections.ConfigDict()
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
  s.upstream = dict(
      config=f'{FM}/pretrain.py:model=resnet',
      overrides=model + ('num_epochs=30.0', 'batch_size=256'),
  )
  s.tasks = dict(related=dict(overrides=('dataset.classes=(5, 6, 7, 8, 9)',)))
  s.methods = dict(
      scratch=dict(config=f'{FM}/scratch.py:model=resnet', overrides=model),
      linear_probe_fast=dict(
          config=f'{FM}/linear_probe.py', args='model=resnet,fast=softmax', overrides=model
      ),
      partial_ft=dict(config=f'{FM}/partial_ft.py', args='model=resnet,k=1', overrides=model),
      full_ft=dict(config=f'{FM}/full_ft.py', args='model=resnet', overrides=model),
      lora=dict(config=f'{FM}/lora.py', args='model=resnet,rank=8', overrides=model),
      bitfit=dict(config=f'{FM}/bitfit.py', args='model=resnet', overrides=model),
  )
  s.sizes = (1, 10, 100, 1000, 0)
  s.seeds = (0, 1, 2)
  s.quick = dict(sizes=(10, 0), seeds=(0,))
  s.batch_size = 128
  s.steps = dict(epochs=30.0, min=100, max=5000)
  return s
