r"""MNIST-1D (Greydanus 2020, "Scaling down deep learning"): the paper's four models and recipe.

  jaxadapt train --config configs/mnist1d/train.py:model=cnn1d --workdir runs/mnist1d_cnn1d
  jaxadapt train --config configs/mnist1d/train.py:model=gru,shuffle --workdir runs/mnist1d_gru_shuf
  jaxadapt train --config configs/mnist1d/train.py:model=mlp,val=500 --workdir runs/mnist1d_mlp_val

Arguments (`file.py:key=value,...`):
  model = linear | mlp | cnn1d | gru  (jaxadapt/models/small.py; paper: 32% / 68% / 94% / 91%)
  shuffle = the paper's "shuffled" variant: one fixed permutation of the 40 positions,
            `permute(42)` in preprocess.train and .eval (paper: 32% / 68% / 56% / 57%)
  val = hold out the last `val` of the 4000 training examples as `val/` (train[:4000-val],
        train[4000-val:]); 0 (default) is the paper's protocol: train on all 4000 and
        report `test/accuracy` on the 1000 test examples, with no validation split
  smoke = a few steps on a tinier model and a sliver of data (tests, quick checks)

Training as in the paper's benchmark (notebooks/mnist1d-classification.ipynb): Adam, constant
lr 1e-2, no weight decay, batch 100, 6000 steps (150 epochs), evaluation every 250 steps.
Unlike the reference loop, batches are reshuffled every epoch and the seed is ours.
"""

from jaxadapt import config as config_lib
from jaxadapt import defaults
from jaxadapt import presets

MODELS = {  # dropout 0 as in the paper; listed so --config.model.kwargs.dropout=... works
    'linear': dict(dropout=0.0),
    'mlp': dict(widths=(100, 100), dropout=0.0),
    'cnn1d': dict(channels=25, kernel_sizes=(5, 3, 3), dropout=0.0),
    'gru': dict(hidden=6, bidirectional=True, dropout=0.0),
}
NUM_TRAIN = 4000
SHUFFLE_SEED = 42  # np.random.seed(42) is the permutation of the paper's notebook


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, model='cnn1d', shuffle=False, val=0, smoke=False)
  if arg.model not in MODELS:
    raise config_lib.ConfigError(
        f"unknown model '{arg.model}' in config argument; " f"choose one of: {', '.join(MODELS)}"
    )
  if not 0 <= arg.val < NUM_TRAIN:
    raise config_lib.ConfigError(f'config argument val={arg.val} must be in [0, {NUM_TRAIN})')
  config = defaults.base_config()
  config.dataset.name = 'mnist1d'
  if arg.val:
    config.dataset.train_split = f'train[:{NUM_TRAIN - arg.val}]'
    config.dataset.val_split = f'train[{NUM_TRAIN - arg.val}:]'
  else:
    config.dataset.train_split = 'train'
    config.dataset.val_split = ''  # no validation split: evaluate on test only
  config.dataset.test_split = 'test'
  # The generator already standardises the data (mean 0, std 1): no scaling, only the shuffle.
  spec = f'permute({SHUFFLE_SEED})' if arg.shuffle else ''
  config.preprocess.train = spec
  config.preprocess.eval = spec

  config.model.name = arg.model
  config.model.kwargs.update(MODELS[arg.model])

  config.batch_size = 100
  config.eval_batch_size = 1000
  config.num_steps = 6000
  config.optim.name = 'adamw'  # with weight_decay 0 this is the paper's Adam
  config.optim.lr = 1e-2
  config.optim.weight_decay = 0.0
  config.optim.schedule = 'constant'
  config.optim.warmup_steps = 0
  config.optim.warmup_fraction = 0.0
  config.log_every = 250
  config.eval_every = 250
  config.ckpt_every = 1000
  return presets.smoke(config) if arg.smoke else config
