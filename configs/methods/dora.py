r"""DoRA: LoRA's direction W + (alpha/r) a b renormalised per output column, times a learned
magnitude (jaxadapt/dora.py); base weights frozen.

  jaxadapt train --config configs/methods/dora.py:model=vit --workdir runs/dora \
      --config.adapt.dora.alpha=16   # override the defaults

Arguments: model, dataset (fashion_mnist = classes 5-9 | digits | cifar10), checkpoint
(default runs/pretrain), shots, smoke, rank. Targets: the model's LoRA targets (its
registry entry); override with --config.adapt.dora.rules.
"""

from jaxadapt import presets


def get_config(arg=None):
  config = presets.downstream('dora', arg, rank=8)
  config.optim.lr = 1e-2
  config.optim.weight_decay = 0.0
  return config
