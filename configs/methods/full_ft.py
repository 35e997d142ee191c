r"""Full fine-tuning: every parameter trains, optionally with layer-wise learning-rate decay.

  jaxadapt train --config configs/methods/full_ft.py --workdir runs/full_ft
  jaxadapt train --config configs/methods/full_ft.py:layer_decay=0.7 --workdir runs/full_ft_lld

Arguments: model, dataset (fashion_mnist = classes 5-9 | digits | cifar10), checkpoint
(default runs/pretrain), shots, smoke, layer_decay (block i of n gets lr x decay^(n+1-i);
1.0 = off).
"""

from jaxadapt import presets


def get_config(arg=None):
  config = presets.downstream('full_ft', arg, layer_decay=1.0)
  config.optim.lr = 2e-3
  return config
