r"""Partial fine-tuning: unfreeze the last k blocks (and the head) of the pretrained model.

  jaxadapt train --config configs/fashion_mnist/partial_ft.py:k=1 --workdir runs/partial_k1

Arguments: model, checkpoint (default runs/pretrain), shots, smoke, k (blocks to unfreeze).
"""

from jaxadapt import presets


def get_config(arg=None):
  config = presets.downstream('partial_ft', arg, k=1)
  config.optim.lr = 2e-3
  return config
