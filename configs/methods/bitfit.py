r"""BitFit: only biases and norm scales/offsets (and the head) train.

  jaxadapt train --config configs/methods/bitfit.py --workdir runs/bitfit

Arguments: model, dataset (fashion_mnist = classes 5-9 | digits | cifar10), checkpoint
(default runs/pretrain), shots, smoke.
"""

from jaxadapt import presets


def get_config(arg=None):
  config = presets.downstream('bitfit', arg)
  config.optim.lr = 1e-2
  config.optim.weight_decay = 0.0
  return config
