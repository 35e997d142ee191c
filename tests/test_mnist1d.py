"""MNIST-1D: generated TFDS builder, the permute op, the paper's four models, config and CLI run."""

import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from mnist1d.data import get_dataset_args, make_dataset

from jaxadapt import cli, config as config_lib, methods, path_rules, param_tree
from jaxadapt.data import dataset_info, generate_mnist1d, load_split, make_preprocess, output_shape
from jaxadapt.data.preprocess import permutation
from jaxadapt.metrics import read_metrics
from jaxadapt.models import build_model
from jaxadapt.errors import DataError

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / 'configs/mnist1d/train.py')
# PyTorch reference counts (notebooks/models.py); flax's GRU has 24 fewer (redundant) biases.
TORCH_PARAMS = {'linear': 410, 'mlp': 15_210, 'cnn1d': 5_210, 'gru': 5_134}
FEATURES = {'linear': 40, 'mlp': 100, 'cnn1d': 125, 'gru': 480}
PAPER_KWARGS = {'linear': {}, 'mlp': {}, 'cnn1d': {}, 'gru': {}}  # every default is the paper's


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('mnist1d_tfds'))


def _cfg(data_dir):
  return ml_collections.ConfigDict(
      dict(
          name='mnist1d',
          data_dir=data_dir,
          source_dir=None,
          classes=(),
          examples_per_class=0,
          subset_seed=0,
      )
  )


# ---- builder ----


def test_builder_equals_the_generator(data_dir):
  np.random.seed(123)
  before = np.random.get_state()[1].copy()
  direct = make_dataset(get_dataset_args())  # the package's own call (it reseeds globally)
  np.random.seed(123)
  generate_mnist1d()
  np.testing.assert_array_equal(np.random.get_state()[1], before)  # caller's RNG untouched

  cfg = _cfg(data_dir)
  assert dataset_info(cfg) == {'num_classes': 10, 'image_shape': (40, 1)}
  train, test = load_split(cfg, 'train'), load_split(cfg, 'test')
  assert train['image'].shape == (4000, 40, 1) and train['image'].dtype == np.float32
  assert test['image'].shape == (1000, 40, 1) and train['label'].dtype == np.int32
  # Same arrays in the same order (float64 -> float32 is the only change).
  np.testing.assert_array_equal(train['image'][..., 0], direct['x'].astype(np.float32))
  np.testing.assert_array_equal(train['label'], direct['y'])
  np.testing.assert_array_equal(test['image'][..., 0], direct['x_test'].astype(np.float32))
  np.testing.assert_array_equal(test['label'], direct['y_test'])
  head, tail = load_split(cfg, 'train[:3500]'), load_split(cfg, 'train[3500:]')
  assert len(head['label']) == 3500 and len(tail['label']) == 500
  np.testing.assert_array_equal(tail['image'], train['image'][3500:])


# ---- permute op ----


def test_permute_is_one_fixed_invertible_permutation():
  x = jax.random.normal(jax.random.key(0), (5, 40, 1))
  order = np.random.RandomState(42).permutation(40)  # the paper notebook's shuffle
  np.testing.assert_array_equal(permutation(42, 40), order)
  pre = make_preprocess('permute(42)')
  y_train = pre(x, jax.random.key(1), True)
  y_eval = pre(x, None, False)
  np.testing.assert_array_equal(y_train, y_eval)  # train and eval agree
  np.testing.assert_array_equal(y_eval, np.asarray(x)[:, order])  # same order for every row
  assert not np.array_equal(y_eval, x)
  np.testing.assert_array_equal(np.asarray(y_eval)[:, np.argsort(order)], x)  # invertible
  assert not np.array_equal(make_preprocess('permute(0)')(x), y_eval)
  assert output_shape('permute(42)', (40, 1)) == (40, 1)


def test_permute_on_images_moves_pixels_with_their_channels():
  x = jnp.arange(2 * 3 * 4 * 2, dtype=jnp.float32).reshape(2, 3, 4, 2)
  y = make_preprocess('permute(7)')(x)
  order = permutation(7, 12)
  np.testing.assert_array_equal(y, np.asarray(x).reshape(2, 12, 2)[:, order].reshape(x.shape))


def test_sequence_preprocess_errors():
  with pytest.raises(DataError, match=r'permute\(seed\) with an integer seed'):
    make_preprocess('permute(1.5)')
  with pytest.raises(DataError, match="'flip' needs images"):
    output_shape('flip', (40, 1))
  with pytest.raises(DataError, match="'pad_crop' needs images"):
    make_preprocess('pad_crop(2)')(jnp.zeros((2, 40, 1)), jax.random.key(0), True)
  assert output_shape('normalize(0,1)', (40, 1)) == (40, 1)


# ---- models ----


@pytest.mark.parametrize('name', list(TORCH_PARAMS))
def test_model_shapes_and_parameter_counts(name):
  model = build_model(name, 10, **PAPER_KWARGS[name])
  x = jax.random.normal(jax.random.key(1), (3, 40, 1))
  params = jax.jit(model.init)(jax.random.key(0), x)['params']
  count = sum(int(v.size) for v in jax.tree.leaves(params))
  assert count == TORCH_PARAMS[name] - (24 if name == 'gru' else 0)
  assert not np.any(params['head']['kernel'])  # distillation reads the class count here
  assert params['head']['kernel'].shape[-1] == 10
  params = {
      **params,
      'head': {'kernel': jnp.ones_like(params['head']['kernel']), 'bias': params['head']['bias']},
  }
  logits = model.apply({'params': params}, x)
  feats = model.apply({'params': params}, x, features_only=True)
  assert logits.shape == (3, 10) and feats.shape == (3, FEATURES[name])
  assert np.all(np.isfinite(logits)) and np.std(logits[:, 0]) > 0
  # Any [B, *spatial, C] batch reads as a sequence (an 8x5 image: 40 positions).
  image = jax.eval_shape(lambda: model.apply({'params': params}, x.reshape(3, 8, 5, 1)))
  assert image.shape == (3, 10)


def test_parameter_paths():
  def paths(name, **kwargs):
    model = build_model(name, 10, **kwargs)
    return set(
        param_tree.flatten(
            jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 40, 1)))['params']
        )
    )

  layers = lambda *names: {f'{n}/{leaf}' for n in names for leaf in ('kernel', 'bias')}
  assert paths('linear') == layers('head')
  assert paths('mlp', widths=(8, 8, 4)) == layers('fc1', 'fc2', 'fc3', 'head')
  assert paths('cnn1d') == layers('conv1', 'conv2', 'conv3', 'head')
  cell = layers('ir', 'iz', 'in', 'hn') | {'hr/kernel', 'hz/kernel'}
  assert paths('gru') == {
      f'gru/{d}/cell/{p}' for d in ('forward_rnn', 'backward_rnn') for p in cell
  } | layers('head')
  assert paths('gru', bidirectional=False) == {f'gru/cell/{p}' for p in cell} | layers('head')


def test_dropout_before_head_needs_an_rng_in_training():
  model = build_model('mlp', 10, dropout=0.5)
  x = jnp.ones((4, 40, 1))
  v = model.init(jax.random.key(0), x)
  a = model.apply(v, x, train=True, features_only=False, rngs={'dropout': jax.random.key(1)})
  assert a.shape == (4, 10)
  np.testing.assert_array_equal(model.apply(v, x), model.apply(v, x))


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_gru_matches_the_torch_gru_equations():
  # torch.nn.GRU(bidirectional=True, batch_first=True) written out in numpy; its b_hr, b_hz
  # are the zero extra biases flax folds into b_ir, b_iz.
  model = build_model('gru', 10, hidden=3)
  x = np.asarray(jax.random.normal(jax.random.key(2), (2, 7, 1)))
  params = jax.device_get(model.init(jax.random.key(0), x)['params'])
  params['head']['kernel'] = np.asarray(jax.random.normal(jax.random.key(3), (7 * 6, 10)))

  def run(p, steps):
    h, out = np.zeros((x.shape[0], 3)), {}
    for t in steps:
      xt = x[:, t]
      dense = lambda name, v: v @ p[name]['kernel'] + p[name].get('bias', 0)
      r = _sigmoid(dense('ir', xt) + dense('hr', h))
      z = _sigmoid(dense('iz', xt) + dense('hz', h))
      n = np.tanh(dense('in', xt) + r * dense('hn', h))
      h = (1 - z) * n + z * h
      out[t] = h
    return np.stack([out[t] for t in range(x.shape[1])], axis=1)

  fwd = run(params['gru']['forward_rnn']['cell'], range(7))
  bwd = run(params['gru']['backward_rnn']['cell'], reversed(range(7)))
  feats = np.concatenate([fwd, bwd], axis=-1).reshape(2, -1)
  expected = feats @ params['head']['kernel'] + params['head']['bias']
  np.testing.assert_allclose(model.apply({'params': params}, x), expected, rtol=1e-5, atol=1e-5)


# ---- config and end to end ----


def test_config_is_the_paper_recipe():
  c = config_lib.load_config(CONFIG + ':model=gru')
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
  c = config_lib.load_config(CONFIG + ':model=mlp,shuffle,val=500')
  assert c.preprocess.train == c.preprocess.eval == 'permute(42)'
  assert (c.dataset.train_split, c.dataset.val_split) == ('train[:3500]', 'train[3500:]')
  with pytest.raises(config_lib.ConfigError, match="unknown model 'rnn'"):
    config_lib.load_config(CONFIG + ':model=rnn')


def test_cli_smoke_run(tmp_path, data_dir):
  wd = tmp_path / 'run'
  code = cli.main(
      [
          'train',
          '--quiet',
          '--config',
          CONFIG + ':model=cnn1d,shuffle,smoke',
          '--workdir',
          str(wd),
          f'--config.dataset.data_dir={data_dir}',
      ]
  )
  assert code == 0
  records = read_metrics(wd)
  assert [r['step'] for r in records if 'train/loss' in r] == [2, 4, 6]
  final = [r for r in records if 'test/accuracy' in r][-1]
  assert final['step'] == 6 and 0.0 <= final['test/accuracy'] <= 1.0
  assert 'conv3/kernel' in (wd / 'params.txt').read_text()


@pytest.mark.parametrize(
    'model, method, trainable',
    [
        ('mlp', 'linear_probe', {'head/kernel', 'head/bias'}),
        ('mlp', 'partial_ft', {'fc2/kernel', 'fc2/bias', 'head/kernel', 'head/bias'}),
        ('cnn1d', 'partial_ft', {'conv3/kernel', 'conv3/bias', 'head/kernel', 'head/bias'}),
        ('cnn1d', 'bitfit', {'conv1/bias', 'conv2/bias', 'conv3/bias', 'head/kernel', 'head/bias'}),
        ('gru', 'partial_ft', None),  # one block: everything trains
    ],
)
def test_adaptation_methods_cover_the_mnist1d_models(model, method, trainable):
  config = config_lib.load_config(f'{CONFIG}:model={model}')
  with config.unlocked():
    methods.apply(config, method)
  net = build_model(model, 10, **config.model.kwargs)
  params = net.init(jax.random.PRNGKey(0), jnp.zeros((2, 40, 1)))['params']
  paths = list(param_tree.flatten(params))
  decided = path_rules.match(config.adapt.trainable, paths, 'adapt.trainable')
  got = {p for p, v in decided.items() if v == 'train'}
  assert got == (set(paths) if trainable is None else trainable)


def test_lora_on_cnn1d_says_what_to_use_instead():
  config = config_lib.load_config(f'{CONFIG}:model=cnn1d')
  with (
      config.unlocked(),
      pytest.raises(methods.MethodError, match="no adapter targets for model 'cnn1d'"),
  ):
    methods.apply(config, 'lora')
