r"""LoRA: low-rank adapters x W + (alpha/r) (x a) b on the kernels, base weights frozen.

  jaxadapt train --config configs/methods/lora.py --workdir runs/lora \
      --config.optim.lr=3e-3 --config.adapt.lora.alpha=16   # override the defaults

Arguments: model, dataset (fashion_mnist = classes 5-9 | digits | cifar10), checkpoint
(default runs/pretrain), shots, smoke, rank. Targets: the model's registry entry (conv
and dense kernels for cnn, block conv kernels for resnet, attention query/value and MLP
kernels for vit); override with --config.adapt.lora.rules.
"""

from jaxadapt import presets


def get_config(arg=None):
  config = presets.downstream('lora', arg, rank=8)
  config.optim.lr = 1e-2
  config.optim.weight_decay = 0.0
  return config
