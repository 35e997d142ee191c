r"""Fashion-MNIST from scratch: the reference run (all parameters trainable, random init).

  jaxadapt train --config configs/fashion_mnist/scratch.py --workdir runs/scratch
  jaxadapt train --config configs/fashion_mnist/scratch.py:model=resnet --workdir runs/r \
      --config.optim.lr=0.05 --config.batch_size=256

Arguments (`file.py:key=value,...`): model = cnn | resnet | vit;
smoke = a few steps on a tiny model (for tests and quick checks).
"""

from jaxadapt import config as config_lib
from jaxadapt import presets


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, model='cnn', smoke=False)
  config = presets.task_config('fashion_mnist', arg.model)
  config.num_epochs = 10.0
  return presets.smoke(config) if arg.smoke else config
