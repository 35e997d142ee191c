"""DoRA (jaxadapt/dora.py): identity at init, the formula against numpy, merge == forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadapt import adapters, dora, param_tree, path_rules, step as step_lib

from test_lora import IMAGES, RULES, apply_fn, init_params, smoke_model

ALPHA = 16.0


def numpy_dora(w, a, b, m, alpha):
  """m * V / ||V||_c, V = W + (alpha / r) a b, written out per output column."""
  v = w.reshape(-1, w.shape[-1]).astype(np.float64) + (alpha / a.shape[1]) * (a @ b)
  out = np.empty_like(v)
  for j in range(v.shape[1]):
    out[:, j] = m[j] * v[:, j] / np.sqrt(np.sum(v[:, j] ** 2))
  return out.reshape(w.shape)


@pytest.mark.parametrize('shape', [(6, 5), (3, 3, 2, 4)])  # Dense and conv kernels
def test_adapted_kernel_matches_numpy(shape):
  rng = np.random.default_rng(0)
  w = rng.normal(size=shape).astype(np.float32)
  fan_in = int(np.prod(shape[:-1]))
  a = rng.normal(size=(fan_in, 2)).astype(np.float32)
  b = rng.normal(size=(2, shape[-1])).astype(np.float32)
  m = rng.uniform(0.5, 2.0, size=shape[-1]).astype(np.float32)
  dm = m - np.linalg.norm(w.reshape(-1, shape[-1]), axis=0)  # the stored offset
  got = np.asarray(dora.adapted_kernel(jnp.asarray(w), a, b, dm, ALPHA))
  np.testing.assert_allclose(got, numpy_dora(w, a, b, m, ALPHA), rtol=1e-5, atol=1e-6)
  # The learned magnitude is exactly each column's norm.
  flat = got.reshape(-1, shape[-1])
  np.testing.assert_allclose(np.linalg.norm(flat, axis=0), m, rtol=1e-5)


@pytest.mark.parametrize('name', ['cnn', 'vit'])
def test_dora_at_init_is_exactly_the_base_model(name):
  model = smoke_model(name)
  params = init_params(model)
  adapted = dora.add_adapters(params, RULES[name], jax.random.key(1))
  flat = param_tree.flatten(adapted)
  dms = [k for k in flat if k.startswith('dora/') and k.endswith('/dm')]
  assert dms and all(k[: -len('dm')] + 'a' in flat for k in dms)
  assert all(not np.asarray(flat[k]).any() for k in dms)  # magnitude = ||W||_c at init
  expected = np.asarray(apply_fn(model)(params, IMAGES))
  got = np.asarray(jax.jit(step_lib.make_forward(model, dora_alpha=ALPHA))(adapted, IMAGES))
  assert np.array_equal(got, expected)


def test_merge_matches_the_adapted_forward():
  model = smoke_model('vit')
  adapted = param_tree.flatten(
      dora.add_adapters(init_params(model), RULES['vit'], jax.random.key(1))
  )
  rng = np.random.default_rng(3)
  for k in adapted:  # trained-looking adapters: b nonzero, magnitudes moved
    if k.startswith('dora/') and k.endswith(('/b', '/dm')):
      adapted[k] = adapted[k] + 0.1 * rng.normal(size=adapted[k].shape).astype(np.float32)
  adapted = param_tree.unflatten(adapted)
  forward = np.asarray(jax.jit(step_lib.make_forward(model, dora_alpha=ALPHA))(adapted, IMAGES))
  merged = adapters.merge_all(adapted, {'dora': {'alpha': ALPHA}})
  assert 'dora' not in merged
  plain = np.asarray(apply_fn(model)(merged, IMAGES))
  np.testing.assert_allclose(plain, forward, rtol=1e-5, atol=1e-5)
  base = np.asarray(apply_fn(model)(init_params(model), IMAGES))
  assert np.abs(plain - base).max() > 1e-3  # the adapters do change the model


def test_dora_rule_errors():
  params = init_params(smoke_model('vit'))
  with pytest.raises(path_rules.RuleError, match=r'adapt\.dora\.rules'):
    dora.add_adapters(params, ((r'encoder/nothing', 4),), jax.random.key(0))
  with pytest.raises(path_rules.RuleError, match=r"adapt\.dora\.rules: 'cls'.*2D"):
    dora.add_adapters(params, (('cls', 4),), jax.random.key(0))
