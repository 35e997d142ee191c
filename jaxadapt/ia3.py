"""IA3 (Liu et al. 2022): learned element-wise rescaling of activations, on the parameter tree.

`adapt.ia3.rules` map kernel paths to where the vector acts: 'out' rescales the layer's
output (attention keys and values: `l * (x W + bias)`), 'in' its input (the MLP's
intermediate activation is fc2's input: `(l * h) W + bias`). The vectors live at
`ia3/<path of W>/scale_out` (fan_out,) or `.../scale_in` (W's input features,), all ones
at init, so the adapted model is exactly the base model.

In training, `scaled(vectors)` makes the flax layers themselves multiply (through
intercept.kernel_layers, as lora.factored does for LoRA): the backward costs an
element-wise product, never a kernel gradient. `merge` folds the vectors into the
kernels (and the bias, for 'out'): the same function as a plain model, for exports.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import flax.linen as nn
import jax.numpy as jnp

from jaxadapt import intercept, param_tree, path_rules
from jaxadapt.path_rules import RuleError

NAME = 'ia3'
PREFIX = f'{NAME}/'
WHERE = ('out', 'in')
_LAYERS = (nn.Dense, nn.Conv)


def add_scales(params: Mapping, rules) -> dict:
  """Returns params with an `ia3` subtree: a ones vector per kernel a rule names."""
  flat = param_tree.flatten({k: v for k, v in params.items() if k not in param_tree.ADAPTER_TREES})
  where = path_rules.match(rules, list(flat), 'adapt.ia3.rules', default=None, require_cover=False)
  scales = {}
  for path, side in sorted(where.items()):
    if not side:
      continue
    if side not in WHERE or not path.endswith('kernel') or flat[path].ndim not in (2, 4):
      raise RuleError(
          f"adapt.ia3.rules: '{path}' -> {side!r}; IA3 rescales the 'out'put or 'in'put of "
          f"a Dense or Conv kernel, e.g. (r'.*attn/(key|value)/kernel', 'out')"
      )
    kernel = flat[path]
    size = kernel.shape[-1] if side == 'out' else kernel.shape[-2]
    scales[f'{PREFIX}{path}/scale_{side}'] = jnp.ones((size,), kernel.dtype)
  if not scales:
    raise RuleError("adapt.ia3.rules name no kernel; e.g. (r'.*attn/(key|value)/kernel', 'out')")
  return {**params, NAME: param_tree.unflatten({k[len(PREFIX) :]: v for k, v in scales.items()})}


def vectors(params: Mapping) -> dict[tuple[str, str], Any]:
  """{(kernel path, 'out' | 'in'): vector} from the `ia3` subtree of nested params."""
  flat = param_tree.flatten(params.get(NAME, {}))
  return {(k.rsplit('/', 1)[0], k.rsplit('_', 1)[1]): v for k, v in flat.items()}


@contextlib.contextmanager
def scaled(vecs: Mapping[tuple[str, str], Any]) -> Iterator[None]:
  """Within the block, flax Dense and Conv layers named in `vecs` rescale their input or
  output. Raises RuleError on exit if a vector was used by no layer (it would train nothing).
  """
  if not vecs:
    yield
    return
  used = set()

  def call(next_fun, module, path, args, kwargs):
    if (path, 'in') in vecs:
      used.add((path, 'in'))
      args = (args[0] * vecs[path, 'in'].astype(args[0].dtype), *args[1:])
    y = next_fun(*args, **kwargs)
    if (path, 'out') in vecs:
      used.add((path, 'out'))
      y = y * vecs[path, 'out'].astype(y.dtype)
    return y

  with intercept.kernel_layers(_LAYERS, call):
    yield
  unused = sorted(set(vecs) - used)
  if unused:
    raise RuleError(
        f"adapt.ia3.rules: no Dense or Conv layer uses '{unused[0][0]}'; target the kernel "
        f'of one of those layers'
    )


def merge(params: Mapping) -> Any:
  """Folds every vector into its kernel ('out': columns and bias; 'in': rows); drops `ia3`."""
  if NAME not in params:
    return params
  out = param_tree.flatten({k: v for k, v in params.items() if k != NAME})
  for (path, side), vec in vectors(params).items():
    kernel = out[path]
    if side == 'out':
      out[path] = (kernel * vec).astype(kernel.dtype)
      bias = path[: -len('kernel')] + 'bias'
      if bias in out:
        out[bias] = (out[bias] * vec).astype(out[bias].dtype)
    else:
      out[path] = (kernel * vec[:, None]).astype(kernel.dtype)
  return param_tree.unflatten(out)
