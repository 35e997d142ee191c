"""Max pooling whose gradient XLA:CPU runs as cheap elementwise code.

`flax.linen.max_pool` lowers to `reduce_window`, whose gradient is XLA's
`select_and_scatter`. The CPU backend expands that into a variadic reduce-window
carrying an int32 index per input dimension (four full-size iota arrays for
NHWC) and a scatter with one 4-index row per input element: on the default CNN
that was about half of the train step. Here, as PyTorch does, the forward
pass also records which element of each window won (the first maximal one in
row-major order, padding included: the one `select_and_scatter` picks), and the
backward pass routes each output gradient to it: a few fused elementwise passes.
Values and gradients equal `nn.max_pool`'s (tests/test_pooling.py).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def max_pool(
    x: jax.Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = 'VALID',
) -> jax.Array:
  """Drop-in for `nn.max_pool` on [N, *spatial, C] inputs (same arguments and results)."""
  window = tuple(window_shape)
  strides = tuple(strides) if strides is not None else (1,) * len(window)
  spatial = x.shape[1:-1]
  if len(window) != len(spatial) or len(strides) != len(window):
    raise ValueError(f'max_pool: window {window} and strides {strides} must match {spatial}')
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(spatial, window, strides, padding)
  return _max_pool(x, window, strides, tuple((int(lo), int(hi)) for lo, hi in padding))


def _out_shape(spatial, window, strides, padding) -> tuple[int, ...]:
  return tuple(
      (s + lo + hi - w) // st + 1 for s, w, st, (lo, hi) in zip(spatial, window, strides, padding)
  )


def _window_slices(xp, out, window, strides):
  """For each window offset in row-major order, the [N, *out, C] strided slice it sees."""
  return [
      lax.slice(
          xp,
          (0, *off, 0),
          (xp.shape[0], *(o + (n - 1) * s + 1 for o, n, s in zip(off, out, strides)), xp.shape[-1]),
          (1, *strides, 1),
      )
      for off in np.ndindex(*window)
  ]


def _pad_spatial(x, padding, value, interior=None):
  interior = interior or (0,) * len(padding)
  config = ((0, 0, 0), *((lo, hi, i) for (lo, hi), i in zip(padding, interior)), (0, 0, 0))
  return lax.pad(x, jnp.asarray(value, x.dtype), config)


def _pool_with_winner(x, window, strides, padding):
  """(max over each window, index of the first maximal element in the window)."""
  out = _out_shape(x.shape[1:-1], window, strides, padding)
  xp = _pad_spatial(x, padding, -jnp.inf)
  slices = _window_slices(xp, out, window, strides)
  y = functools.reduce(jnp.maximum, slices)
  index_dtype = jnp.int8 if len(slices) <= 127 else jnp.int32
  winner = jnp.full(y.shape, len(slices), index_dtype)
  for k in reversed(range(len(slices))):  # the last assignment is the first offset
    winner = jnp.where(slices[k] == y, jnp.asarray(k, index_dtype), winner)
  return y, winner


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, padding):
  return _pool_with_winner(x, window, strides, padding)[0]


def _fwd(x, window, strides, padding):
  y, winner = _pool_with_winner(x, window, strides, padding)
  return y, (winner, x.shape)


def _bwd(window, strides, padding, residuals, g):
  winner, shape = residuals
  spatial = shape[1:-1]
  out = g.shape[1:-1]
  padded = tuple(s + lo + hi for s, (lo, hi) in zip(spatial, padding))
  dxp = None
  for k, off in enumerate(np.ndindex(*window)):
    # Put this offset's share back at its strided positions: a pad with interior zeros.
    share = jnp.where(winner == k, g, jnp.zeros((), g.dtype))
    pads = [(o, p - o - (n - 1) * s - 1) for o, p, n, s in zip(off, padded, out, strides)]
    part = _pad_spatial(share, pads, 0, interior=[s - 1 for s in strides])
    dxp = part if dxp is None else dxp + part
  starts = (0, *(lo for lo, _ in padding), 0)
  return (lax.slice(dxp, starts, tuple(b + n for b, n in zip(starts, shape))),)


_max_pool.defvjp(_fwd, _bwd)
