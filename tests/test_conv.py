"""jaxadapt's convolution is lax's: same values, same gradients (up to summation order)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxadapt.models import build_model, cnn, conv

CASES = [  # (lhs shape, kernel shape, strides, padding): NHWC / HWIO, or NWC / WIO
    ((64, 14, 14, 8), (3, 3, 8, 16), (1, 1), 'SAME'),  # 4 chunks of 16
    ((48, 9, 9, 3), (3, 3, 3, 4), (2, 2), 'SAME'),  # 3 chunks, strided
    ((40, 7, 7, 2), (2, 2, 2, 3), (1, 1), 'VALID'),  # 40 = 2 chunks of 20
    ((8, 6, 6, 2), (3, 3, 2, 3), (1, 1), 'SAME'),  # smaller than a chunk: one piece
    ((32, 20, 3), (5, 3, 4), (1,), 'SAME'),  # 1D
]


def _dn(lhs_shape):
  return ('NHWC', 'HWIO', 'NHWC') if len(lhs_shape) == 4 else ('NWC', 'WIO', 'NWC')


@pytest.mark.parametrize('lhs_shape, rhs_shape, strides, padding', CASES)
def test_values_and_gradients_equal_lax(lhs_shape, rhs_shape, strides, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(lhs_shape).astype(np.float32))
  w = jnp.asarray(rng.standard_normal(rhs_shape).astype(np.float32))
  args = dict(window_strides=strides, padding=padding, dimension_numbers=_dn(lhs_shape))
  ref, ref_vjp = jax.vjp(lambda x, w: lax.conv_general_dilated(x, w, **args), x, w)
  out, out_vjp = jax.vjp(lambda x, w: conv.conv_general_dilated(x, w, **args), x, w)
  g = jnp.asarray(rng.standard_normal(ref.shape).astype(np.float32))
  np.testing.assert_array_equal(out, ref)
  grad = jax.jit(lambda g: out_vjp(g))  # the train step's case: compiled for CPU
  for ours, theirs in zip(grad(g), ref_vjp(g)):
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * float(jnp.abs(theirs).max()))


def test_chunks_divide_the_batch():
  assert [conv.num_chunks(b) for b in (128, 64, 100, 31, 8)] == [8, 4, 5, 1, 1]


def test_other_platforms_take_the_single_convolution():
  # platform_dependent compiles only the CPU branch here; check the other one directly.
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((32, 6, 6, 2)).astype(np.float32))
  w = jnp.asarray(rng.standard_normal((3, 3, 2, 4)).astype(np.float32))
  dn = lax.conv_dimension_numbers(x.shape, w.shape, ('NHWC', 'HWIO', 'NHWC'))
  params = tuple(
      dict(
          window_strides=(1, 1),
          padding='SAME',
          lhs_dilation=None,
          rhs_dilation=None,
          dimension_numbers=dn,
          feature_group_count=1,
          batch_group_count=1,
          precision=None,
          preferred_element_type=None,
      ).items()
  )
  g = jnp.ones((32, 6, 6, 4))
  whole = conv._kernel_grad(params, x, w, g)
  chunked = conv._chunked_kernel_grad(params, x, w, g)
  ref = jax.vjp(lambda w: lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=dn), w)
  np.testing.assert_array_equal(whole, ref[1](g)[0])
  np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5)


def test_cnn_gradients_equal_flax_conv(monkeypatch):
  # The default CNN's parameters, logits and gradients match the model on nn.Conv's own
  # convolution: the swap changed the speed and nothing else.
  model = build_model('cnn', 10, widths=(8, 16), convs=1, norm='none', dense=32, dropout=0.3)
  x = jax.random.normal(jax.random.key(1), (64, 28, 28, 1))
  labels = jnp.arange(64) % 10

  def grads():
    params = model.init(jax.random.key(0), x)['params']

    def loss(params):
      rngs = {'dropout': jax.random.key(2)}
      logits = model.apply({'params': params}, x, train=True, rngs=rngs)
      return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(64), labels]), logits

    return params, jax.jit(jax.grad(loss, has_aux=True))(params)

  ours = grads()
  monkeypatch.setattr(cnn, 'Conv', nn.Conv)
  theirs = grads()
  assert jax.tree.structure(ours) == jax.tree.structure(theirs)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
