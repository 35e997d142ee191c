r"""Upstream pretraining: from scratch on Fashion-MNIST classes 0-4 (tops, trousers, dresses, coats).

  jaxadapt train --config configs/fashion_mnist/pretrain.py --workdir runs/pretrain

The method configs (configs/methods/: linear_probe, partial_ft, full_ft, lora,
bitfit) load this run's checkpoint (`checkpoint=runs/pretrain`) and adapt it to
classes 5-9 (sandals, shirts, sneakers, bags, boots), or to another task with
`dataset=digits`. Arguments: model = cnn | resnet | vit; smoke.
"""

from jaxadapt import config as config_lib
from jaxadapt import presets


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, model='cnn', smoke=False)
  config = presets.task_config('fashion_mnist', arg.model, presets.UPSTREAM_CLASSES)
  config.adapt.method = 'pretrain'
  config.num_epochs = 6.0
  return presets.smoke(config) if arg.smoke else config
