"""Adaptation methods (jaxadapt/methods.py): what trains, what stays bitwise frozen, for every
model of the registry and for a model added in a test."""

import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadapt import checkpoint, cli, config as config_lib, cost, methods, models, param_tree
from jaxadapt import path_rules, presets, step as step_lib
from jaxadapt.metrics import read_metrics
from jaxadapt.models import Blocks, ModelSpec
from jaxadapt.models.common import zeros

from shared_runs import build_experiment, config_spec, host_flat, trained_run, upstream_cnn
from shared_runs import upstream_file, upstream_flat

ROOT = pathlib.Path(__file__).resolve().parents[1]
MNIST1D = str(ROOT / 'configs/mnist1d/train.py')


def upstream(tmp_path_factory, model):
  return (
      upstream_cnn(tmp_path_factory) if model == 'cnn' else upstream_file(tmp_path_factory, model)
  )


# --------------------------------------------------- frozen is frozen, trainable trains

CASES = [
    ('linear_probe', 'cnn'),
    ('partial_ft', 'cnn'),
    ('full_ft', 'cnn'),
    ('lora', 'cnn'),
    ('bitfit', 'cnn'),
    ('lora', 'vit'),
    ('partial_ft', 'vit'),
    ('bitfit', 'resnet'),
    ('dora', 'vit'),
    ('ia3', 'vit'),
    ('prompt', 'vit'),
]
# The resnet preset uses SGD: behind a zero-initialised head, six SGD steps move the norm
# parameters by ~1e-6, a few float32 ulps (or not at all with a freshly initialised ResNet's
# zero last-norm scales). Adam's normalised steps make "every trainable leaf changed" robust.
EXTRA = {'resnet': ['--config.optim.name=adamw']}


@pytest.mark.parametrize('method, model', CASES)
def test_frozen_leaves_bitwise_unchanged_and_trainable_leaves_change(
    tmp_path_factory, method, model
):
  up = upstream(tmp_path_factory, model)
  spec = config_spec(method, f'model={model},smoke,checkpoint={up}')
  overrides = EXTRA.get(model, [])
  wd = trained_run(tmp_path_factory, f'{method}_{model}', spec, *overrides)

  table = json.loads((wd / 'params.json').read_text())
  final = host_flat(checkpoint.restore_params(wd))
  initial = host_flat(build_experiment(config_lib.load_config(spec, overrides)).params)
  pretrained = upstream_flat(up)
  assert set(table) == set(final) == set(initial)
  frozen = [p for p, row in table.items() if not row['trainable']]
  trainable = [p for p, row in table.items() if row['trainable']]
  assert trainable, 'nothing trained'
  if method != 'full_ft':
    assert frozen, f'{method} froze nothing'

  for p in frozen:
    assert final[p].dtype == initial[p].dtype == pretrained[p].dtype, p
    # Frozen leaves all come from the checkpoint (only the head is not loaded).
    assert np.array_equal(initial[p], pretrained[p]), f'{p} was not loaded from the checkpoint'
    assert np.array_equal(final[p], pretrained[p]), f'frozen {p} changed during training'
  for p in trainable:
    assert final[p].dtype == initial[p].dtype, p
    assert not np.array_equal(final[p], initial[p]), f'trainable {p} did not change'

  # What trains is what the method says.
  assert {'head/kernel', 'head/bias'} <= set(trainable)
  if method == 'linear_probe':
    assert set(trainable) == {'head/kernel', 'head/bias'}
  if method == 'lora':
    assert {p for p in trainable if not p.startswith('head/')} == {
        p for p in final if p.startswith('lora/')
    }
    bs = [p for p in final if p.startswith('lora/') and p.endswith('/b')]
    assert bs
    for p in bs:
      assert not initial[p].any(), f'{p} should start at zero'
      assert final[p].any(), f'{p} is still zero after training'
    # Every base kernel under an adapter stays frozen.
    for p in bs:
      base = p[len('lora/') : -len('/b')]
      assert base in frozen
  if method in ('dora', 'ia3', 'prompt'):  # only the method's own params and the head
    own = {'dora': 'dora/', 'ia3': 'ia3/', 'prompt': 'prompt'}[method]
    assert {p for p in trainable if not p.startswith('head/')} == {
        p for p in final if p.startswith(own)
    }
  if method == 'bitfit':
    assert all(p.startswith('head/') or p.endswith(('/bias', '/scale')) for p in trainable)
    assert not any(p.endswith('/kernel') for p in trainable if not p.startswith('head/'))
  if method == 'full_ft':
    assert not frozen
  if method == 'partial_ft':
    last = 'block2/' if model == 'cnn' else 'encoder/block1/'
    assert any(p.startswith(last) for p in trainable)
    if model == 'cnn':
      assert not any(p.startswith('block1/') for p in trainable)
    else:
      assert not any(p.startswith(('embedding/', 'pos_embedding', 'cls')) for p in trainable)

  records = read_metrics(wd)
  assert any('test/accuracy' in r for r in records)


# -------------------------------------------------------- optimizer state


def test_optimizer_state_holds_nothing_for_frozen_parameters():
  def opt_bytes(method):
    config = config_lib.load_config(config_spec(method, 'smoke'))
    with config.unlocked():
      config.init.checkpoint = None  # shapes only: no checkpoint needed
    exp = build_experiment(config)
    state = jax.eval_shape(lambda p: step_lib.init_state(p, exp.tx), exp.params)
    flat = param_tree.flatten(exp.params)
    n_train = sum(v.size for p, v in flat.items() if exp.trainable[p])
    return cost.tree_bytes(state.opt_state), n_train, sum(v.size for v in flat.values())

  probe_bytes, probe_train, total = opt_bytes('linear_probe')
  full_bytes, full_train, _ = opt_bytes('full_ft')
  head = 16 * 5 + 5  # smoke cnn: dense=16 features -> 5 classes
  assert probe_train == head and full_train == total
  # Adam: two float32 moments per trainable value, plus int32 step counts per group.
  adam = 2 * head * 4
  assert adam <= probe_bytes <= adam + 32, probe_bytes
  assert 2 * total * 4 <= full_bytes <= 2 * total * 4 + 32, full_bytes
  assert probe_bytes < 0.05 * full_bytes


# ------------------------------------------------------- partial_ft k, layer decay


def test_partial_ft_k2_trains_a_superset_of_k1():
  def trainable(k):
    config = config_lib.load_config(config_spec('partial_ft', f'smoke,k={k}'))
    with config.unlocked():
      config.init.checkpoint = None
    return {p for p, t in build_experiment(config).trainable.items() if t}

  k1, k2 = trainable(1), trainable(2)
  assert k1 < k2
  assert {p.split('/')[0] for p in k2 - k1} == {'block1'}
  assert {'block2/conv1/kernel', 'dense/kernel', 'head/kernel'} <= k1


@pytest.mark.parametrize('k', [0, 3])
def test_partial_ft_k_out_of_range(k, capsys):
  config = config_lib.load_config(config_spec('scratch', 'smoke'))
  with pytest.raises(methods.MethodError, match=f'k={k}'):
    methods.apply(config, 'partial_ft', k=k)
  code = cli.main(
      [
          'train',
          '--quiet',
          '--config',
          config_spec('partial_ft', f'smoke,k={k}'),
          '--workdir',
          '/nonexistent/never',
      ]
  )
  err = capsys.readouterr().err
  assert code == 2 and f'k={k}' in err, err


def test_layer_decay_lr_multipliers_decrease_towards_input(tmp_path):
  wd = tmp_path / 'lld'
  code = cli.main(
      [
          'train',
          '--quiet',
          '--config',
          config_spec('full_ft', 'smoke,layer_decay=0.5'),
          '--workdir',
          str(wd),
          '--config.init.checkpoint=',
          '--config.num_steps=1',
          '--config.dataset.val_split=',
          '--config.dataset.test_split=',
      ]
  )
  assert code == 0
  table = json.loads((wd / 'params.json').read_text())
  lr = {p: row['lr_mult'] for p, row in table.items()}
  assert all(row['trainable'] for row in table.values())
  block1 = {lr[p] for p in lr if p.startswith('block1/')}
  block2 = {lr[p] for p in lr if p.startswith('block2/')}
  head = {lr[p] for p in lr if p.startswith('head/')}
  assert len(block1) == len(block2) == len(head) == 1
  (b1,), (b2,), (h,) = block1, block2, head
  assert 0 < b1 < b2 < h == 1.0
  assert (b1, b2) == pytest.approx((0.25, 0.5))


def test_unknown_method_suggests_the_nearest():
  config = config_lib.load_config(config_spec('scratch', 'smoke'))
  with pytest.raises(methods.MethodError, match=r"unknown method 'lroa'.*did you mean 'lora'"):
    methods.apply(config, 'lroa')


# ---------------------------------------------------------------- MNIST-1D models


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
  config = config_lib.load_config(f'{MNIST1D}:model={model}')
  with config.unlocked():
    methods.apply(config, method)
  net = models.build_model(model, 10, **config.model.kwargs)
  params = net.init(jax.random.PRNGKey(0), jnp.zeros((2, 40, 1)))['params']
  paths = list(param_tree.flatten(params))
  decided = path_rules.match(config.adapt.trainable, paths, 'adapt.trainable')
  got = {p for p, v in decided.items() if v == 'train'}
  assert got == (set(paths) if trainable is None else trainable)


def test_lora_on_cnn1d_says_what_to_use_instead():
  config = config_lib.load_config(f'{MNIST1D}:model=cnn1d')
  with (
      config.unlocked(),
      pytest.raises(methods.MethodError, match="no adapter targets for model 'cnn1d'"),
  ):
    methods.apply(config, 'lora')


def test_models_without_blocks_or_lora_targets_say_what_to_use_instead():
  config = config_lib.load_config(f'{MNIST1D}:model=linear')
  with config.unlocked():
    with pytest.raises(methods.MethodError, match="model 'linear' has no blocks.*linear_probe"):
      methods.apply(config, 'partial_ft')
    with pytest.raises(methods.MethodError, match="for model 'linear': it has only the head"):
      methods.apply(config, 'lora')


# ------------------------------------------- a model added in one module + one registry line


class Toy(nn.Module):
  """A model no jaxadapt module knows by name, laid out unlike the built-in ones: a stem of a
  module and a bare top-level parameter (`gain`, as ViT's `cls`), residual blocks `unit{i}`
  holding nested layers, a norm after the blocks, then `head`."""

  num_classes: int
  depth: int = 3
  width: int = 16

  @nn.compact
  def __call__(self, x, train=False, features_only=False):
    x = nn.Dense(self.width, name='embed')(x.reshape(x.shape[0], -1))
    x = x * self.param('gain', nn.initializers.ones, (self.width,))
    for i in range(1, self.depth + 1):
      layers = [nn.LayerNorm(parent=None), nn.Dense(self.width, parent=None)]  # owned by unit
      unit = nn.Sequential(layers, name=f'unit{i}')
      x = x + nn.relu(unit(x))  # unit{i}/layers_0/{scale,bias}, unit{i}/layers_1/{kernel,bias}
    x = nn.LayerNorm(name='final_norm')(x)
    if features_only:
      return x
    return nn.Dense(self.num_classes, kernel_init=zeros, bias_init=zeros, name='head')(x)


TOY_SPEC = ModelSpec(
    module=Toy,
    input_kind='image',
    blocks=lambda m: Blocks(
        stem=('embed', 'gain'),
        body=tuple(f'unit{i}' for i in range(1, m.depth + 1)),
        post=('final_norm',),
    ),
    lora_targets=r'unit\d+/layers_1/kernel',
    smoke=dict(width=8),
)


@pytest.fixture
def toy(monkeypatch):
  """Registers Toy as a model module would: the one registry line, nothing else."""
  monkeypatch.setitem(models.REGISTRY, 'toy', TOY_SPEC)


@pytest.fixture(scope='module')
def toy_upstream(tmp_path_factory):
  """A random 'upstream checkpoint' of the smoke-size Toy (only values matter)."""
  path = tmp_path_factory.mktemp('toy') / 'upstream.npz'
  net = Toy(num_classes=3, **TOY_SPEC.smoke)
  shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']
  rng = np.random.default_rng(0)
  flat = param_tree.flatten(shapes)
  np.savez(path, **{k: rng.normal(0, 0.3, v.shape).astype(v.dtype) for k, v in flat.items()})
  return path


# What each method must train on Toy (smoke size: 3 units; partial_ft's default k=1).
TOY_TRAINS = {
    'linear_probe': lambda p: p.startswith('head/'),
    'partial_ft': lambda p: p.startswith(('unit3/', 'final_norm/', 'head/')),
    'full_ft': lambda p: True,
    'lora': lambda p: p.startswith(('lora/', 'head/')),
    'bitfit': lambda p: p.startswith('head/') or p.endswith(('/bias', '/scale')),
}


@pytest.mark.parametrize('method', list(TOY_TRAINS))
def test_a_model_added_to_the_registry_works_with_every_method(toy, toy_upstream, tmp_path, method):
  # The method config files, presets, methods and the trainer, untouched, on digits.
  arg = f'model=toy,dataset=digits,smoke,checkpoint={toy_upstream}'
  spec = config_spec(method, arg + (',layer_decay=0.5' if method == 'full_ft' else ''))
  wd = tmp_path / method
  assert cli.main(['train', '--quiet', '--config', spec, '--workdir', str(wd)]) == 0

  table = json.loads((wd / 'params.json').read_text())
  final = host_flat(checkpoint.restore_params(wd))
  initial = host_flat(build_experiment(config_lib.load_config(spec)).params)
  pretrained = upstream_flat(toy_upstream)
  assert set(table) == set(final) == set(initial)
  trainable = {p for p, row in table.items() if row['trainable']}
  assert trainable == {p for p in final if TOY_TRAINS[method](p)}
  for p in final:
    if p in trainable:
      assert not np.array_equal(final[p], initial[p]), f'trainable {p} did not change'
    else:
      assert np.array_equal(final[p], pretrained[p]), f'frozen {p} changed'

  if method == 'lora':  # the registry's targets, and only those, got adapters
    adapted = {p[len('lora/') : -len('/a')] for p in final if p.startswith('lora/')}
    assert adapted == {f'unit{i}/layers_1/kernel' for i in (1, 2, 3)}
  if method == 'full_ft':  # layer decay 0.5: unit i of 3 gets 0.5^(4-i), the stem 0.5^4
    lr = {p: row['lr_mult'] for p, row in table.items()}
    expected = {'embed': 0.0625, 'gain': 0.0625, 'unit1': 0.125, 'unit2': 0.25, 'unit3': 0.5}
    expected |= {'final_norm': 1.0, 'head': 1.0}
    assert {p: expected[p.split('/')[0]] for p in lr} == pytest.approx(lr)
  records = read_metrics(wd)
  assert any('test/accuracy' in r for r in records)


def test_an_unregistered_model_is_named_with_the_choices():
  with pytest.raises(config_lib.ConfigError, match="unknown model 'toy'.*choose one of: cnn"):
    config_lib.load_config(config_spec('lora', 'model=toy'))
