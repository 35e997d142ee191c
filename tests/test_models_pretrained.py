"""The models that make imports exact: resnet_bn (frozen BatchNorm), bit, bert, ViT options,
and token batches through the step and the probe. Numerical parity with the reference
libraries is in tests/test_importers*.py."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.traverse_util import flatten_dict

from jaxadapt import data, lora, models, optim, param_tree, probe, sharding, step as step_lib
from jaxadapt.errors import DataError
from jaxadapt.config import parse_arg
from jaxadapt.defaults import base_config
from jaxadapt.models import build_model, is_constant
from jaxadapt.models import bert as bert_lib, bit as bit_lib, resnet_bn as resnet_bn_lib

SMOKE = {
    'resnet_bn': resnet_bn_lib.SPEC.smoke,
    'bit': bit_lib.SPEC.smoke,
    'bert': {**bert_lib.SPEC.smoke, 'vocab_size': 40, 'max_len': 12},
}


def paths(tree):
  return {'/'.join(k): v for k, v in flatten_dict(tree).items()}


def test_torch_padding_differs_from_same_where_torch_models_need_it():
  assert resnet_bn_lib.torch_pad(7, 2) == ((3, 3), (3, 3))  # 'SAME' on 224 pads (2, 3)
  assert resnet_bn_lib.torch_pad(3, 2) == ((1, 1), (1, 1))
  assert resnet_bn_lib.torch_pad(1, 2) == ((0, 0), (0, 0))


def test_frozen_batchnorm_is_the_torch_eval_formula():
  x = jax.random.normal(jax.random.key(0), (2, 3, 3, 4))
  p = {
      'scale': jnp.array([1.0, 2.0, 0.5, -1.0]),
      'bias': jnp.array([0.1, 0.0, -0.2, 0.3]),
      'mean': jnp.array([0.5, -1.0, 0.0, 2.0]),
      'var': jnp.array([4.0, 0.25, 1.0, 9.0]),
  }
  got = resnet_bn_lib.FrozenBatchNorm(1e-5).apply({'params': p}, x)
  want = (x - p['mean']) / jnp.sqrt(p['var'] + 1e-5) * p['scale'] + p['bias']
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_constants_are_exactly_the_batchnorm_statistics():
  model = build_model('resnet_bn', 3, **SMOKE['resnet_bn'])
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))['params']
  flat = paths(shapes)
  constants = {p for p in flat if is_constant(p)}
  assert constants == {p for p in flat if p.endswith(('/mean', '/var'))}
  assert 'stem/norm/mean' in constants and 'stage1/block1/proj_norm/var' in constants
  for name in ('vit', 'bert', 'bit', 'resnet'):  # no other model has constants
    kw = SMOKE.get(name, {'width': 8, 'depth': 1, 'num_heads': 2} if name == 'vit' else {})
    x = jnp.zeros((1, 8), jnp.int32) if name == 'bert' else jnp.zeros((1, 32, 32, 3))
    other = jax.eval_shape(build_model(name, 3, **kw).init, jax.random.key(0), x)['params']
    assert not any(is_constant(p) for p in paths(other)), name


def test_full_finetuning_never_changes_batchnorm_statistics():
  """Bug caught: statistics trained or weight-decayed like parameters (wrong after one step)."""
  model = build_model('resnet_bn', 3, **SMOKE['resnet_bn'])
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  params = model.init(jax.random.key(0), x)['params']
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda v: jnp.asarray(rng.uniform(0.5, 2.0, v.shape), v.dtype), params)
  config = base_config()
  config.adapt.trainable = (('.*', 'train'),)  # full fine-tuning: "everything" trains
  config.optim.weight_decay = 0.5
  flat = param_tree.flatten(params)
  trainable = optim.trainable_mask(config.adapt.trainable, list(flat))
  assert not any(trainable[p] for p in flat if is_constant(p))
  groups = optim.param_groups(config.optim, flat, trainable)
  tx = optim.make_optimizer(config.optim, groups, 10)
  step = jax.jit(
      step_lib.make_train_step(
          step_lib.make_forward(model), tx, trainable, data.make_preprocess(''), 0
      )
  )
  state = step_lib.init_state(params, tx)
  batch = {'image': x, 'label': jnp.array([0, 1, 2, 0])}
  for _ in range(2):
    state, _ = step(state, batch)
  new = param_tree.flatten(state.params)
  for p in flat:
    same = np.array_equal(np.asarray(new[p]), np.asarray(flat[p]))
    assert same == is_constant(p), p  # constants identical, everything else moved


def test_bit_standardises_kernels():
  """Bug caught: a plain conv where BiT standardises (scaling a kernel must not matter)."""
  model = build_model('bit', 3, **SMOKE['bit'])
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  params = model.init(jax.random.key(0), x)['params']
  params = {**params, 'head': jax.tree.map(jnp.ones_like, params['head'])}
  scaled = param_tree.flatten(params)
  scaled['stem/conv/kernel'] = scaled['stem/conv/kernel'] * 7.0 + 0.0
  a = model.apply({'params': params}, x)
  b = model.apply({'params': param_tree.unflatten(scaled)}, x)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  assert model.apply({'params': params}, x, features_only=True).shape == (2, 64)


def test_vit_options_keep_defaults_and_change_outputs():
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  kw = dict(patch_size=4, width=16, depth=1, num_heads=2)
  base = build_model('vit', 3, **kw)
  params = base.init(jax.random.key(0), x)['params']
  params = {**params, 'head': jax.tree.map(jnp.ones_like, params['head'])}
  ref = base.apply({'params': params}, x)
  same = build_model('vit', 3, **kw, gelu='tanh', norm_eps=1e-6).apply({'params': params}, x)
  np.testing.assert_array_equal(ref, same)
  for option in (dict(gelu='exact'), dict(norm_eps=1e-12)):
    other = build_model('vit', 3, **kw, **option).apply({'params': params}, x)
    assert not np.array_equal(ref, other), option
  with pytest.raises(models.ModelError, match="unknown gelu 'erf'; choose one of: tanh, exact"):
    build_model('vit', 3, **kw, gelu='erf').init(jax.random.key(0), x)


def bert_and_tokens():
  model = build_model('bert', 4, **SMOKE['bert'])
  tokens = jnp.array([[5, 6, 7, 0, 0, 0], [8, 9, 10, 11, 12, 13]], jnp.int32)
  params = model.init(jax.random.key(0), tokens)['params']
  return model, params, tokens


def test_bert_paths_follow_the_vit_scheme():
  _, params, _ = bert_and_tokens()
  flat = paths(params)
  vit = paths(
      jax.eval_shape(
          build_model('vit', 3, width=16, depth=1, num_heads=2, mlp_dim=32).init,
          jax.random.key(0),
          jnp.zeros((1, 8, 8, 3)),
      )['params']
  )
  block = lambda ps: {p for p in ps if p.startswith('encoder/block1/')}
  assert block(flat) == block(vit)
  assert {p for p in flat if p.startswith('embedding/')} == {
      'embedding/word/embedding',
      'embedding/position/embedding',
      'embedding/token_type/embedding',
      'embedding/norm/scale',
      'embedding/norm/bias',
  }
  # The default LoRA targets of the ViT apply unchanged.
  adapted = lora.add_adapters(params, [(bert_lib.SPEC.lora_targets, 2)], jax.random.key(0))
  assert len(lora.adapter_paths(param_tree.flatten(adapted))) == 2 * 4


def test_bert_padding_does_not_change_mean_features():
  """Bug caught: padded positions attended to or averaged in."""
  model, params, tokens = bert_and_tokens()
  short = model.apply({'params': params}, tokens[:1, :3], features_only=True)
  padded = model.apply({'params': params}, tokens[:1], features_only=True)
  np.testing.assert_allclose(short, padded, rtol=1e-5, atol=1e-6)
  cls = build_model('bert', 4, **SMOKE['bert'], pool='cls')
  assert not np.allclose(cls.apply({'params': params}, tokens, features_only=True), padded[0])


def test_token_batches_flow_through_step_eval_and_probe():
  model, params, tokens = bert_and_tokens()
  labels = jnp.array([1, 3])
  tx = optax.adam(1e-2)
  trainable = {p: True for p in param_tree.flatten(params)}
  forward = step_lib.make_forward(model)
  preprocess = data.make_preprocess('')
  train_step = jax.jit(step_lib.make_train_step(forward, tx, trainable, preprocess, 0))
  state = step_lib.init_state(params, tx)
  batch = {'tokens': tokens, 'label': labels}
  losses = []
  for _ in range(5):
    state, metrics = train_step(state, batch)
    losses.append(float(metrics['loss']))
  assert losses[-1] < losses[0]
  sums = jax.jit(step_lib.make_eval_step(forward, preprocess))(
      state.params, {**batch, 'mask': jnp.ones(2)}
  )
  assert float(sums['count']) == 2
  mesh = sharding.make_mesh(parse_arg('', data=-1, fsdp=1))
  arrays = {'tokens': np.asarray(tokens).repeat(4, 0), 'label': np.asarray(labels).repeat(4)}
  feats = probe.extract_features(forward, state.params, preprocess, arrays, 8, mesh)
  want = model.apply({'params': state.params}, arrays['tokens'], features_only=True)
  np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-5)


def test_image_ops_refuse_token_batches():
  with pytest.raises(DataError, match="'flip' is for images and sequences.*empty spec"):
    data.make_preprocess('flip')(jnp.zeros((2, 5), jnp.int32), jax.random.key(0), True)
  with pytest.raises(DataError, match="'scale' is for images"):
    data.output_shape('scale', (12,))
  assert data.output_shape('', (12,)) == (12,)
