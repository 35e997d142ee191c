"""Every adapter kind at once: fold LoRA, DoRA and IA3 into plain weights; refuse prompts.

Used wherever a trained workdir becomes a plain model (exports, predict, teachers). The
`adapt` argument is the run's `adapt` config section (config.json), for the alphas.
"""

from __future__ import annotations

from typing import Any, Mapping

from jaxadapt import dora, ia3, lora
from jaxadapt.errors import UserError

PROMPT = 'prompt'  # the model param that holds learned prompt tokens (models/vit.py, bert.py)


class MergeError(UserError):
  """Adapters that cannot be folded into the base weights."""


def merge_all(params: Mapping, adapt: Mapping) -> Any:
  """params with every LoRA, DoRA and IA3 adapter folded into its kernel (prompts kept:
  they are model inputs the model itself reads)."""
  params = lora.merge(params, adapt.get('lora', {}).get('alpha', 1.0))
  params = dora.merge(params, adapt.get('dora', {}).get('alpha', 1.0))
  return ia3.merge(params)


def check_mergeable(params: Mapping, what: str) -> None:
  """Raises MergeError if `params` hold prompt tokens, which no weight edit can replace."""
  if PROMPT in params:
    raise MergeError(
        f'{what}: prompt tuning cannot be merged into the base weights (the prompts are '
        f'extra input tokens, not a weight change); export with --mode adapters or full'
    )
