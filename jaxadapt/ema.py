"""An exponential moving average of the trainable parameters, for evaluation (`optim.ema`).

The average lives in the optimizer state, one `EmaState` per trainable group of
`optax.partition`, so it covers trainable leaves only (a LoRA run averages its adapters,
never the frozen base), is sharded like the parameters, and is saved and restored with
the train state: a resumed run continues the same average bitwise. Evaluation uses
`ema_params(state)`: the parameters with every averaged leaf replaced by its average.

The decay warms up as min(decay, (1 + t) / (10 + t)) after t updates, as TensorFlow's
`ExponentialMovingAverage(num_updates=...)` does, so a short run is not evaluated on
weights that still mostly remember its initialisation. optax has no parameter EMA (its
`optax.ema` averages the updates), hence this transformation.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
import optax
from safetensors import safe_open
from safetensors.numpy import save_file

from jaxadapt import param_tree

FILE = 'ema.safetensors'  # in the workdir: the final averages (checkpoint.restore_params uses them)


class EmaState(NamedTuple):
  count: jax.Array
  ema: Any


def track(decay: float) -> optax.GradientTransformation:
  """Leaves the updates unchanged; keeps the average of `params + updates` in its state."""

  def init(params):
    # A copy, not an alias: the train step donates its state, params and average alike.
    return EmaState(
        jnp.zeros((), jnp.int32), jax.tree.map(lambda p: jnp.array(p, copy=True), params)
    )

  def update(updates, state, params=None):
    if params is None:
      raise ValueError('ema.track needs the parameters: call tx.update(grads, state, params)')
    t = state.count.astype(jnp.float32)
    d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
    new = jax.tree.map(
        lambda p, u, e: d * e + (1 - d) * (p + u).astype(e.dtype), params, updates, state.ema
    )
    return updates, EmaState(state.count + 1, new)

  return optax.GradientTransformation(init, update)


def averages(opt_state: Any) -> dict[str, jax.Array]:
  """{path: average} of every EmaState inside an optimizer state."""
  found = {}
  for s in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, EmaState)):
    if isinstance(s, EmaState):  # optax.partition masks the other groups' leaves out
      found.update(
          {
              k: v
              for k, v in param_tree.flatten(s.ema).items()
              if not isinstance(v, optax.MaskedNode)
          }
      )
  return found


def ema_params(params: Any, opt_state: Any) -> Any:
  """`params` with every averaged leaf replaced by its average (unchanged without EMA)."""
  avg = averages(opt_state)
  if not avg:
    return params
  return param_tree.unflatten({**param_tree.flatten(params), **avg})


def save_averages(workdir: str, opt_state: Any, step: int) -> None:
  """Writes the averages after `step` to `workdir/ema.safetensors` (every process gathers;
  process 0 writes), so what is loaded from the run is what its evaluation measured."""
  avg = {
      k: np.asarray(multihost_utils.process_allgather(v, tiled=True))
      for k, v in averages(opt_state).items()
  }
  if jax.process_index() == 0 and avg:
    tmp = os.path.join(workdir, FILE + '.tmp')
    save_file(avg, tmp, metadata={'step': str(step)})
    os.replace(tmp, os.path.join(workdir, FILE))  # atomic: never a torn file


def with_averages(params: Any, workdir: Any, step: int) -> Any:
  """Restored `params` of `step` with the run's averages in place, if it saved averages for
  that very step (a run stopped before its end has none newer than its checkpoint)."""
  path = os.path.join(str(workdir), FILE)
  if not os.path.exists(path):
    return params
  with safe_open(path, 'numpy') as f:
    if (f.metadata() or {}).get('step') != str(step):
      return params
    avg = {k: f.get_tensor(k) for k in f.keys()}
  flat = param_tree.flatten(params)
  for k, v in avg.items():
    flat[k] = jnp.asarray(v) if isinstance(flat.get(k), jax.Array) else v
  return param_tree.unflatten(flat)
