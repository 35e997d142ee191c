r"""Partial fine-tuning: unfreeze the last k blocks (and the head) of the pretrained model.

  jaxadapt train --config configs/methods/partial_ft.py:k=1 --workdir runs/partial_k1

Arguments: model, dataset (fashion_mnist = classes 5-9 | digits | cifar10), checkpoint
(default runs/pretrain), shots, smoke, k (blocks to unfreeze; the model's registry entry
says what a block is).
"""

from jaxadapt import presets


def get_config(arg=None):
  config = presets.downstream('partial_ft', arg, k=1)
  config.optim.lr = 2e-3
  return config
