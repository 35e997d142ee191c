"""Shared building blocks for config files: model presets, Fashion-MNIST tasks, smoke mode.

Config files stay short by composing these; everything they set is ordinary
config data that the shell can still override.
"""

from __future__ import annotations

import ml_collections

from jaxadapt import config as config_lib
from jaxadapt import defaults

MODELS = {
    # The classic 2-conv Fashion-MNIST net (conv-pool-conv-pool-dense): cheap on 2 CPU cores.
    'cnn': dict(
        name='cnn', kwargs=dict(widths=(32, 64), convs=1, norm='none', dense=256, dropout=0.3)
    ),
    # A quarter of its cost, for benchmark suites that train hundreds of cells.
    'cnn_small': dict(
        name='cnn', kwargs=dict(widths=(16, 32), convs=1, norm='none', dense=128, dropout=0.3)
    ),
    # BiT-style ResNet (GroupNorm, no batch statistics), 3 stages for 28x28 inputs.
    'resnet': dict(name='resnet', kwargs=dict(depth=10, width=32, num_stages=3)),
    'vit': dict(name='vit', kwargs=dict(patch_size=4, width=128, depth=4, num_heads=4)),
}
TINY = {
    'cnn': dict(widths=(4, 8), dense=16),
    'cnn_small': dict(widths=(4, 8), dense=16),
    'resnet': dict(width=4, num_stages=2),
    'vit': dict(width=16, depth=1, num_heads=2),
    # MNIST-1D models (configs/mnist1d/train.py).
    'linear': {},
    'mlp': dict(widths=(16, 16)),
    'cnn1d': dict(channels=4),
    'gru': dict(hidden=2),
}

# The transfer split used throughout: pretrain on the first five classes
# (T-shirt/top, Trouser, Pullover, Dress, Coat), adapt to the other five
# (Sandal, Shirt, Sneaker, Bag, Ankle boot).
UPSTREAM_CLASSES = (0, 1, 2, 3, 4)
DOWNSTREAM_CLASSES = (5, 6, 7, 8, 9)


def fashion_mnist(model: str, classes: tuple[int, ...] = ()) -> ml_collections.ConfigDict:
  """Fashion-MNIST with a model preset and its usual optimizer."""
  if model not in MODELS:
    raise config_lib.ConfigError(
        f"unknown model '{model}' in config argument; " f"choose one of: {', '.join(MODELS)}"
    )
  config = defaults.base_config()
  config.model.name = MODELS[model]['name']
  config.model.kwargs.update(MODELS[model]['kwargs'])
  config.dataset.classes = tuple(classes)
  config.preprocess.train = 'scale|normalize(0.286,0.353)|flip'
  config.batch_size = 128
  config.optim.name = 'adamw'
  config.optim.lr = 2e-3
  config.optim.weight_decay = 0.05
  config.optim.warmup_fraction = 0.03
  if MODELS[model]['name'] == 'resnet':
    config.optim.name, config.optim.lr, config.optim.weight_decay = 'sgd', 0.1, 5e-4
  return config


def smoke(config: ml_collections.ConfigDict, model: str) -> ml_collections.ConfigDict:
  """A few steps on a tiny model and a sliver of data: for tests and quick checks."""
  config.model.kwargs.update(TINY[model])
  config.dataset.train_split = 'train[:512]'
  config.dataset.val_split = 'train[512:768]'
  config.dataset.test_split = 'test[:256]'
  config.num_epochs = 0.0
  config.num_steps = 6
  config.batch_size = 64
  config.eval_batch_size = 128
  config.log_every = 2
  config.eval_every = 3
  config.ckpt_every = 3
  return config


def use_imported_model(config: ml_collections.ConfigDict) -> None:
  """Another library's checkpoint (hf:, timm:, ...) decides the model, whatever `model=`
  said, and images become 3-channel at the size it was trained on."""
  from jaxadapt import importers  # Local import: reads checkpoints only when asked.

  if not config.init.checkpoint:
    return
  spec = importers.parse(config.init.checkpoint)
  if spec is None:
    return
  plan = importers.plan(spec)
  config.model.name = plan.model
  config.model.kwargs = ml_collections.ConfigDict(plan.kwargs)
  if plan.model != 'bert' and plan.input_shape[-1] == 3:
    size = plan.extra.get('image_size', 224)
    for split in ('train', 'eval'):
      spec_str = getattr(config.preprocess, split)
      config.preprocess[split] = f'{spec_str}|gray2rgb|resize({size})'


def downstream(method: str, arg: str | None, **extra_args) -> ml_collections.ConfigDict:
  """Adapt the upstream checkpoint to Fashion-MNIST classes 5-9 with `method`.

  Common arguments: model, checkpoint (a workdir or file), shots (examples per
  class, 0 = all), smoke; `extra_args` are the method's own (k, rank, ...).
  """
  from jaxadapt import methods  # Local import: methods imports nothing from here.

  arg = config_lib.parse_arg(
      arg, model='cnn', checkpoint='runs/pretrain', shots=0, smoke=False, **extra_args
  )
  config = fashion_mnist(arg.model, DOWNSTREAM_CLASSES)
  config.init.checkpoint = arg.checkpoint
  config.dataset.examples_per_class = arg.shots
  config.num_epochs = 5.0
  if arg.smoke:  # shrink first: method rules are written for the model that will run
    smoke(config, arg.model)
  use_imported_model(config)
  method_args = {k: arg[k] for k in extra_args if k in ('k', 'rank', 'layer_decay')}
  methods.apply(config, method, **method_args)
  if 'fast' in extra_args:
    config.adapt.fast_probe = arg.fast
  return config
