"""Mixed precision: the compute dtype of the forward pass and the storage dtype of frozen leaves.

Trainable parameters and the optimizer state always stay float32. `model.dtype` is the
compute dtype: the forward casts floating parameters and inputs to it (so every flax layer,
whose own dtype is None, computes in it) and returns float32 logits; gradients flow back
through the casts to the float32 trainable leaves. `adapt.frozen_dtype` stores frozen leaves
narrower: bfloat16 (every frozen floating leaf), or int8 / nf4 (frozen kernels, quant.py).
They are never updated, so nothing accumulates their rounding error.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from jaxadapt import quant
from jaxadapt.config import ConfigError

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
FROZEN_STORAGE = (*DTYPES, *quant.QTYPES)


def parse(name: str, key: str) -> jnp.dtype:
  """The dtype named by config key `key`; a one-line error for anything else."""
  if name not in DTYPES:
    raise ConfigError(f"unknown {key} '{name}'; choose one of: {', '.join(DTYPES)}")
  return jnp.dtype(DTYPES[name])


def cast_floating(tree: Any, dtype: Any) -> Any:
  """Casts the floating-point leaves of a pytree to `dtype`; integer leaves pass through."""
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
  )


def check_frozen_storage(name: str) -> None:
  if name not in FROZEN_STORAGE:
    raise ConfigError(
        f"unknown adapt.frozen_dtype '{name}'; choose one of: {', '.join(FROZEN_STORAGE)}"
    )


def store_frozen(
    flat_params: Mapping[str, Any], trainable: Mapping[str, bool], storage: str
) -> dict[str, Any]:
  """Frozen leaves in `storage` (FROZEN_STORAGE); trainable leaves untouched."""
  check_frozen_storage(storage)
  if storage in quant.QTYPES:
    return quant.store_frozen_kernels(flat_params, trainable, storage)
  dtype = DTYPES[storage]
  return {
      p: v if trainable[p] or not jnp.issubdtype(v.dtype, jnp.floating) else v.astype(dtype)
      for p, v in flat_params.items()
  }
