"""Quantised storage for frozen kernels (QLoRA's base): int8 or NF4, dequantised in the step.

A frozen kernel is flattened, padded to whole blocks of 64 values and quantised by qwix
with one float32 absmax scale per block: int8 stores 1 + 4/64 bytes per value (0.27x of
float32), NF4 (QLoRA's 4-bit NormalFloat codebook) 0.5 + 4/64 (0.14x). The step
dequantises each kernel before the forward; frozen kernels get no gradient, so their
rounding never accumulates. The stored leaf is a `QuantizedKernel`, which reports the
kernel's logical shape, so parameter tables and rules see the same paths and shapes.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import qwix

BLOCK = 64
QTYPES = {'int8': jnp.int8, 'nf4': 'nf4'}


@flax.struct.dataclass
class QuantizedKernel:
  """A kernel as (blocks, 64) quantised values and (blocks, 1) float32 scales, plus its
  logical shape and dtype. NF4 values are packed two to a byte (Orbax stores no 4-bit
  arrays)."""

  data: jax.Array  # int8 (blocks, 64), or uint8 (blocks, 32) for NF4
  scale: jax.Array  # float32 (blocks, 1)
  kind: str = flax.struct.field(pytree_node=False)
  shape: tuple[int, ...] = flax.struct.field(pytree_node=False)
  dtype: Any = flax.struct.field(pytree_node=False)

  ndim = property(lambda self: len(self.shape))
  size = property(lambda self: math.prod(self.shape))


def quantize(kernel: jax.Array, kind: str) -> QuantizedKernel:
  """Blocks of 64 consecutive values (row-major), one absmax scale each."""
  flat = kernel.astype(jnp.float32).reshape(-1)
  flat = jnp.pad(flat, (0, -flat.size % BLOCK))
  q = qwix.quantize(
      flat.reshape(-1, BLOCK), QTYPES[kind], channelwise_axes=(0,), tiled_axes={1: BLOCK}
  )
  data = q.qvalue
  if kind == 'nf4':  # codebook indices 0..15: two per byte
    idx = data.astype(jnp.uint8)
    data = idx[:, 0::2] | (idx[:, 1::2] << 4)
  return QuantizedKernel(data, q.scale, kind, tuple(kernel.shape), jnp.dtype(kernel.dtype))


def dequantize(kernel: QuantizedKernel) -> jax.Array:
  data = kernel.data
  if kernel.kind == 'nf4':
    low, high = data & 0xF, data >> 4
    data = jnp.stack([low, high], axis=-1).reshape(data.shape[0], BLOCK).astype(jnp.uint4)
  q = qwix.QArray(qvalue=data, scale=kernel.scale, qtype=QTYPES[kernel.kind])
  values = qwix.dequantize(q).reshape(-1)[: kernel.size]
  return values.reshape(kernel.shape).astype(kernel.dtype)


def is_quantized(x: Any) -> bool:
  return isinstance(x, QuantizedKernel)


def dequantize_tree(tree: Any) -> Any:
  """Every QuantizedKernel of a pytree replaced by its dequantised array."""
  return jax.tree.map(lambda x: dequantize(x) if is_quantized(x) else x, tree, is_leaf=is_quantized)


def store_frozen_kernels(
    flat_params: Mapping[str, Any], trainable: Mapping[str, bool], kind: str
) -> dict[str, Any]:
  """Frozen floating kernels (paths ending in 'kernel', 2D or more) quantised; the rest
  (biases, norms, embeddings, trainable leaves) untouched."""
  return {
      p: quantize(v, kind)
      if not trainable[p]
      and p.endswith('kernel')
      and v.ndim >= 2
      and jnp.issubdtype(v.dtype, jnp.floating)
      else v
      for p, v in flat_params.items()
  }


def dequantize_restored(
    flat_params: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]], kind: str
) -> dict[str, Any]:
  """A checkpoint read without a template holds a quantised kernel as `<path>/data` and
  `<path>/scale`; rebuilds each (logical shapes from the workdir's params.json) and
  returns float32 arrays under the kernel paths."""
  out = {p: v for p, v in flat_params.items() if not p.endswith(('/data', '/scale'))}
  for path in shapes:
    if f'{path}/data' in flat_params:
      kernel = QuantizedKernel(
          jnp.asarray(flat_params[f'{path}/data']),
          jnp.asarray(flat_params[f'{path}/scale']),
          kind,
          tuple(shapes[path]),
          jnp.dtype(jnp.float32),
      )
      out[path] = dequantize(kernel)
  return out
