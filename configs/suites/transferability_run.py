r"""One run of Yosinski et al. 2014 ("How transferable are features in deep neural networks?").

An 8-weight-layer CNN (6 conv + dense + head, the depth of the paper's network)
on half of Fashion-MNIST's classes (`--config.dataset.classes=(...)`):

  transferability_run.py                         baseX: trained from scratch on X
  transferability_run.py:base=DIR,n=3            XnB: layers 1..3 copied from DIR and frozen,
                                                 layers 4..8 re-initialised and trained on B
  transferability_run.py:base=DIR,n=3,fine_tune  XnB+: the copied layers are fine-tuned too

It is a config (`jaxadapt train --config ...`), not a suite: the suite beside it,
configs/suites/transferability.py, runs the whole experiment (baseA, baseB,
BnB, BnB+, AnB, AnB+ for n = 1..7 and several class splits).
"""

from jaxadapt import config as config_lib
from jaxadapt import presets

# The weight layers in order, as parameter path prefixes of the cnn model below.
LAYERS = (
    'block1/conv1',
    'block1/conv2',
    'block2/conv1',
    'block2/conv2',
    'block3/conv1',
    'block3/conv2',
    'dense',
    'head',
)


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, base='', n=0, fine_tune=False, smoke=False)
  config = presets.task_config('fashion_mnist', 'cnn')
  config.model.kwargs.update(widths=(8, 16, 32), convs=2, dense=64, dropout=0.0, norm='none')
  config.dataset.classes = (0, 1, 2, 3, 4)
  config.dataset.examples_per_class = 1000  # 5,000 training images per half
  config.dataset.val_split = ''  # test accuracy is the figure; skip a val pass
  config.batch_size = 64
  config.num_epochs = 0.0
  config.num_steps = 600  # ~8 epochs of the 5,000 images
  config.ckpt_every = 0
  if not 0 <= arg.n < len(LAYERS):
    raise config_lib.ConfigError(
        f'n={arg.n}: copy 0..{len(LAYERS) - 1} of the {len(LAYERS)} '
        f'weight layers (the head is always new)'
    )
  if arg.n and not arg.base:
    raise config_lib.ConfigError('n > 0 copies layers from a base run: give base=<its workdir>')
  if arg.base:
    copied, fresh = LAYERS[: arg.n], LAYERS[arg.n :]
    config.init.checkpoint = arg.base
    config.init.dont_load = (f"({'|'.join(fresh)})/.*",)
    config.adapt.method = f"{'fine_tune' if arg.fine_tune else 'frozen'}_{arg.n}"
    if not arg.fine_tune and copied:
      config.adapt.trainable = ((f"({'|'.join(copied)})/.*", 'frozen'), ('.*', 'train'))
  if arg.smoke:
    presets.smoke(config)
    config.model.kwargs.update(widths=(2, 4, 4), dense=8)
    config.dataset.val_split = ''
    config.eval_every = 0
  return config
