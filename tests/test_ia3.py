"""IA3 (jaxadapt/ia3.py): identity at init, the formula against numpy, merge == forward,
rule errors and the one-line refusal on a model without attention."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadapt import adapters, config as config_lib, ia3, methods, param_tree, path_rules
from jaxadapt import step as step_lib
from jaxadapt.models import vit

from test_lora import IMAGES, apply_fn, init_params, smoke_model


def gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def test_mlp_and_key_scaling_match_numpy():
  """fc2((l_ff * gelu(fc1 x))) and l_k * (x Wk + bk), written out in numpy."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 4)).astype(np.float32)
  mlp = vit.MLP(hidden=6, dropout=0.0)
  params = jax.tree.map(
      lambda s: jnp.asarray(rng.normal(size=s.shape).astype(np.float32)),
      jax.eval_shape(lambda k: mlp.init(k, x, False), jax.random.key(0))['params'],
  )
  l_ff = rng.uniform(0.5, 1.5, 6).astype(np.float32)
  with ia3.scaled({('fc2/kernel', 'in'): jnp.asarray(l_ff)}):
    got = mlp.apply({'params': params}, x, False)
  p = jax.tree.map(np.asarray, params)
  h = gelu_tanh(x @ p['fc1']['kernel'] + p['fc1']['bias'])
  want = (l_ff * h) @ p['fc2']['kernel'] + p['fc2']['bias']
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)

  dense = nn.Dense(5)
  dp = dense.init(jax.random.key(1), x)['params']
  dp = {'kernel': dp['kernel'], 'bias': jnp.asarray(rng.normal(size=5).astype(np.float32))}
  l_k = rng.uniform(0.5, 1.5, 5).astype(np.float32)
  with ia3.scaled({('kernel', 'out'): jnp.asarray(l_k)}):
    got = dense.apply({'params': dp}, x)
  want = l_k * (x @ np.asarray(dp['kernel']) + np.asarray(dp['bias']))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def vit_with_ia3():
  model = smoke_model('vit')
  params = init_params(model)
  return model, params, ia3.add_scales(params, vit.IA3_RULES)


def test_ia3_at_init_is_exactly_the_base_model():
  model, params, adapted = vit_with_ia3()
  flat = param_tree.flatten(adapted)
  assert sorted(k for k in flat if k.startswith('ia3/')) == [
      'ia3/encoder/block1/attn/key/kernel/scale_out',
      'ia3/encoder/block1/attn/value/kernel/scale_out',
      'ia3/encoder/block1/mlp/fc2/kernel/scale_in',
  ]
  assert flat['ia3/encoder/block1/mlp/fc2/kernel/scale_in'].shape == (64,)  # mlp_dim
  expected = np.asarray(apply_fn(model)(params, IMAGES))
  got = np.asarray(jax.jit(step_lib.make_forward(model))(adapted, IMAGES))
  assert np.array_equal(got, expected)


def test_merge_matches_the_adapted_forward():
  model, params, adapted = vit_with_ia3()
  rng = np.random.default_rng(3)
  adapted['ia3'] = jax.tree.map(
      lambda v: v + jnp.asarray(rng.normal(0, 0.5, v.shape).astype(np.float32)), adapted['ia3']
  )
  forward = np.asarray(jax.jit(step_lib.make_forward(model))(adapted, IMAGES))
  merged = adapters.merge_all(adapted, {})
  assert 'ia3' not in merged
  plain = np.asarray(apply_fn(model)(merged, IMAGES))
  np.testing.assert_allclose(plain, forward, rtol=1e-5, atol=1e-5)
  assert np.abs(plain - np.asarray(apply_fn(model)(params, IMAGES))).max() > 1e-3


def test_ia3_rule_errors():
  model, params, _ = vit_with_ia3()
  with pytest.raises(path_rules.RuleError, match=r"'encoder/block1/attn/key/kernel' -> 'both'"):
    ia3.add_scales(params, ((r'.*attn/key/kernel', 'both'),))
  with pytest.raises(path_rules.RuleError, match=r'adapt\.ia3\.rules'):
    ia3.add_scales(params, ((r'.*attn/nothing/kernel', 'out'),))
  # A vector whose kernel no Dense/Conv layer uses is an error, not a silent no-op.
  stray = {**params, 'ia3': {'cls': {'scale_out': jnp.ones((16,))}}}
  with pytest.raises(path_rules.RuleError, match="no Dense or Conv layer uses 'cls'"):
    step_lib.make_forward(model)(stray, IMAGES)


def test_ia3_on_the_cnn_is_a_one_line_error():
  config = config_lib.load_config('configs/fashion_mnist/scratch.py')
  with pytest.raises(methods.MethodError, match=r"ia3: model 'cnn'.*\(IA3 works on .*vit") as e:
    methods.apply(config.unlock(), 'ia3')
  assert '\n' not in str(e.value)
