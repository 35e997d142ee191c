"""What a run costs, measured: compiled FLOPs and memory, parameter counts, the run summary.

XLA's cost and memory analyses of the compiled program are the source of truth for FLOPs
and memory; nothing here estimates from shapes.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import jax
import numpy as np
from etils import epath

from jaxadapt import param_tree


def compiled_flops(compiled) -> float:
  """FLOPs of one call of a compiled executable (XLA cost analysis)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get('flops', 0.0))


def compiled_peak_bytes(compiled) -> int | None:
  """Arguments + outputs + temporaries of a compiled executable, less donated aliases."""
  mem = compiled.memory_analysis()
  if mem is None:
    return None
  return int(
      mem.argument_size_in_bytes
      + mem.output_size_in_bytes
      + mem.temp_size_in_bytes
      - mem.alias_size_in_bytes
  )


def compiled_cost(fn, *args) -> dict[str, float | None]:
  """FLOPs and peak bytes of `jax.jit(fn)` compiled for `args` (arrays or ShapeDtypeStructs)."""
  compiled = jax.jit(fn).lower(*args).compile()
  return {'flops': compiled_flops(compiled), 'peak_bytes': compiled_peak_bytes(compiled)}


def tree_bytes(tree: Any) -> int:
  """Bytes held by the arrays of a pytree (e.g. optimizer state)."""
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, 'dtype')))


def param_counts(params: Any, trainable: Mapping[str, bool]) -> dict[str, int]:
  """Total and trainable parameter counts."""
  flat = param_tree.flatten(params)
  return {
      'total_params': sum(param_tree.param_count(v) for v in flat.values()),
      'trainable_params': sum(param_tree.param_count(v) for p, v in flat.items() if trainable[p]),
  }


def run_summary(
    config, *, steps: int, batch_size: int, train_examples: int, step_flops: float, **extra: Any
) -> dict[str, Any]:
  """The one record of what a run cost and reached (`summary.json`, one bench result line)."""
  return {
      'method': config.adapt.method,
      'model': config.model.name,
      'steps': steps,
      'batch_size': batch_size,
      'examples_seen': steps * batch_size,
      'train_examples': train_examples,
      'step_flops': step_flops,
      'train_flops': step_flops * steps,
      **extra,
  }


def write_summary(workdir: epath.Path, summary: dict) -> None:
  """`summary.json`, written atomically (a crash leaves the old file or the new one).

  Always strict JSON: a NaN or infinite value is written as null, never as bare `NaN`.
  """
  tmp = workdir / 'summary.json.tmp'
  tmp.write_text(json.dumps(_finite(summary), indent=1, sort_keys=True, allow_nan=False) + '\n')
  tmp.replace(workdir / 'summary.json')


def _finite(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  return value
