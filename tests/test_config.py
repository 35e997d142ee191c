"""Config files, `file.py:args`, shell overrides and the locked-config errors."""

import pytest

from jaxadapt import config as config_lib

SCRATCH = 'configs/fashion_mnist/scratch.py'
MNIST1D = 'configs/mnist1d/train.py'


def test_override_types_and_nesting():
  c = config_lib.load_config(
      SCRATCH,
      [
          '--config.optim.lr=0.05',
          '--config.batch_size=256',
          '--config.dataset.data_dir=/tmp/x',
          '--config.optim.name=sgd',
      ],
  )
  assert c.optim.lr == 0.05 and c.batch_size == 256
  assert c.dataset.data_dir == '/tmp/x' and c.optim.name == 'sgd'


def test_int_value_for_float_key_becomes_float():
  c = config_lib.load_config(SCRATCH, ['--config.optim.lr=1'])
  assert isinstance(c.optim.lr, float) and c.optim.lr == 1.0


def test_file_argument_selects_variant():
  c = config_lib.load_config(f'{SCRATCH}:model=resnet')
  assert c.model.name == 'resnet'
  assert config_lib.load_config(SCRATCH).model.name == 'cnn'


def test_typo_key_suggests_nearest():
  with pytest.raises(config_lib.ConfigError, match=r"unknown config key 'optim\.lrr'.*optim\.lr"):
    config_lib.load_config(SCRATCH, ['--config.optim.lrr=0.1'])
  with pytest.raises(config_lib.ConfigError, match=r'batch_size'):
    config_lib.load_config(SCRATCH, ['--config.batchsize=3'])


def test_wrong_type_is_an_error():
  with pytest.raises(config_lib.ConfigError, match='batch_size'):
    config_lib.load_config(SCRATCH, ['--config.batch_size=big'])


def test_locked_config_rejects_new_keys_in_python():
  c = config_lib.load_config(SCRATCH)
  with pytest.raises(AttributeError):
    c.optim.new_key = 1


def test_parse_arg():
  a = config_lib.parse_arg('model=vit,smoke,k=3', model='cnn', smoke=False, k=1)
  assert (a.model, a.smoke, a.k) == ('vit', True, 3)
  with pytest.raises(
      config_lib.ConfigError, match=r"unknown config argument 'modle'.*did you mean model"
  ):
    config_lib.parse_arg('modle=vit', model='cnn')


def test_missing_file_and_bad_variant():
  with pytest.raises(config_lib.ConfigError, match='not found'):
    config_lib.load_config('configs/nope.py')
  with pytest.raises(config_lib.ConfigError, match="unknown model 'resnte'"):
    config_lib.load_config(f'{SCRATCH}:model=resnte')


def test_differing_keys_names_nested_keys_and_skips_ignored_ones():
  a = {'seed': 0, 'optim': {'lr': 0.1, 'rules': [['.*', 1.0]]}, 'model': {'name': 'cnn'}}
  b = {'seed': 1, 'optim': {'lr': 0.2, 'rules': [['.*', 1.0]]}, 'extra': None}
  assert config_lib.differing_keys(a, b) == ['extra', 'model.name', 'optim.lr', 'seed']
  assert config_lib.differing_keys(a, b, ignore=('seed', 'extra')) == ['model.name', 'optim.lr']
  assert config_lib.differing_keys(a, a) == []


def test_mnist1d_config_is_the_paper_recipe():
  c = config_lib.load_config(MNIST1D + ':model=gru')
  assert (c.dataset.name, c.dataset.train_split, c.dataset.val_split, c.dataset.test_split) == (
      'mnist1d',
      'train',
      '',
      'test',
  )
  assert (c.batch_size, c.num_steps, c.optim.lr, c.optim.weight_decay, c.optim.schedule) == (
      100,
      6000,
      1e-2,
      0.0,
      'constant',
  )
  assert c.preprocess.train == c.preprocess.eval == ''
  c = config_lib.load_config(MNIST1D + ':model=mlp,shuffle,val=500')
  assert c.preprocess.train == c.preprocess.eval == 'permute(42)'
  assert (c.dataset.train_split, c.dataset.val_split) == ('train[:3500]', 'train[3500:]')
  with pytest.raises(config_lib.ConfigError, match="unknown model 'rnn'"):
    config_lib.load_config(MNIST1D + ':model=rnn')
