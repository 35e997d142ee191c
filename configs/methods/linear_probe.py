r"""Linear probe (transfer learning, feature extraction): frozen backbone, new head.

  jaxadapt train --config configs/fashion_mnist/pretrain.py --workdir runs/pretrain
  jaxadapt train --config configs/methods/linear_probe.py --workdir runs/probe
  # fast path: backbone features computed once, head fitted on the cache
  jaxadapt train --config configs/methods/linear_probe.py:fast=softmax --workdir runs/probe_fast
  # another downstream task for the same upstream model
  jaxadapt train --config configs/methods/linear_probe.py:dataset=digits --workdir runs/probe_digits

Arguments: model, dataset (fashion_mnist = classes 5-9 | digits | cifar10), checkpoint
(default runs/pretrain), shots (0 = all), smoke, fast = '' (epoch loop) | softmax | ridge.
"""

from jaxadapt import presets


def get_config(arg=None):
  config = presets.downstream('linear_probe', arg, fast='')
  config.optim.lr = 3e-2  # only the head trains: a linear model takes a larger step
  return config
