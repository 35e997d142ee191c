"""Exact evaluation over whole splits: every example once, padding masked."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxadapt import data, sharding


def eval_sums(
    eval_step: Callable, params, arrays: dict, batch_size: int, mesh
) -> dict[str, np.ndarray]:
  """Summed loss, correct count and example count over a whole split, on the host."""
  sums = None
  for batch in data.eval_batches(arrays, batch_size, jax.process_index(), jax.process_count()):
    s = eval_step(params, sharding.global_batch(batch, mesh))
    sums = s if sums is None else jax.tree.map(jnp.add, sums, s)
  return jax.device_get(sums)


def evaluate_splits(
    eval_step: Callable, params, eval_arrays: dict, batch_size: int, mesh
) -> dict[str, float]:
  """{'<split>/accuracy', '<split>/loss'} for every split in `eval_arrays`."""
  out = {}
  for name, arrays in eval_arrays.items():
    sums = eval_sums(eval_step, params, arrays, batch_size, mesh)
    out[f'{name}/accuracy'] = float(sums['correct'] / sums['count'])
    out[f'{name}/loss'] = float(sums['loss'] / sums['count'])
  return out
