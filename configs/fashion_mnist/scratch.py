r"""Fashion-MNIST from scratch: the reference run (all parameters trainable, random init).

  jaxadapt train --config configs/fashion_mnist/scratch.py --workdir runs/scratch
  jaxadapt train --config configs/fashion_mnist/scratch.py:model=resnet --workdir runs/r \
      --config.optim.lr=0.05 --config.batch_size=256

Arguments (`file.py:key=value,...`): model = cnn | resnet | vit;
smoke = run a few steps on a tiny model (for tests and quick checks).
"""

from jaxadapt import config as config_lib
from jaxadapt import defaults

MODELS = {
    # 2x(conv-conv-pool) + dense: the compact default; reaches >91% in minutes on 2 CPU cores.
    'cnn': dict(name='cnn', kwargs=dict(widths=(32, 64), dense=256, dropout=0.3)),
    # BiT-style ResNet (GroupNorm), 3 stages for 28x28 inputs.
    'resnet': dict(name='resnet', kwargs=dict(depth=10, width=32, num_stages=3)),
    'vit': dict(name='vit', kwargs=dict(patch_size=4, width=128, depth=4, num_heads=4)),
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, model='cnn', smoke=False)
  if arg.model not in MODELS:
    raise config_lib.ConfigError(f"unknown model '{arg.model}' in config argument; "
                                 f"choose one of: {', '.join(MODELS)}")
  config = defaults.base_config()
  config.model.name = MODELS[arg.model]['name']
  config.model.kwargs.update(MODELS[arg.model]['kwargs'])
  config.preprocess.train = 'scale|normalize(0.286,0.353)|pad_crop(2)|flip'
  config.batch_size = 128
  config.num_epochs = 12.0
  config.optim.name = 'adamw'
  config.optim.lr = 2e-3
  config.optim.weight_decay = 0.05
  config.optim.warmup_fraction = 0.03
  if arg.model == 'resnet':
    config.optim.name = 'sgd'
    config.optim.lr = 0.1
    config.optim.weight_decay = 5e-4
  if arg.smoke:
    config.model.kwargs.update(_tiny(arg.model))
    config.dataset.train_split = 'train[:512]'
    config.dataset.val_split = 'train[512:768]'
    config.dataset.test_split = 'test[:256]'
    config.num_epochs = 0.0
    config.num_steps = 6
    config.batch_size = 64
    config.eval_batch_size = 128
    config.log_every = 2
    config.eval_every = 3
    config.ckpt_every = 3
  return config


def _tiny(model):
  return {'cnn': dict(widths=(4, 8), dense=16),
          'resnet': dict(width=4, num_stages=2),
          'vit': dict(width=16, depth=1, num_heads=2)}[model]
