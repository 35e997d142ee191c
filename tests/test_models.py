"""Tests for the model zoo: shapes, parameter paths, dropout, registry entries and errors."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from jaxadapt import models, param_tree
from jaxadapt.models import ModelError, build_model

X = jnp.ones((2, 28, 28, 1), jnp.float32)
SMALL = {
    'cnn': {},
    'resnet': {'depth': 10, 'num_stages': 3, 'width': 8},
    'vit': {'depth': 2, 'width': 32},
}
FEATURE_DIM = {'cnn': 128, 'resnet': 32, 'vit': 32}


def init(name, x=X, **kwargs):
  model = build_model(name, 10, **{**SMALL[name], **kwargs})
  return model, model.init(jax.random.key(0), x)


def init_shapes(name, x=X, **kwargs):
  # Structure-only checks: tracing with eval_shape skips all compute/compiles.
  model = build_model(name, 10, **{**SMALL[name], **kwargs})
  return model, jax.eval_shape(model.init, jax.random.key(0), x)


def paths(params):
  return {'/'.join(k): v for k, v in flatten_dict(params).items()}


@pytest.mark.parametrize('name', list(SMALL))  # MNIST-1D models: further below
def test_shapes_and_no_mutable_state(name):
  model, v = init_shapes(name)
  assert set(v) == {'params'}
  logits = jax.eval_shape(lambda v: model.apply(v, X), v)
  feats = jax.eval_shape(lambda v: model.apply(v, X, features_only=True), v)
  assert logits.shape == (2, 10) and feats.shape == (2, FEATURE_DIM[name])
  kernels = [a for k, a in paths(v['params']).items() if k.endswith('kernel')]
  assert kernels and all(a.ndim in (2, 4) for a in kernels)


def test_resnet_forward_and_zero_head():
  # One real (jitted) run; the other models compute for real in the dropout test.
  model = build_model('resnet', 10, **SMALL['resnet'])
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 1))
  v = jax.jit(model.init)(jax.random.key(0), x)
  logits, feats = jax.jit(lambda v: (model.apply(v, x), model.apply(v, x, features_only=True)))(v)
  assert not jnp.any(v['params']['head']['kernel']) and not jnp.any(logits)
  assert feats.shape == (2, 32) and jnp.all(jnp.isfinite(feats)) and jnp.any(feats)


def test_cnn_paths():
  _, v = init_shapes('cnn')
  expected = {
      f'block{b}/{layer}{i}/{leaf}'
      for b in (1, 2)
      for i in (1, 2)
      for layer, leaves in (('conv', ('kernel', 'bias')), ('norm', ('scale', 'bias')))
      for leaf in leaves
  }
  expected |= {'dense/kernel', 'dense/bias', 'head/kernel', 'head/bias'}
  assert set(paths(v['params'])) == expected


def test_cnn_options():
  _, v = init_shapes('cnn', widths=(8, 8), dense=0, norm='none')
  assert set(paths(v['params'])) == {
      f'block{b}/conv{i}/{leaf}' for b in (1, 2) for i in (1, 2) for leaf in ('kernel', 'bias')
  } | {'head/kernel', 'head/bias'}
  # Small inputs work as long as each block can halve the map: 8 -> 4 -> 2.
  x = jnp.ones((1, 8, 8, 1))
  model, v = init_shapes('cnn', x=x, widths=(4, 4), norm='group')
  assert jax.eval_shape(lambda v: model.apply(v, x), v).shape == (1, 10)


def test_resnet_paths():
  _, v = init_shapes('resnet')
  p = paths(v['params'])
  expected = {'stem/conv/kernel', 'stem/norm/scale', 'stem/norm/bias', 'head/kernel', 'head/bias'}
  for s in (1, 2, 3):
    block = f'stage{s}/block1'
    expected |= {f'{block}/conv{i}/kernel' for i in (1, 2)}
    expected |= {f'{block}/norm{i}/{leaf}' for i in (1, 2) for leaf in ('scale', 'bias')}
    if s > 1:
      expected |= {f'{block}/proj/kernel', f'{block}/proj_norm/scale', f'{block}/proj_norm/bias'}
  assert set(p) == expected
  assert p['stage3/block1/conv2/kernel'].shape == (3, 3, 32, 32)


def test_resnet50_bottleneck_and_imagenet_stem():
  x = jnp.ones((1, 32, 32, 3))
  model, v = init_shapes('resnet', x=x, depth=50, width=4, num_stages=3, stem='imagenet')
  p = paths(v['params'])
  assert p['stem/conv/kernel'].shape == (7, 7, 3, 4)
  assert p['stage1/block1/conv3/kernel'].shape == (1, 1, 4, 16)  # x4 expansion
  assert 'stage1/block1/proj/kernel' in p  # 4 -> 16 channels needs a projection
  assert {k.split('/')[1] for k in p if k.startswith('stage3/')} == {
      f'block{i}' for i in range(1, 7)
  }
  out = jax.eval_shape(lambda v: model.apply(v, x, features_only=True), v)
  assert out.shape == (1, 64)


def test_vit_paths():
  _, v = init_shapes('vit')
  p = paths(v['params'])
  assert p['pos_embedding'].shape == (1, 50, 32)  # 7*7 patches + cls
  assert p['cls'].shape == (1, 1, 32)
  for name in ('query', 'key', 'value', 'out'):
    assert p[f'encoder/block2/attn/{name}/kernel'].shape == (32, 32)
  for k in (
      'embedding/kernel',
      'embedding/bias',
      'encoder/block1/norm1/scale',
      'encoder/block1/norm2/bias',
      'encoder/block1/mlp/fc1/kernel',
      'encoder/block2/mlp/fc2/kernel',
      'encoder/norm/scale',
      'head/kernel',
  ):
    assert k in p
  assert not any(k.startswith('encoder/block3') for k in p)
  _, v = init_shapes('vit', pool='gap')
  assert 'cls' not in v['params'] and v['params']['pos_embedding'].shape == (1, 49, 32)


@pytest.mark.parametrize(
    'name,kwargs',
    [
        ('cnn', {'dropout': 0.5, 'widths': (8,), 'dense': 16}),
        ('vit', {'dropout': 0.5, 'depth': 1}),
    ],
)
def test_dropout_only_in_train(name, kwargs):
  model, v = init(name, **kwargs)
  # The zero-initialised head would hide any change; give it random weights.
  head = v['params']['head']
  assert not jnp.any(head['kernel']) and not jnp.any(head['bias'])
  v = {
      'params': {
          **v['params'],
          'head': {**head, 'kernel': jax.random.normal(jax.random.key(1), head['kernel'].shape)},
      }
  }
  x = jax.random.normal(jax.random.key(2), X.shape)
  rngs = lambda i: {'dropout': jax.random.key(i)}  # noqa: E731
  eval_a = model.apply(v, x, rngs=rngs(0))
  eval_b = model.apply(v, x, rngs=rngs(1))
  train_a = model.apply(v, x, train=True, rngs=rngs(0))
  train_b = model.apply(v, x, train=True, rngs=rngs(1))
  assert jnp.array_equal(eval_a, eval_b)
  assert not jnp.allclose(eval_a, train_a) and not jnp.allclose(train_a, train_b)


def test_unknown_model_suggests():
  with pytest.raises(ModelError) as err:
    build_model('resnte', 10)
  assert str(err.value) == (
      "unknown model 'resnte'; choose one of: cnn, resnet, vit, linear, mlp, cnn1d, gru, "
      'resnet_bn, bit, bert '
      "(did you mean 'resnet'?)"
  )


def test_unknown_kwarg_named():
  with pytest.raises(ModelError, match="'widht'.*widths, dense, dropout, norm"):
    build_model('cnn', 10, widht=(8,))
  with pytest.raises(ModelError, match="'dropout'"):
    build_model('resnet', 10, dropout=0.1)


# ------------------------------------------------------------ MNIST-1D models

# MNIST-1D models (40-step sequences): PyTorch reference counts (notebooks/models.py); flax's
# GRU has 24 fewer (redundant) biases.
TORCH_PARAMS = {'linear': 410, 'mlp': 15_210, 'cnn1d': 5_210, 'gru': 5_134}
FEATURES = {'linear': 40, 'mlp': 100, 'cnn1d': 125, 'gru': 480}
PAPER_KWARGS = {'linear': {}, 'mlp': {}, 'cnn1d': {}, 'gru': {}}  # every default is the paper's


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


# ----------------------------------------------------- registry entries describe their model

EXAMPLE = {'image': (28, 28, 1), 'sequence': (40, 1), 'tokens': (16,)}  # one of each input kind
# Every model at its default size and its smoke size, and options that change its blocks.
VARIANTS = [(name, {}) for name in models.REGISTRY]
VARIANTS += [(name, dict(spec.smoke)) for name, spec in models.REGISTRY.items() if spec.smoke]
VARIANTS += [
    ('cnn', dict(widths=(4, 4, 4), dense=0)),
    ('resnet', dict(depth=50, width=4, num_stages=3, stem='imagenet')),
    ('vit', dict(width=16, depth=3, pool='gap')),
    ('mlp', dict(widths=(8, 8, 4))),
    ('cnn1d', dict(kernel_sizes=(3, 3))),
    ('gru', dict(bidirectional=False)),
    ('bert', dict(width=16, depth=2, num_heads=2, mlp_dim=32, pool='pooler')),
    ('bit', dict(layers=(1, 2, 1), base_width=8, num_groups=4)),
]


def registry_params(name, **kwargs):
  """Parameter shapes of registry model `name`, initialised on its kind of input."""
  kind = models.get_spec(name).input_kind
  x = jnp.zeros((1, *EXAMPLE[kind]), jnp.int32 if kind == 'tokens' else jnp.float32)
  net = build_model(name, 10, **kwargs)
  return param_tree.flatten(jax.eval_shape(net.init, jax.random.key(0), x)['params'])


def under(prefix, path):
  return path == prefix or path.startswith(prefix + '/')


@pytest.mark.parametrize('name, kwargs', VARIANTS)
def test_blocks_and_head_cover_every_parameter_exactly_once(name, kwargs):
  # A prefix that names nothing breaks partial_ft; a parameter outside every prefix would
  # silently keep lr x1 under layer decay and stay frozen under partial_ft of every k.
  paths = registry_params(name, **kwargs)
  stem, body, post = models.blocks(name, **kwargs)
  prefixes = [*stem, *body, *post, 'head']
  assert len(set(prefixes)) == len(prefixes), prefixes
  for prefix in prefixes:
    assert any(under(prefix, p) for p in paths), f'{name}: {prefix!r} names no parameter'
  for p in paths:
    owners = [q for q in prefixes if under(q, p)]
    assert len(owners) == 1, f'{name}: {p} is under {owners}'


def test_blocks_follow_the_module_fields():
  # Read from the instantiated module, so the class defaults are the only defaults.
  assert models.blocks('cnn').body == ('block1', 'block2')
  assert models.blocks('cnn', widths=(4, 4, 4), dense=0) == ((), ('block1', 'block2', 'block3'), ())
  assert models.blocks('vit').body[-1] == 'encoder/block6'
  assert models.blocks('vit', pool='gap').stem == ('embedding', 'pos_embedding')
  assert models.blocks('resnet', num_stages=2) == (('stem',), ('stage1', 'stage2'), ())
  with pytest.raises(ModelError, match="'depht'"):
    models.blocks('vit', depht=2)


@pytest.mark.parametrize('name', list(models.REGISTRY))
def test_lora_targets_are_adaptable_kernels(name):
  spec = models.get_spec(name)
  shapes = registry_params(name, **spec.smoke)
  adaptable = {p for p, v in shapes.items() if p.endswith('kernel') and v.ndim in (2, 4)}
  if spec.lora_targets is None:  # then no_lora's reason holds: nothing but the head to adapt
    assert spec.no_lora
    assert not {p for p in adaptable if not p.startswith('head/')}
    return
  targets = {p for p in shapes if re.fullmatch(spec.lora_targets, p)}
  assert targets and targets <= adaptable, targets - adaptable
  assert not any(p.startswith('head/') for p in targets)  # the head trains in full anyway


@pytest.mark.parametrize('name', list(models.REGISTRY))
def test_smoke_size_is_no_larger(name):
  count = lambda shapes: sum(int(np.prod(v.shape)) for v in shapes.values())
  spec = models.get_spec(name)
  full, smoke = count(registry_params(name)), count(registry_params(name, **spec.smoke))
  assert smoke < full if spec.smoke else smoke == full


def test_model_spec_rejects_incomplete_entries():
  blocks = lambda m: models.Blocks()
  with pytest.raises(ValueError, match='no_lora'):
    models.ModelSpec(module=models.Linear, input_kind='image', blocks=blocks, lora_targets=None)
  with pytest.raises(ValueError, match="'pixels'"):
    models.ModelSpec(module=models.Linear, input_kind='pixels', blocks=blocks, lora_targets='x')
  spec = models.ModelSpec(
      module=models.CNN, input_kind='image', blocks=blocks, lora_targets='x', smoke={'dense': 8}
  )
  with pytest.raises(TypeError):
    spec.smoke['dense'] = 4  # shared by every run in the process: read-only
