"""`jaxadapt perf`: what each adaptation method costs per step, measured.

For each method on the same model and batch: compiled FLOPs per train step
(XLA cost analysis), median wall time per step, trainable parameters,
optimizer-state bytes and the compiled program's memory (arguments + outputs
+ temporaries, from XLA's memory analysis). Parameters are randomly
initialised: costs depend on shapes, not values, so no checkpoint is needed.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxadapt import cost, data, experiment, methods, sharding, step as step_lib


def measure(config: ml_collections.ConfigDict, method: str, steps: int = 10) -> dict[str, Any]:
  cfg = copy.deepcopy(config)
  cfg.unlock()
  cfg.init.checkpoint = None
  cfg.adapt.fast_probe = ''
  methods.apply(cfg, method)
  mesh = sharding.make_mesh(cfg.mesh)
  info = data.dataset_info(cfg.dataset)
  exp = experiment.build(cfg, mesh, info, total_steps=1000)
  state = step_lib.init_state(exp.params, exp.tx)
  step_fn = step_lib.make_train_step(
      exp.forward, exp.tx, exp.trainable, exp.preprocess_train, cfg.seed
  )
  rng = np.random.default_rng(0)
  shape = (cfg.batch_size, *info['image_shape'])
  if 'pad_id' in info:  # text: full-length token ids (a step costs the same whatever the ids)
    inputs = {'tokens': jnp.asarray(rng.integers(1000, 2000, shape, dtype=np.int32))}
  else:
    inputs = {'image': jnp.asarray(rng.integers(0, 255, shape, dtype=np.uint8))}
  batch = {
      **inputs,
      'label': jnp.asarray(rng.integers(0, info['num_classes'], (cfg.batch_size,), dtype=np.int32)),
  }
  step_cost = cost.compiled_cost(step_fn, state, batch)

  def forward(params, images):
    return exp.forward(params, exp.preprocess_eval(images, jax.random.key(0), False))

  fwd_cost = cost.compiled_cost(forward, exp.params, step_lib.model_input(batch))
  # The head's backward: dW = h^T dy and db = sum dy, i.e. 2*B*D*C + B*C FLOPs.
  d, c = exp.params['head']['kernel'].shape
  head_bwd = 2.0 * cfg.batch_size * d * c + cfg.batch_size * c

  jitted = jax.jit(step_fn)
  state, metrics = jitted(state, batch)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = jitted(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  counts = cost.param_counts(exp.params, exp.trainable)
  return {
      'method': method,
      'model': cfg.model.name,
      'batch_size': cfg.batch_size,
      'step_flops': step_cost['flops'],
      'forward_flops': fwd_cost['flops'],
      'head_backward_flops': head_bwd,
      'step_over_forward_plus_head': step_cost['flops'] / (fwd_cost['flops'] + head_bwd),
      'median_step_s': statistics.median(times),
      'params': counts['total_params'],
      'trainable_params': counts['trainable_params'],
      'opt_state_bytes': cost.tree_bytes(state.opt_state),
      'peak_bytes': step_cost['peak_bytes'],
  }


def run(
    config: ml_collections.ConfigDict,
    method_names: Sequence[str] = methods.METHODS,
    steps: int = 10,
    log=print,
) -> list[dict[str, Any]]:
  rows = []
  for name in method_names:
    if name == 'scratch':
      continue  # scratch has full fine-tuning's step; its row would repeat full_ft's
    rows.append(measure(config, name, steps))
    log(f"  measured {name}: {rows[-1]['median_step_s'] * 1e3:.1f} ms/step")
  return rows


def table(rows: list[dict[str, Any]]) -> str:
  """Markdown table; ratios are relative to full fine-tuning when it is present."""
  ref = next((r for r in rows if r['method'] == 'full_ft'), rows[0])
  lines = [
      '| method | GFLOPs/step | x full_ft | step / (fwd + head bwd) | median ms/step | '
      'trainable params | trainable % | optimizer state | x full_ft | peak memory |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    lines.append(
        f"| {r['method']} | {r['step_flops'] / 1e9:.3f} | {r['step_flops'] / ref['step_flops']:.2f}"
        f" | {r['step_over_forward_plus_head']:.2f} | {r['median_step_s'] * 1e3:.1f}"
        f" | {r['trainable_params']:,} | {100 * r['trainable_params'] / r['params']:.2f}%"
        f" | {_mib(r['opt_state_bytes'])} | {r['opt_state_bytes'] / max(ref['opt_state_bytes'], 1):.3f}"
        f" | {_mib(r['peak_bytes']) if r['peak_bytes'] is not None else 'n/a'} |"
    )
  return '\n'.join(lines)


def _mib(n: float) -> str:
  return f'{n / 2**20:.2f} MiB'
