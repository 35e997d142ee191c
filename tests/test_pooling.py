"""jaxadapt's max pool is flax's: same values, same gradients, ties included."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadapt.models import build_model, cnn
from jaxadapt.models.pooling import max_pool

CASES = [  # (input shape, window, strides, padding)
    ((3, 8, 8, 4), (2, 2), (2, 2), 'VALID'),  # the CNN's pool
    ((2, 7, 9, 3), (2, 2), (2, 2), 'VALID'),  # odd sizes: trailing rows/columns unused
    ((2, 9, 9, 3), (3, 3), (2, 2), 'SAME'),  # the ResNet stem's pool: overlapping, padded
    ((2, 10, 10, 2), (3, 3), (1, 1), 'SAME'),
    ((2, 6, 6, 2), (2, 3), (1, 2), ((1, 0), (0, 2))),
    ((2, 10, 3), (2,), (2,), 'VALID'),  # sequences [N, L, C]
]


@pytest.mark.parametrize('shape, window, strides, padding', CASES)
def test_values_and_gradients_equal_flax(shape, window, strides, padding):
  # Small integers after a ReLU: most windows hold ties (zeros and equal positives), where
  # the gradient must go to the first maximal element in row-major order, as flax's does.
  # Integer cotangents make every sum exact, so equality is bitwise even where windows overlap.
  rng = np.random.default_rng(0)
  x = jnp.asarray(np.maximum(rng.integers(-2, 3, shape), 0).astype(np.float32))
  ref, ref_vjp = jax.vjp(lambda x: nn.max_pool(x, window, strides, padding), x)
  out, out_vjp = jax.vjp(lambda x: max_pool(x, window, strides, padding), x)
  g = jnp.asarray(rng.integers(-50, 50, ref.shape).astype(np.float32))
  np.testing.assert_array_equal(out, ref)
  np.testing.assert_array_equal(out_vjp(g)[0], ref_vjp(g)[0])
  # Under jit too (the train step's case), with a float cotangent.
  g = jnp.asarray(rng.standard_normal(ref.shape).astype(np.float32))
  grad = jax.jit(lambda x, g: jax.vjp(lambda x: max_pool(x, window, strides, padding), x)[1](g))
  np.testing.assert_allclose(grad(x, g)[0], ref_vjp(g)[0], rtol=1e-6, atol=1e-6)


def test_windows_of_only_minus_inf_match_flax():
  # Padding is -inf too, and, as in XLA's select_and_scatter, it can be the first maximum
  # (then that window's gradient is dropped).
  x = jnp.full((1, 3, 3, 1), -jnp.inf)
  ref, ref_vjp = jax.vjp(lambda x: nn.max_pool(x, (3, 3), (2, 2), 'SAME'), x)
  out, out_vjp = jax.vjp(lambda x: max_pool(x, (3, 3), (2, 2), 'SAME'), x)
  g = jnp.arange(1.0, 1.0 + ref.size).reshape(ref.shape)
  np.testing.assert_array_equal(out, ref)
  np.testing.assert_array_equal(out_vjp(g)[0], ref_vjp(g)[0])


def test_cnn_train_step_equals_flax_pool(monkeypatch):
  # The default CNN's logits and parameter gradients, with dropout, match the model
  # built on nn.max_pool: the swap changed the speed and nothing else.
  model = build_model('cnn', 10, widths=(8, 16), convs=1, norm='none', dense=32, dropout=0.3)
  x = jax.random.normal(jax.random.key(1), (8, 28, 28, 1))
  params = model.init(jax.random.key(0), x)['params']
  labels = jnp.arange(8) % 10

  def loss(params):
    logits = model.apply({'params': params}, x, train=True, rngs={'dropout': jax.random.key(2)})
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(8), labels]), logits

  ours = jax.jit(jax.grad(loss, has_aux=True))(params)
  monkeypatch.setattr(cnn, 'max_pool', nn.max_pool)
  theirs = jax.jit(jax.grad(loss, has_aux=True))(params)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bad_window_is_an_error():
  with pytest.raises(ValueError, match='must match'):
    max_pool(jnp.ones((1, 4, 4, 1)), (2,), (2,))
