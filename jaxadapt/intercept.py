"""Layers addressed by their kernel's parameter path, for methods that change what a layer
computes without changing its parameters (factored LoRA, IA3)."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import flax.linen as nn


@contextlib.contextmanager
def kernel_layers(layers: tuple[type, ...], call: Callable[..., Any]) -> Iterator[None]:
  """Within the block, `call(next_fun, module, kernel_path, args, kwargs)` runs in place of
  the `__call__` of every module of the `layers` types (`kernel_path` as in the parameter
  tree, e.g. 'encoder/block0/attn/query/kernel'); everything else runs unchanged."""

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != '__call__' or not isinstance(module, layers):
      return next_fun(*args, **kwargs)
    return call(next_fun, module, '/'.join((*module.path, 'kernel')), args, kwargs)

  with nn.intercept_methods(interceptor):
    yield
