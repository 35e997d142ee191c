"""`jaxadapt perf`: what each adaptation method costs per step, measured.

For each row on the same model and batch: compiled FLOPs per train step (XLA
cost analysis), median wall time per step and images per second, trainable
parameters, optimizer-state and frozen-parameter bytes, and the compiled
program's memory (arguments + outputs + temporaries, from XLA's memory
analysis). A row is a method, optionally with variants: `lora+bf16` computes
in bfloat16, `lora+bf16+frozen_bf16` also stores the frozen base in bfloat16,
`lora+nf4` stores frozen kernels as NF4 (QLoRA).
Parameters are randomly initialised: costs depend on shapes, not values, so
no checkpoint is needed.
"""

from __future__ import annotations

import copy
import difflib
import statistics
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxadapt import cost, data, experiment, methods, param_tree, sharding, step as step_lib
from jaxadapt.errors import UserError

# Variant name -> config edits (dotted key, value), applied after the method's rules.
VARIANTS = {
    'bf16': (('model.dtype', 'bfloat16'),),
    'frozen_bf16': (('adapt.frozen_dtype', 'bfloat16'),),
    'int8': (('adapt.frozen_dtype', 'int8'),),
    'nf4': (('adapt.frozen_dtype', 'nf4'),),
}
DEFAULT_ROWS = (
    'linear_probe',
    'partial_ft',
    'full_ft',
    'lora',
    'bitfit',
    'full_ft+bf16',
    'lora+bf16',
    'lora+bf16+frozen_bf16',
    'lora+int8',
    'lora+nf4',
)


class PerfError(UserError):
  """A perf row that names an unknown method or variant."""


def parse_row(row: str) -> tuple[str, list[tuple[str, Any]]]:
  """'lora+bf16' -> ('lora', [('model.dtype', 'bfloat16')]); unknown names are errors."""
  method, *variants = row.split('+')
  _check_name(method, methods.METHODS, 'method', row)
  edits = []
  for v in variants:
    _check_name(v, VARIANTS, 'perf variant', row)
    edits.extend(VARIANTS[v])
  return method, edits


def _check_name(name: str, valid, what: str, row: str) -> None:
  if name not in valid:
    close = difflib.get_close_matches(name, list(valid), n=1)
    raise PerfError(
        f"unknown {what} '{name}' in perf row '{row}'; choose one of: {', '.join(valid)}"
        + (f" (did you mean '{close[0]}'?)" if close else '')
    )


def prepare(config: ml_collections.ConfigDict, row: str) -> tuple[dict[str, Any], Callable]:
  """Builds and compiles one row: (its measured costs, `run_one_step()` for timing)."""
  method, edits = parse_row(row)
  cfg = copy.deepcopy(config)
  cfg.unlock()
  cfg.init.checkpoint = None
  cfg.adapt.fast_probe = ''
  methods.apply(cfg, method)
  for key, value in edits:
    section, name = key.split('.')
    cfg[section][name] = value
  mesh = sharding.make_mesh(cfg.mesh)
  info = data.dataset_info(cfg.dataset)
  exp = experiment.build(cfg, mesh, info, total_steps=1000)
  state = step_lib.init_state(exp.params, exp.tx)
  step_fn = step_lib.make_train_step(
      exp.forward,
      exp.tx,
      exp.trainable,
      exp.preprocess_train,
      cfg.seed,
      accumulate=cfg.optim.accumulate,
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
  compiled = jax.jit(step_fn).lower(state, batch).compile()
  # XLA's cost analysis counts a loop body once: with accumulation, once per micro-batch.
  step_flops = cost.compiled_flops(compiled) * cfg.optim.accumulate

  def forward(params, images):
    return exp.forward(params, exp.preprocess_eval(images, jax.random.key(0), False))

  fwd_cost = cost.compiled_cost(forward, exp.params, step_lib.model_input(batch))
  # The head's backward: dW = h^T dy and db = sum dy, i.e. 2*B*D*C + B*C FLOPs.
  d, c = exp.params['head']['kernel'].shape
  head_bwd = 2.0 * cfg.batch_size * d * c + cfg.batch_size * c
  counts = cost.param_counts(exp.params, exp.trainable)
  frozen = {p: v for p, v in param_tree.flatten(exp.params).items() if not exp.trainable[p]}
  record = {
      'method': row,
      'model': cfg.model.name,
      'batch_size': cfg.batch_size,
      # Text rows count tokens: every example is the full dataset.max_length ids here.
      'tokens_per_example': int(shape[1]) if 'pad_id' in info else None,
      'step_flops': step_flops,
      'forward_flops': fwd_cost['flops'],
      'head_backward_flops': head_bwd,
      'step_over_forward_plus_head': step_flops / (fwd_cost['flops'] + head_bwd),
      'params': counts['total_params'],
      'trainable_params': counts['trainable_params'],
      'opt_state_bytes': cost.tree_bytes(state.opt_state),
      'frozen_param_bytes': cost.tree_bytes(frozen),
      'peak_bytes': cost.compiled_peak_bytes(compiled),
  }
  carry = [state]

  def run_one_step() -> float:
    t0 = time.perf_counter()
    carry[0], metrics = compiled(carry[0], batch)
    jax.block_until_ready(metrics)
    return time.perf_counter() - t0

  return record, run_one_step


def run(
    config: ml_collections.ConfigDict,
    row_names: Sequence[str] = DEFAULT_ROWS,
    steps: int = 10,
    log=print,
) -> list[dict[str, Any]]:
  """Every row compiled first, then timed in interleaved rounds (one step of each row per
  round), so a change in machine load during the run reaches every row alike."""
  if steps < 1:
    raise PerfError(f'perf --steps {steps}: the number of timed steps must be >= 1 (e.g. 10)')
  for name in row_names:  # every name is checked before the first slow build
    parse_row(name)
  rows, steppers = [], []
  for name in row_names:
    if name == 'scratch':
      continue  # scratch has full fine-tuning's step; its row would repeat full_ft's
    record, run_one_step = prepare(config, name)
    run_one_step()  # warm-up
    rows.append(record)
    steppers.append(run_one_step)
    log(f'  compiled {name}')
  times = [[] for _ in rows]
  for _ in range(steps):
    for t, run_one_step in zip(times, steppers):
      t.append(run_one_step())
  for record, t in zip(rows, times):
    record['median_step_s'] = statistics.median(t)
    record['images_per_s'] = record['batch_size'] / record['median_step_s']
    if record['tokens_per_example']:
      record['tokens_per_s'] = record['images_per_s'] * record['tokens_per_example']
    log(f"  measured {record['method']}: {record['median_step_s'] * 1e3:.1f} ms/step")
  return rows


def measure(config: ml_collections.ConfigDict, row: str, steps: int = 10) -> dict[str, Any]:
  """One row on its own (no interleaving): costs and median step time."""
  return run(config, [row], steps, log=lambda *a: None)[0]


def table(rows: list[dict[str, Any]]) -> str:
  """Markdown table; ratios are relative to full fine-tuning when it is present."""
  ref = next((r for r in rows if r['method'] == 'full_ft'), rows[0])
  text = bool(rows[0].get('tokens_per_example'))
  rate = (lambda r: r['tokens_per_s']) if text else (lambda r: r['images_per_s'])
  lines = [
      '| method | GFLOPs/step | x full_ft | step / (fwd + head bwd) | median ms/step | x full_ft '
      f"| {'tokens/s' if text else 'images/s'} | trainable params | trainable % | optimizer state "
      '| x full_ft '
      '| frozen params | peak memory |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    lines.append(
        f"| {r['method']} | {r['step_flops'] / 1e9:.3f} | {r['step_flops'] / ref['step_flops']:.2f}"
        f" | {r['step_over_forward_plus_head']:.2f} | {r['median_step_s'] * 1e3:.1f}"
        f" | {r['median_step_s'] / ref['median_step_s']:.2f} | {rate(r):,.0f}"
        f" | {r['trainable_params']:,} | {100 * r['trainable_params'] / r['params']:.2f}%"
        f" | {_mib(r['opt_state_bytes'])} | {r['opt_state_bytes'] / max(ref['opt_state_bytes'], 1):.3f}"
        f" | {_mib(r['frozen_param_bytes'])}"
        f" | {_mib(r['peak_bytes']) if r['peak_bytes'] is not None else 'n/a'} |"
    )
  return '\n'.join(lines)


def _mib(n: float) -> str:
  return f'{n / 2**20:.2f} MiB'
