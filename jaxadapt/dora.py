"""DoRA (Liu et al. 2024): weight-decomposed low-rank adaptation on the parameter tree.

A kernel W chosen by `adapt.dora.rules` (regex -> rank), flattened to (fan_in, fan_out),
becomes `m * V / ||V||_c` with `V = W + (alpha / r) a b` and `||.||_c` the norm of each
output column (over fan_in; for a conv over kh, kw and in). The adapters live at
`dora/<path of W>/{a, b, dm}`: `a` (fan_in, r) and `b` (r, fan_out) as in LoRA (lora.py,
`b` zero), and the learned magnitude as an offset from the frozen kernel's own column
norms, `m = ||W||_c + dm` with `dm` (fan_out,) zero at init. Storing the offset (the same
gradient as m itself) makes the init exact: the forward computes `||W||_c` and `||V||_c`
in the same program from the same bits, so `m / ||V||_c` is exactly 1 at init, where an m
stored at init time differs from the forward's norm by float rounding.

The direction needs the whole of V, so DoRA is always applied merged: `merge` rebuilds the
adapted kernels, inside the forward (every step, differentiated through the norm as in
the paper's formula) and for exports.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from jaxadapt import lora, param_tree

NAME = 'dora'
PREFIX = f'{NAME}/'


def column_norm(kernel: jax.Array) -> jax.Array:
  """Norm of each output column of a Dense (in, out) or conv (kh, kw, in, out) kernel."""
  return _norm(kernel.reshape(-1, kernel.shape[-1]).astype(jnp.float32))


def _norm(v: jax.Array) -> jax.Array:
  # A dot rather than sum(v * v): XLA keeps a dot out of elementwise fusions, so the norm
  # computed at init and inside the jitted forward round alike; the barrier stops XLA from
  # rewriting m / sqrt(s) as the approximate m * rsqrt(s). Then m / ||W||_c is exactly 1.
  norm = jnp.sqrt(jnp.einsum('ij,ij->j', v, v, precision=jax.lax.Precision.HIGHEST))
  return jax.lax.optimization_barrier(norm)


def add_adapters(params: Mapping, rules, key: jax.Array) -> dict:
  """Returns params with a `dora` subtree {a, b, m} for every kernel a rule gives a rank > 0."""
  base = {k: v for k, v in params.items() if k not in param_tree.ADAPTER_TREES}
  adapters = param_tree.flatten(lora.add_adapters(base, rules, key, name=NAME)[NAME])
  flat_base = param_tree.flatten(base)
  for key_a in [k for k in adapters if k.endswith('/a')]:
    path = key_a[: -len('/a')]
    adapters[f'{path}/dm'] = jnp.zeros(flat_base[path].shape[-1], flat_base[path].dtype)
  return {**params, NAME: param_tree.unflatten(adapters)}


def adapted_kernel(kernel: jax.Array, a: jax.Array, b: jax.Array, dm: jax.Array, alpha: float):
  """m * V / ||V||_c with V = W + (alpha / r) a b and m = ||W||_c + dm, in W's shape and dtype."""
  w = kernel.reshape(-1, kernel.shape[-1]).astype(jnp.float32)
  v = w + (alpha / a.shape[-1]) * (a.astype(jnp.float32) @ b.astype(jnp.float32))
  m = jax.lax.stop_gradient(_norm(w)) + dm.astype(jnp.float32)
  return (v * (m / _norm(v))).reshape(kernel.shape).astype(kernel.dtype)


def merge(params: Mapping, alpha: float) -> Any:
  """Replaces every DoRA-adapted kernel by `adapted_kernel` and drops the `dora` subtree."""
  if NAME not in params:
    return params
  adapters = param_tree.flatten(params[NAME])
  out = param_tree.flatten({k: v for k, v in params.items() if k != NAME})
  for key in adapters:
    if key.endswith('/dm'):
      path = key[: -len('/dm')]
      a, b = adapters[f'{path}/a'], adapters[f'{path}/b']
      out[path] = adapted_kernel(out[path], a, b, adapters[key], alpha)
  return param_tree.unflatten(out)
