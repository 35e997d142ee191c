"""LoRA on the parameter tree: adapters beside the weights, applied in factored form.

For a kernel W chosen by `adapt.lora.rules` (regex -> rank), the adapter pair lives at
`lora/<path of W>/a` with shape (fan_in, r) and `.../b` with shape (r, fan_out). Dense
kernels (in, out) and conv kernels (kh, kw, in, out) both flatten to (fan_in, fan_out).
`a` is random, `b` zero: at init the adapted model is exactly the base model.

Two forms of the same function, equal up to float rounding (tested):

- factored: inside `factored(adapters, alpha)` every flax Dense, DenseGeneral or Conv layer
  whose kernel has adapters returns `layer(x) + (alpha / r) (x a) b` (for a conv:
  conv(x, a reshaped) b). The backward pass computes gradients for `a` and `b` from rank-r
  activations and never the full (fan_in, fan_out) kernel gradient; frozen W gets none.
- merged: the layer sees W + (alpha / r) a b, so the backward forms the kernel gradient
  (fan_in x fan_out per output position) and projects it onto `a` and `b`.

Per output position the factored path adds about 3 r (fan_in + fan_out) multiply-adds (its
forward, and the backward's da, db and dx terms) where merging adds fan_in fan_out (the
kernel gradient). `adapt.lora.form='auto'` factors a kernel only when that is cheaper: the
ViT's 256 x 256 projections factor, a first conv with fan_in 9 merges. `merge` folds
adapters into kernels for exports and teachers.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxadapt import intercept, path_rules, param_tree
from jaxadapt.path_rules import RuleError

PREFIX = 'lora/'


class LoRAError(RuleError):
  """An adapter the model cannot apply (unsupported layer, or no layer uses the kernel)."""


def add_adapters(params: Mapping, rules, key: jax.Array, name: str = 'lora') -> dict:
  """Returns params with a `<name>` subtree (`lora`; DoRA reuses it as `dora`) holding
  an (a, b) pair for every kernel a rule gives a rank > 0."""
  flat = param_tree.flatten(params)
  prefix, field = f'{name}/', f'adapt.{name}.rules'
  ranks = path_rules.match(
      rules,
      [p for p in flat if not p.startswith(prefix)],
      field,
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
          f"{field}: '{path}' has shape {kernel.shape}; {name} needs a "
          f'2D (Dense) or 4D (Conv) kernel'
      )
    fan_in, fan_out = int(np.prod(kernel.shape[:-1])), kernel.shape[-1]
    # A rank above min(fan_in, fan_out) adds parameters but no expressiveness: cap it.
    rank = min(int(rank), fan_in, fan_out)
    a = jax.random.normal(jax.random.fold_in(key, i), (fan_in, rank), kernel.dtype)
    adapters[f'{prefix}{path}/a'] = a / np.sqrt(fan_in)
    adapters[f'{prefix}{path}/b'] = jnp.zeros((rank, fan_out), kernel.dtype)
  if not adapters:
    raise RuleError(f"{field} give no kernel a rank > 0; e.g. ('.*kernel', 8)")
  return param_tree.unflatten({**flat, **adapters})


def merge(params: Mapping, alpha: float) -> Any:
  """Folds every adapter into its kernel (scale alpha / rank) and drops the `lora` subtree."""
  if 'lora' not in params:
    return params
  return _fold({k: v for k, v in params.items() if k != 'lora'}, adapter_pairs(params), alpha)


def _fold(base: Mapping, pairs: Mapping[str, tuple[Any, Any]], alpha: float) -> dict:
  """W + (alpha / r) a b for every (a, b) in `pairs`, reshaped to W's shape and dtype."""
  out = dict(param_tree.flatten(base))
  for path, (a, b) in pairs.items():
    scale = alpha / a.shape[-1]
    delta = (scale * (a.astype(jnp.float32) @ b.astype(jnp.float32))).reshape(out[path].shape)
    out[path] = (out[path].astype(jnp.float32) + delta).astype(out[path].dtype)
  return param_tree.unflatten(out)


def adapter_paths(flat_params: Mapping[str, Any]) -> list[str]:
  return [p for p in flat_params if p.startswith(PREFIX)]


def adapter_pairs(params: Mapping) -> dict[str, tuple[Any, Any]]:
  """{kernel path: (a, b)} from the `lora` subtree of nested params."""
  flat = param_tree.flatten(params.get('lora', {}))
  return {
      key[: -len('/a')]: (flat[key], flat[key[: -len('/a')] + '/b'])
      for key in flat
      if key.endswith('/a')
  }


FORMS = ('auto', 'factored', 'merged')


def check_form(form: str) -> None:
  if form not in FORMS:
    raise LoRAError(f"unknown adapt.lora.form '{form}'; choose one of: {', '.join(FORMS)}")


def factoring_is_cheaper(a: Any, b: Any) -> bool:
  """3 r (fan_in + fan_out) < fan_in fan_out: the factored path's extra multiply-adds per
  output position against the kernel gradient that merging computes."""
  (fan_in, rank), fan_out = a.shape, b.shape[-1]
  return 3 * rank * (fan_in + fan_out) < fan_in * fan_out


def split(
    params: Mapping, alpha: float, form: str = 'auto'
) -> tuple[dict, dict[str, tuple[Any, Any]]]:
  """Nested params -> (base params with the merged-form adapters folded in, the adapters
  to apply in factored form as {kernel path: (a, b)})."""
  check_form(form)
  pairs = adapter_pairs(params)
  factor = {
      path: form == 'factored' or (form == 'auto' and factoring_is_cheaper(a, b))
      for path, (a, b) in pairs.items()
  }
  base = {k: v for k, v in params.items() if k != 'lora'}
  merged = {p: ab for p, ab in pairs.items() if not factor[p]}
  if merged:
    base = _fold(base, merged, alpha)
  return base, {p: ab for p, ab in pairs.items() if factor[p]}


@contextlib.contextmanager
def factored(adapters: Mapping[str, tuple[Any, Any]], alpha: float) -> Iterator[None]:
  """Within the block, flax layers whose kernel has adapters add (alpha/r) (x a) b.

  Raises LoRAError on exit if an adapter's kernel was used by no supported layer: an
  adapter that silently does nothing would train nothing.
  """
  if not adapters:
    yield
    return
  used = set()

  def call(next_fun, module, path, args, kwargs):
    if path not in adapters:
      return next_fun(*args, **kwargs)
    used.add(path)
    y = next_fun(*args, **kwargs)
    a, b = adapters[path]
    delta = _low_rank(module, path, args[0], a.astype(y.dtype), b.astype(y.dtype))
    return y + (alpha / a.shape[-1]) * delta.reshape(y.shape)

  with intercept.kernel_layers(_LAYERS, call):
    yield
  unused = sorted(set(adapters) - used)
  if unused:
    raise LoRAError(
        f"adapt.lora.rules: no Dense, DenseGeneral or Conv layer uses '{unused[0]}'"
        + (f' (and {len(unused) - 1} more)' if len(unused) > 1 else '')
        + '; target the kernel of one of those layers'
    )


_LAYERS = (nn.Dense, nn.DenseGeneral, nn.Conv)


def _low_rank(module: nn.Module, path: str, x: jax.Array, a: jax.Array, b: jax.Array):
  """(x a) b for the layer's own contraction: rank-r activations, never a full kernel."""
  x = x.astype(a.dtype)
  if isinstance(module, nn.Conv):
    if module.feature_group_count != 1 or module.mask is not None:
      raise LoRAError(
          f"adapt.lora.rules: '{path}' is a grouped or masked conv, which LoRA does not "
          f'support; target ungrouped convs only'
      )
    kernel_shape = (*module.kernel_size, x.shape[-1], a.shape[-1])
    # The same conv (strides, padding, dilation) with r output channels and `a` as kernel.
    low = module.clone(parent=None, features=a.shape[-1], use_bias=False, name=None)
    h = low.apply({'params': {'kernel': a.reshape(kernel_shape)}}, x)
    return jnp.dot(h, b, precision=module.precision)
  if isinstance(module, nn.DenseGeneral):
    features = module.features if isinstance(module.features, tuple) else (module.features,)
    if module.axis not in (-1, (-1,), x.ndim - 1, (x.ndim - 1,)) or len(features) != 1:
      raise LoRAError(
          f"adapt.lora.rules: '{path}' is a DenseGeneral over several axes; LoRA needs a "
          f'2D kernel (axis=-1, one feature axis)'
      )
  if x.shape[-1] != a.shape[0]:
    raise LoRAError(f"adapt.lora.rules: adapter of '{path}' does not fit input {x.shape}")
  return jnp.dot(jnp.dot(x, a, precision=module.precision), b, precision=module.precision)
