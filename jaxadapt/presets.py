"""Shared building blocks for config files: model and dataset presets, smoke mode.

Config files stay short by composing these; everything they set is ordinary config data
that the shell can still override. What a model is (its blocks, LoRA targets, smoke size)
comes from its registry entry in jaxadapt/models, not from here.
"""

from __future__ import annotations

import difflib

import ml_collections

from jaxadapt import config as config_lib
from jaxadapt import defaults
from jaxadapt import methods
from jaxadapt import models

_ADAMW = dict(name='adamw', lr=2e-3, weight_decay=0.05, warmup_fraction=0.03)

# Model sizes for small images (28x28, 32x32), each with its usual optimizer.
MODELS = {
    # The classic 2-conv Fashion-MNIST net (conv-pool-conv-pool-dense): cheap on 2 CPU cores.
    'cnn': dict(
        name='cnn',
        kwargs=dict(widths=(32, 64), convs=1, norm='none', dense=256, dropout=0.3),
        optim=_ADAMW,
    ),
    # BiT-style ResNet (GroupNorm, no batch statistics), 3 stages for 28x28 inputs.
    'resnet': dict(
        name='resnet',
        kwargs=dict(depth=10, width=32, num_stages=3),
        optim={**_ADAMW, 'name': 'sgd', 'lr': 0.1, 'weight_decay': 5e-4},
    ),
    'vit': dict(
        name='vit', kwargs=dict(patch_size=4, width=128, depth=4, num_heads=4), optim=_ADAMW
    ),
}

_FASHION_NORM = 'scale|normalize(0.286,0.353)'
_CIFAR_NORM = 'scale|normalize(0.49,0.48,0.45,0.25,0.24,0.26)'

# Datasets the method configs take as `dataset=`: splits, preprocessing and the classes of
# the downstream task (() = all).
DATASETS = {
    # Offline (Debian dataset-fashion-mnist). The transfer split used throughout: pretrain on
    # the first five classes (T-shirt/top, Trouser, Pullover, Dress, Coat), adapt to the
    # other five (Sandal, Shirt, Sneaker, Bag, Ankle boot).
    'fashion_mnist': dict(
        dataset=dict(
            name='fashion_mnist',
            train_split='train[:55000]',
            val_split='train[55000:]',
            test_split='test',
        ),
        preprocess=dict(train=f'{_FASHION_NORM}|flip', eval=_FASHION_NORM),
        downstream_classes=(5, 6, 7, 8, 9),
    ),
    # Offline (scikit-learn's 8x8 digits, 1,437 train / 360 test). Resized to 28x28 and
    # normalised with Fashion-MNIST's statistics, so a Fashion-MNIST upstream model reads
    # them: the benchmark's unrelated task, all ten classes.
    'digits': dict(
        dataset=dict(
            name='digits', train_split='train[:1300]', val_split='train[1300:]', test_split='test'
        ),
        preprocess=dict(
            train='scale|resize(28,28)|normalize(0.286,0.353)',
            eval='scale|resize(28,28)|normalize(0.286,0.353)',
        ),
        downstream_classes=(),
    ),
    # The TFDS catalog's CIFAR-10 (its first use downloads it: needs network). Upstream
    # classes 0-4 (airplane, automobile, bird, cat, deer), downstream 5-9 (dog, frog, horse,
    # ship, truck).
    'cifar10': dict(
        dataset=dict(
            name='cifar10',
            train_split='train[:45000]',
            val_split='train[45000:]',
            test_split='test',
        ),
        preprocess=dict(train=f'{_CIFAR_NORM}|pad_crop(4)|flip', eval=_CIFAR_NORM),
        downstream_classes=(5, 6, 7, 8, 9),
    ),
}
UPSTREAM_CLASSES = (0, 1, 2, 3, 4)  # configs/fashion_mnist/pretrain.py
DOWNSTREAM_CLASSES = DATASETS['fashion_mnist']['downstream_classes']


def _preset(kind: str, name: str, presets: dict) -> dict:
  if name in presets:
    return presets[name]
  close = difflib.get_close_matches(name, list(presets), n=1)
  raise config_lib.ConfigError(
      f"unknown {kind} '{name}' in config argument; choose one of: {', '.join(presets)}"
      + (f" (did you mean '{close[0]}'?)" if close else '')
  )


def _model_preset(model: str) -> dict:
  """A MODELS preset, else any registry model at its own default size."""
  if model in MODELS:
    return MODELS[model]
  if model in models.REGISTRY:
    return dict(name=model, kwargs={}, optim=_ADAMW)
  return _preset('model', model, {**MODELS, **models.REGISTRY})  # raises, naming every choice


def task_config(
    dataset: str, model: str, classes: tuple[int, ...] = ()
) -> ml_collections.ConfigDict:
  """`model` (a MODELS preset or registry name) on `dataset` (a DATASETS preset).

  The model preset brings its usual optimizer (AdamW for a registry model without one);
  `classes` keeps only those class ids (() = all).
  """
  data = _preset('dataset', dataset, DATASETS)
  net = _model_preset(model)
  config = defaults.base_config()
  config.dataset.update(data['dataset'])
  config.dataset.classes = tuple(classes)
  config.preprocess.update(data['preprocess'])
  config.model.name = net['name']
  config.model.kwargs.update(net['kwargs'])
  config.optim.update(net['optim'])
  config.batch_size = 128
  return config


def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A few steps on the model's smoke size and a sliver of data: for tests and quick checks."""
  config.model.kwargs.update(models.get_spec(config.model.name).smoke)
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


def downstream(
    method: str, arg: str | None, default_model: str = 'cnn', **method_args
) -> ml_collections.ConfigDict:
  """Adapt the upstream checkpoint to a dataset's downstream task with `method`.

  Common arguments: model (default `default_model`: methods that need attention, such as
  IA3 and prompts, default to vit), dataset (default fashion_mnist: classes 5-9),
  checkpoint (a workdir or file), shots (examples per class, 0 = all), smoke; `method_args`
  are the method's own, with their defaults (k, rank, layer_decay, fast: see methods.apply).
  """
  arg = config_lib.parse_arg(
      arg,
      model=default_model,
      dataset='fashion_mnist',
      checkpoint='runs/pretrain',
      shots=0,
      smoke=False,
      **method_args,
  )
  classes = _preset('dataset', arg.dataset, DATASETS)['downstream_classes']
  config = task_config(arg.dataset, arg.model, classes)
  config.init.checkpoint = arg.checkpoint
  config.dataset.examples_per_class = arg.shots
  config.num_epochs = 5.0
  if arg.smoke:  # shrink first: method rules are written for the model that will run
    smoke(config)
  use_imported_model(config)
  return methods.apply(config, method, **{k: arg[k] for k in method_args})
