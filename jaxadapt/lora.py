"""LoRA on the parameter tree: adapters beside the weights, merged on the fly.

For a kernel W chosen by `adapt.lora.rules` (regex -> rank), the adapter
pair lives at `lora/<path of W>/a` with shape (fan_in, r) and `.../b` with
shape (r, fan_out), and the model sees W + (alpha / r) * (a @ b) reshaped to
W's shape. Dense kernels (in, out) and conv kernels (kh, kw, in, out) both
flatten to (fan_in, fan_out), so LoRA works on every model of the registry
without touching its code. `a` is random, `b` zero: at init the adapted model
is exactly the base model.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxadapt import path_rules, param_tree
from jaxadapt.path_rules import RuleError

PREFIX = 'lora/'


def add_adapters(params: Mapping, rules, key: jax.Array) -> dict:
  """Returns params with a `lora` subtree for every kernel a rule gives a rank > 0."""
  flat = param_tree.flatten(params)
  ranks = path_rules.match(
      rules,
      [p for p in flat if not p.startswith(PREFIX)],
      'adapt.lora.rules',
      default=0,
      require_cover=False,
  )
  adapters = {}
  for i, (path, rank) in enumerate(sorted(ranks.items())):
    if not rank:
      continue
    kernel = flat[path]
    if kernel.ndim not in (2, 4):
      raise RuleError(
          f"adapt.lora.rules: '{path}' has shape {kernel.shape}; LoRA needs a "
          f'2D (Dense) or 4D (Conv) kernel'
      )
    fan_in, fan_out = int(np.prod(kernel.shape[:-1])), kernel.shape[-1]
    # A rank above min(fan_in, fan_out) adds parameters but no expressiveness: cap it.
    rank = min(int(rank), fan_in, fan_out)
    a = jax.random.normal(jax.random.fold_in(key, i), (fan_in, rank), kernel.dtype)
    adapters[f'{PREFIX}{path}/a'] = a / np.sqrt(fan_in)
    adapters[f'{PREFIX}{path}/b'] = jnp.zeros((rank, fan_out), kernel.dtype)
  if not adapters:
    raise RuleError("adapt.lora.rules give no kernel a rank > 0; e.g. ('.*kernel', 8)")
  return param_tree.unflatten({**flat, **adapters})


def merge(params: Mapping, alpha: float) -> Any:
  """Folds every adapter into its kernel (scale alpha / rank) and drops the `lora` subtree."""
  if 'lora' not in params:
    return params
  flat = param_tree.flatten(params)
  out = {k: v for k, v in flat.items() if not k.startswith(PREFIX)}
  for key in flat:
    if key.startswith(PREFIX) and key.endswith('/a'):
      path = key[len(PREFIX) : -len('/a')]
      a, b = flat[key], flat[f'{PREFIX}{path}/b']
      scale = alpha / a.shape[-1]
      out[path] = out[path] + (scale * (a @ b)).reshape(out[path].shape).astype(out[path].dtype)
  return param_tree.unflatten(out)


def adapter_paths(flat_params: Mapping[str, Any]) -> list[str]:
  return [p for p in flat_params if p.startswith(PREFIX)]
