r"""What a model tells the rest of jaxadapt about itself: one `ModelSpec` per registry entry.

The adaptation methods (jaxadapt/methods.py) and the config presets know no model by name;
they read its spec. A model module defines its flax class and, next to it, its spec:

    SPEC = ModelSpec(
        module=CNN,
        input_kind='image',
        blocks=lambda m: Blocks(body=tuple(f'block{i}' for i in range(1, len(m.widths) + 1))),
        lora_targets=r'block\d+/conv\d+/kernel',
        smoke=dict(widths=(4, 8)),
    )

and jaxadapt/models/__init__.py lists it in `REGISTRY`.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Mapping, NamedTuple

import flax.linen as nn

# One example's layout: 'image' [H, W, C] floats, 'sequence' [L, C] floats, 'tokens' [L] ids.
INPUT_KINDS = ('image', 'sequence', 'tokens')


class Blocks(NamedTuple):
  """Parameter path prefixes, input to output: a submodule ('encoder/block3' covers
  'encoder/block3/...') or a single parameter (ViT's 'cls').

  With `head` they cover every parameter of the model exactly once: partial fine-tuning
  unfreezes the last k `body` blocks plus `post`; layer-wise lr decay scales `stem` and `body`
  by depth.
  """

  stem: tuple[str, ...] = ()  # before the first block (patch embedding, positions, stem conv)
  body: tuple[str, ...] = ()  # the repeated blocks, in depth order
  post: tuple[str, ...] = ()  # after the last block, before `head` (final norm, dense layer)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A flax classifier and what the adaptation methods need to know about it.

  The module is called as `module(num_classes=..., **kwargs)` and applied as
  `apply({'params': p}, x, train=False, features_only=False)`; its classifier is named `head`.

  Attributes:
    module: the flax.linen class.
    input_kind: one of INPUT_KINDS.
    blocks: the instantiated module -> its Blocks, read from the module's own fields (so
      defaults live only in the class).
    lora_targets: regex over parameter paths of the kernels LoRA adapts by default, or None.
    no_lora: why there are no LoRA targets, and what to use instead (when lora_targets is None).
    ia3_rules: `adapt.ia3.rules` for the model (kernel regex -> 'out' | 'in'), or None when
      it has no attention keys/values and MLP for IA3 to rescale.
    smoke: constructor kwargs of a tiny variant, for tests and `smoke` config runs.
  """

  module: type[nn.Module]
  input_kind: str
  blocks: Callable[[nn.Module], Blocks]
  lora_targets: str | None
  no_lora: str = ''
  ia3_rules: tuple[tuple[str, str], ...] | None = None
  smoke: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.input_kind not in INPUT_KINDS:
      raise ValueError(f'input_kind {self.input_kind!r} is not one of {INPUT_KINDS}')
    if self.lora_targets is None and not self.no_lora:
      raise ValueError(f'{self.module.__name__}: lora_targets=None needs a no_lora reason')
    # Read-only: a spec is shared by every run in the process.
    object.__setattr__(self, 'smoke', types.MappingProxyType(dict(self.smoke)))
