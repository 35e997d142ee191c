"""Prompt tokens in a token sequence (prompt tuning, visual prompt tuning): pure helpers.

A model with `num_prompts > 0` holds a param `prompt` of shape (prompt_depth, P, width).
Before its first block the P tokens are inserted at position `at` (after a leading class
token, if any); before block i < prompt_depth (deep prompts) the P tokens the previous
block produced there are replaced by fresh ones. After the last block they are removed, so
pooling and the head see the same positions as without prompts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .common import ModelError


def check(num_prompts: int, prompt_depth: int, depth: int) -> None:
  if num_prompts < 0 or (num_prompts and not 1 <= prompt_depth <= depth):
    raise ModelError(
        f'num_prompts={num_prompts}, prompt_depth={prompt_depth}: use num_prompts >= 0 and '
        f'prompt_depth in 1..{depth} (1 = first block only, {depth} = every block)'
    )


def place(x: jax.Array, tokens: jax.Array, at: int, first: bool) -> jax.Array:
  """x (N, L, D) with `tokens` (P, D) inserted at `at` (first) or replacing x[:, at:at+P]."""
  tokens = jnp.broadcast_to(tokens.astype(x.dtype), (x.shape[0], *tokens.shape))
  rest = x[:, at:] if first else x[:, at + tokens.shape[1] :]
  return jnp.concatenate([x[:, :at], tokens, rest], axis=1)


def remove(x: jax.Array, num: int, at: int) -> jax.Array:
  """x (N, L, ...) without positions at..at+num-1."""
  return jnp.concatenate([x[:, :at], x[:, at + num :]], axis=1)


def extend_mask(mask: jax.Array, num: int, at: int) -> jax.Array:
  """A key mask (N, L) with `num` True (attended) columns inserted at `at`."""
  ones = jnp.ones((mask.shape[0], num), bool)
  return jnp.concatenate([mask[:, :at], ones, mask[:, at:]], axis=1)
