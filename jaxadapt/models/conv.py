"""`lax.conv_general_dilated` whose kernel gradient XLA:CPU computes in chunks of the batch.

On XLA:CPU (YNNPACK) the kernel-gradient convolution costs more per example as the batch
grows: for the default CNN's layers a batch of 128 costs 1.4x (3x3x32x64) to 4x (3x3x1x32)
what 8 chunks of 16 examples cost together. Here the forward pass and the input gradient are
XLA's usual convolutions; on CPU the kernel gradient is the sum of kernel gradients over
interleaved chunks of about CHUNK examples (example i goes to chunk i % k, so a batch split
over devices splits every chunk evenly); on other platforms it is XLA's single convolution.
Pass it to `nn.Conv(conv_general_dilated=...)`: parameters, paths and values are unchanged,
and gradients differ from nn.Conv's only by the order of a sum (tests/test_conv.py).
"""

from __future__ import annotations

import functools

import jax
from jax import lax

CHUNK = 16  # examples per kernel-gradient chunk (8 to 16 measured best on this CPU)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
):
  """Same arguments and result as `lax.conv_general_dilated`; see the module docstring."""
  tup = lambda v: None if v is None else tuple(v)
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  params = (
      ('window_strides', tuple(window_strides)),
      ('padding', padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)),
      ('lhs_dilation', tup(lhs_dilation)),
      ('rhs_dilation', tup(rhs_dilation)),
      ('dimension_numbers', dn),
      ('feature_group_count', feature_group_count),
      ('batch_group_count', batch_group_count),
      ('precision', precision),
      ('preferred_element_type', preferred_element_type),
  )
  return _conv(lhs, rhs, params)


def _plain(params, lhs, rhs):
  return lax.conv_general_dilated(lhs, rhs, **dict(params))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(lhs, rhs, params):
  return _plain(params, lhs, rhs)


def _fwd(lhs, rhs, params):
  return _plain(params, lhs, rhs), (lhs, rhs)


def _bwd(params, residuals, g):
  lhs, rhs = residuals
  dlhs = jax.vjp(lambda x: _plain(params, x, rhs), lhs)[1](g)[0]  # unused ones are DCE'd
  drhs = lax.platform_dependent(
      lhs,
      rhs,
      g,
      cpu=functools.partial(_chunked_kernel_grad, params),
      default=functools.partial(_kernel_grad, params),
  )
  return dlhs, drhs


_conv.defvjp(_fwd, _bwd)


def _kernel_grad(params, lhs, rhs, g):
  return jax.vjp(lambda w: _plain(params, lhs, w), rhs)[1](g)[0]


def num_chunks(batch: int, chunk: int = CHUNK) -> int:
  """The largest k <= batch // chunk that divides the batch (1: no chunking)."""
  k = max(batch // chunk, 1)
  while batch % k:
    k -= 1
  return k


def _chunked_kernel_grad(params, lhs, rhs, g):
  p = dict(params)
  dn = p['dimension_numbers']
  grouped = p['feature_group_count'] != 1 or p['batch_group_count'] != 1
  batch = lhs.shape[dn.lhs_spec[0]]
  k = 1 if grouped else num_chunks(batch)
  if k == 1:
    return _kernel_grad(params, lhs, rhs, g)
  chunk = lambda x, axis, i: lax.index_in_dim(
      x.reshape(*x.shape[:axis], batch // k, k, *x.shape[axis + 1 :]), i, axis + 1, keepdims=False
  )
  grads = [
      _kernel_grad(params, chunk(lhs, dn.lhs_spec[0], i), rhs, chunk(g, dn.out_spec[0], i))
      for i in range(k)
  ]
  return functools.reduce(lax.add, grads)
