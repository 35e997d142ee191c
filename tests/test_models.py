"""Tests for the model zoo: shapes, parameter paths, dropout, registry errors."""

import jax
import jax.numpy as jnp
import pytest
from flax.traverse_util import flatten_dict

from jaxadapt import models
from jaxadapt.models import build_model

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


@pytest.mark.parametrize('name', list(SMALL))  # MNIST-1D models: tests/test_mnist1d.py
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
  with pytest.raises(models.ModelError) as err:
    build_model('resnte', 10)
  assert str(err.value) == (
      "unknown model 'resnte'; choose one of: cnn, resnet, vit, linear, mlp, cnn1d, gru "
      "(did you mean 'resnet'?)"
  )


def test_unknown_kwarg_named():
  with pytest.raises(models.ModelError, match="'widht'.*widths, dense, dropout, norm"):
    build_model('cnn', 10, widht=(8,))
  with pytest.raises(models.ModelError, match="'dropout'"):
    build_model('resnet', 10, dropout=0.1)
