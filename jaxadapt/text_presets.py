"""Building blocks for text config files: a text task, a model, and a method as config edits.

`text_task` picks the data (WordNet supersenses or a user's `text_file`), the tokenizer
and the length; `text_experiment` adds the model (all-MiniLM-L6-v2 or a small `bert`),
the method's rules and learning rate, and the budget. Everything is ordinary config data
that the shell can still override.
"""

from __future__ import annotations

import ml_collections

from jaxadapt import config as config_lib
from jaxadapt import defaults, methods, presets
from jaxadapt.models import bert

MINILM = 'hf:all-MiniLM-L6-v2'
METHODS = methods.METHODS + ('distill',)
MODELS = {
    # all-MiniLM-L6-v2's architecture (bert's defaults); its weights come from init.checkpoint.
    'minilm': {},
    # The distillation student and cheap scratch baseline: 2 blocks of width 128 (~4.3M
    # parameters, 3.9M of them the vocabulary embedding).
    'small': dict(width=128, depth=2, num_heads=2, mlp_dim=512),
}
# Peak learning rates (AdamW, cosine, 6% warm-up): BERT-style fine-tuning rates for the
# pretrained weights, larger ones where only small or fresh parameter sets train.
LEARNING_RATES = {
    'scratch': 5e-4,
    'linear_probe': 1e-2,
    'partial_ft': 1e-4,
    'full_ft': 5e-5,
    'lora': 1e-3,
    'bitfit': 1e-3,
    'dora': 1e-3,  # LoRA's rate: the same adapters, plus magnitudes
    'ia3': 3e-3,  # the IA3 paper's rate
    'prompt': 1e-2,  # prompt tokens start random and need large steps (Lester et al. use 0.3)
    'distill': 5e-4,
}
# The fresh, zero-initialised head of a pretrained model learns at this rate whatever the
# backbone's (a linear model, as in linear_probe): at fine-tuning rates it would barely
# leave zero in a short run.
HEAD_LR = 3e-3
SMOKE_SPLITS = ('train[:320]', 'validation[:128]', 'test[:128]')  # wordnet


def text_task(
    dataset: str, tokenizer: str = MINILM, max_length: int = 48
) -> ml_collections.ConfigDict:
  """A base config reading `dataset` ('wordnet' or 'text_file') as token ids."""
  config = defaults.base_config()
  config.dataset.name = dataset
  config.dataset.tokenizer = tokenizer
  config.dataset.max_length = max_length
  config.dataset.keep_small_classes = True  # k-shot: rare classes keep what they have
  if dataset == 'wordnet':
    config.dataset.train_split = 'train'
    config.dataset.val_split = 'validation'
    config.dataset.test_split = 'test'
  else:  # one file: 80/10/10 slices of its (shuffled) rows
    config.dataset.train_split = 'train[:80%]'
    config.dataset.val_split = 'train[80%:90%]'
    config.dataset.test_split = 'train[90%:]'
  config.preprocess.train = ''  # token ids: no image ops
  config.preprocess.eval = ''
  config.batch_size = 32
  config.eval_batch_size = 256
  config.optim.name = 'adamw'
  config.optim.weight_decay = 0.01
  config.optim.warmup_fraction = 0.06
  config.log_every = 50
  return config


def text_experiment(
    config: ml_collections.ConfigDict, arg: str | None
) -> ml_collections.ConfigDict:
  """Completes a `text_task` config from the config-file arguments (see configs/text/)."""
  arg = config_lib.parse_arg(
      arg,
      method='linear_probe',
      model='',
      shots=0,
      steps=0,
      smoke=False,
      checkpoint=MINILM,
      teacher='runs/wordnet_full_ft',
      k=2,
      rank=8,
      layer_decay=1.0,
      fast='',
      lr=0.0,
  )
  if arg.method not in METHODS:
    raise config_lib.ConfigError(
        f"unknown method '{arg.method}' in config argument; choose one of: {', '.join(METHODS)}"
    )
  model = arg.model or ('small' if arg.method == 'distill' else 'minilm')
  if model not in MODELS:
    raise config_lib.ConfigError(
        f"unknown model '{model}' in config argument; choose one of: {', '.join(MODELS)}"
    )
  config.model.name = 'bert'
  config.model.kwargs.update(MODELS[model])
  pretrained = arg.method not in ('scratch', 'distill')
  if pretrained:
    config.init.checkpoint = arg.checkpoint
    presets.use_imported_model(config)  # hf:/timm:... decide the architecture themselves

  config.dataset.examples_per_class = arg.shots
  # k-shot data is small: a fixed number of steps; all data: two epochs.
  config.num_steps = arg.steps or (300 if arg.shots else 0)
  config.num_epochs = 2.0
  if config.num_steps:
    config.eval_every = config.num_steps  # one exact evaluation, at the end
  config.ckpt_every = 500
  config.optim.lr = arg.lr or LEARNING_RATES[arg.method]
  if arg.smoke:
    _smoke(config, shrink_model=config.init.checkpoint is None or not _is_import(config))
    config.num_steps = arg.steps or config.num_steps

  if arg.method == 'distill':
    config.adapt.method = 'distill'
    config.distill.teachers = (arg.teacher,)
    config.distill.loss = 'kl'
    config.distill.temperature = 4.0
    config.distill.alpha = 0.9
    config.distill.cache_logits = True  # no augmentation: one teacher pass, not one per step
  else:
    method_args = {
        'partial_ft': dict(k=arg.k),
        'lora': dict(rank=arg.rank),
        'dora': dict(rank=arg.rank),
        'full_ft': dict(layer_decay=arg.layer_decay),
    }.get(arg.method, {})
    methods.apply(config, arg.method, **method_args)  # also: dont_load the new head
    if pretrained and arg.method != 'linear_probe':
      config.optim.lr_rules = (('head/.*', HEAD_LR / config.optim.lr),) + tuple(
          config.optim.lr_rules
      )
    if arg.method in ('lora', 'dora'):
      config.optim.weight_decay = 0.0
    if arg.fast:
      if arg.method != 'linear_probe':
        raise config_lib.ConfigError('config argument fast= is for method=linear_probe only')
      config.adapt.fast_probe = arg.fast
  return config


def _is_import(config: ml_collections.ConfigDict) -> bool:
  from jaxadapt import importers

  return importers.parse(config.init.checkpoint) is not None


def _smoke(config: ml_collections.ConfigDict, shrink_model: bool) -> None:
  """A few steps on a few hundred glosses; a tiny bert unless the checkpoint sets the model."""
  if shrink_model:
    config.model.kwargs.update(dict(bert.SPEC.smoke))
  if config.dataset.name == 'wordnet':
    config.dataset.train_split, config.dataset.val_split, config.dataset.test_split = SMOKE_SPLITS
  config.dataset.max_length = 32
  config.num_epochs, config.num_steps = 0.0, 8
  config.batch_size = 32
  config.eval_batch_size = 64
  config.log_every = 2
  config.eval_every = 4
  config.ckpt_every = 4
