"""Trains the seeds of one benchmark cell together: one vmapped, compiled step for all of them.

The seeds of a cell (task, method, data size) differ only in `seed` and
`dataset.subset_seed`: the fresh-layer init, the data subset, the batch order
and the augmentation/dropout randomness. Everything else (model, optimizer,
shapes, step count) is shared, so the per-seed train states can be stacked
along a leading axis and stepped by `jax.vmap` of the ordinary train step:
one compilation and one dispatch per step for every seed (and, it was hoped,
larger kernels that keep the cores busier). `measure_speedup` times
that against running `train.train` once per seed.

Measured on the benchmark's 2-core CPU (related/full_ft/100, 3 seeds, busy
machine), vmap did NOT pay: the seed-batched convolutions become grouped
convs, which XLA's CPU backend runs slowly, so the train loop took 32 s
against 21 s for three sequential runs (end to end 52 s vs 39 s). The
`batching='unroll'` variant (the seeds' steps side by side in one program)
took 21 s against ~22 s: one compile instead of three, little else.

Meant for one device (the benchmark's CPU). On a multi-device mesh the
results still match `train`, but XLA cannot split a vmapped convolution
(a grouped conv over seeds) along the batch, so it gathers the batch and
repeats that work on every device: pass `devices=jax.devices()[:1]` there.

  python -m jaxadapt.bench.seeds --suite configs/suites/fashion_mnist.py \
      --cell related/full_ft/100 --seeds 0,1,2 --upstream results/runs/upstream
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxadapt import config as config_lib, data, metrics as metrics_lib, sharding, step as step_lib
from jaxadapt import train as train_lib

# The only keys in which the configs of one cell's seeds may differ.
PER_SEED_KEYS = ('seed', 'dataset.subset_seed')


def check_seed_configs(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """Raises ValueError unless the configs can be trained as one vmapped program."""
  if not configs:
    raise ValueError('train_seeds needs at least one config')
  for i, config in enumerate(configs[1:], start=1):
    differ = config_lib.differing_keys(configs[0].to_dict(), config.to_dict(), PER_SEED_KEYS)
    if differ:
      raise ValueError(
          f"configs 0 and {i} differ at {', '.join(differ)}; seeds trained together "
          f"may differ only in {', '.join(PER_SEED_KEYS)}"
      )
  if configs[0].distill.teachers:
    raise ValueError('distill.teachers is set: distillation cells train one seed at a time')
  if configs[0].adapt.fast_probe:
    raise ValueError('adapt.fast_probe is set: the fast probe has no train loop to vmap')


def train_seeds(
    configs: Sequence[ml_collections.ConfigDict],
    devices: Sequence[jax.Device] | None = None,
    batching: str = 'vmap',
) -> list[dict[str, Any]]:
  """Trains configs that differ only in their seeds in one vmapped program.

  Returns one summary per config, in order, with the keys `train.train`
  writes to `summary.json` (FLOPs and optimizer bytes per seed) plus
  'train/loss' and 'train/accuracy': the mean over the last log window, as
  in the last train record of `metrics.jsonl`. Nothing is written to disk.
  `devices` default to all of them, laid out by `config.mesh` as `train` does.
  `batching='unroll'` compiles the seeds' steps side by side in one program
  instead of vmapping them: plain convolutions, still one compile and one
  dispatch per step (on the benchmark's CPU it beats 'vmap', see module doc).
  """
  return _train_seeds(configs, devices, batching=batching)


def _train_seeds(
    configs, devices=None, timings: dict[str, float] | None = None, batching: str = 'vmap'
) -> list[dict]:
  check_seed_configs(configs)
  if batching not in ('vmap', 'unroll'):
    raise ValueError(f"batching must be 'vmap' or 'unroll', got {batching!r}")
  config, n_seeds = configs[0], len(configs)
  mesh = sharding.make_mesh(config.mesh, devices)
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')
  t_start = time.perf_counter()

  # --------------------------------------------------------------- input
  info = data.dataset_info(config.dataset)
  train_arrays = [data.load_split(c.dataset, c.dataset.train_split) for c in configs]
  eval_splits = {'val': config.dataset.val_split, 'test': config.dataset.test_split}
  eval_arrays = {
      name: data.load_split(train_lib._full_split(config.dataset), split)
      for name, split in eval_splits.items()
      if split
  }
  sources = [train_lib.train_source(a, c) for a, c in zip(train_arrays, configs)]
  steps = {config.num_steps or math.ceil(config.num_epochs * s.steps_per_epoch) for s in sources}
  if len(steps) != 1:  # only possible with num_epochs and subsets of unequal size
    raise ValueError(
        f"the seeds' subsets give different step counts {sorted(steps)}; " f'set num_steps'
    )
  total_steps = steps.pop()

  # ------------------------------------------------------ model and state
  # build() per seed: each seed's fresh layers (and LoRA adapters) come from its own key;
  # model, optimizer, rules and schedule depend on nothing per seed, so seed 0's serve all.
  exps = [train_lib.build(c, mesh, info, total_steps) for c in configs]
  exp = exps[0]
  states = [step_lib.init_state(e.params, exp.tx) for e in exps]
  opt_state_bytes = [train_lib.tree_bytes(s.opt_state) for s in states]
  replicated = sharding.replicated(mesh)
  state = jax.device_put(jax.tree.map(lambda *x: jnp.stack(x), *states), replicated)
  del states
  seeds = jax.device_put(jnp.asarray([c.seed for c in configs], jnp.int32), replicated)

  # ------------------------------------------------------ compiled steps
  def seed_step(state, batch, seed):
    # make_train_step only closes over `seed` and calls jax.random.key(seed) inside the
    # step, so building it here with a traced seed gives each vmapped lane its own stream,
    # the same numbers as the Python-int seed in train.train.
    return step_lib.make_train_step(
        exp.forward, exp.tx, exp.trainable, exp.preprocess_train, seed, exp.schedule
    )(state, batch)

  # Axis 0 is the seed; the batch axis (1) is split over the mesh as train() splits axis 0.
  stacked_batch = NamedSharding(mesh, P(None, sharding.BATCH_AXES))

  # vmap turns a conv whose kernel differs per seed into a grouped conv; unrolling keeps
  # plain convs, which XLA's CPU backend runs much faster.
  def unrolled(state, batch, seeds):
    outs = [
        seed_step(*jax.tree.map(lambda x: x[i], (state, batch)), seeds[i]) for i in range(n_seeds)
    ]
    return jax.tree.map(lambda *x: jnp.stack(x), *outs)

  fn = jax.vmap(seed_step) if batching == 'vmap' else unrolled
  train_step = jax.jit(
      fn,
      in_shardings=(replicated, stacked_batch, replicated),
      out_shardings=(replicated, replicated),
      donate_argnums=0,
  )
  batch_at = lambda step: jax.tree.map(
      lambda *x: jax.make_array_from_process_local_data(stacked_batch, np.stack(x)),
      *[s.batch(step) for s in sources],
  )
  t0 = time.perf_counter()
  train_step = train_step.lower(state, batch_at(0), seeds).compile()
  t_compile = time.perf_counter() - t0
  step_flops = train_lib.compiled_flops(train_step) / n_seeds
  # Eval batches are the same for every seed: only the parameters are vmapped.
  eval_step = jax.jit(
      jax.vmap(step_lib.make_eval_step(exp.forward, exp.preprocess_eval), in_axes=(0, None)),
      in_shardings=(replicated, sharding.batch_sharding(mesh)),
      out_shardings=replicated,
  )

  # ------------------------------------------------------------------ loop
  t0 = time.perf_counter()
  pending, window = [], {}
  for step in range(1, total_steps + 1):
    state, m = train_step(state, batch_at(step - 1), seeds)
    pending.append(m)
    if step % config.log_every == 0 or step == total_steps:
      # Same windows as train(): the last one is what metrics.jsonl ends with.
      window = {
          k: np.mean(v, axis=0)
          for k, v in jax.device_get(jax.tree.map(lambda *xs: jnp.stack(xs), *pending)).items()
      }
      pending = []
  t_loop = time.perf_counter() - t0

  t0 = time.perf_counter()
  final = _evaluate(eval_step, state.params, eval_arrays, config.eval_batch_size, mesh, n_seeds)
  t_eval = time.perf_counter() - t0
  if timings is not None:
    timings.update(
        compile_s=t_compile, loop_s=t_loop, eval_s=t_eval, total_s=time.perf_counter() - t_start
    )

  return [
      {
          'method': config.adapt.method,
          'model': config.model.name,
          'steps': total_steps,
          'batch_size': config.batch_size,
          'examples_seen': total_steps * config.batch_size,
          'train_examples': len(train_arrays[i]['label']),
          'step_flops': step_flops,
          'train_flops': step_flops * total_steps,
          'opt_state_bytes': opt_state_bytes[i],
          **train_lib.param_counts(exps[i]),
          **final[i],
          'train/loss': float(window['loss'][i]),
          'train/accuracy': float(window['accuracy'][i]),
      }
      for i in range(n_seeds)
  ]


def _evaluate(
    eval_step, params, eval_arrays: dict, batch_size: int, mesh, n_seeds: int
) -> list[dict[str, float]]:
  """Per-seed `train.evaluate_splits`: sums carry a leading seed axis."""
  out = [{} for _ in range(n_seeds)]
  for name, arrays in eval_arrays.items():
    sums = train_lib.eval_sums(eval_step, params, arrays, batch_size, mesh)
    for i in range(n_seeds):
      out[i][f'{name}/accuracy'] = float(sums['correct'][i] / sums['count'][i])
      out[i][f'{name}/loss'] = float(sums['loss'][i] / sums['count'][i])
  return out


def measure_speedup(
    configs: Sequence[ml_collections.ConfigDict],
    workdir: str | None = None,
    warmup: bool = True,
    batching: str = 'vmap',
) -> dict[str, float]:
  """Wall time of `train_seeds(configs)` against `train.train` once per config.

  Both sides include compilation, as the benchmark would pay it: `train`
  compiles its step for every seed, `train_seeds` once. `*_loop_s` count the
  train steps alone (compilation and eval excluded; for `train` taken from
  the steps/sec it logs). With `warmup`, one untimed `train` run first loads
  the data and initialises the runtime, so neither side pays that.
  """
  root = tempfile.mkdtemp(prefix='seeds_') if workdir is None else workdir
  try:
    if warmup:
      train_lib.train(configs[0], f'{root}/warmup', quiet=True)
    t0 = time.perf_counter()
    sequential = [train_lib.train(c, f'{root}/seed{i}', quiet=True) for i, c in enumerate(configs)]
    sequential_s = time.perf_counter() - t0
    sequential_loop_s = sum(_loop_seconds(f'{root}/seed{i}') for i in range(len(configs)))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    together = _train_seeds(configs, timings=timings, batching=batching)
    vmapped_s = time.perf_counter() - t0
  finally:
    if workdir is None:
      shutil.rmtree(root, ignore_errors=True)
  diff = max(
      abs(s.get('test/accuracy', 0.0) - t.get('test/accuracy', 0.0))
      for s, t in zip(sequential, together)
  )
  return {
      'num_seeds': len(configs),
      'sequential_s': sequential_s,
      'vmapped_s': vmapped_s,
      'speedup': sequential_s / vmapped_s,
      'sequential_loop_s': sequential_loop_s,
      'vmapped_loop_s': timings['loop_s'],
      'loop_speedup': sequential_loop_s / timings['loop_s'],
      'vmapped_compile_s': timings['compile_s'],
      'max_test_accuracy_diff': diff,
  }


def _loop_seconds(workdir: str) -> float:
  """Train-step seconds of a finished run, from the steps/sec of each log window."""
  seconds, last = 0.0, 0
  for r in metrics_lib.read_metrics(workdir):
    if 'train/steps_per_sec' in r:
      seconds += (r['step'] - last) / r['train/steps_per_sec']
      last = r['step']
  return seconds


def main(argv: Sequence[str] | None = None) -> None:
  """Measures the speedup on one cell of a suite and prints it as JSON."""
  from jaxadapt.bench import runner  # Local import: only the command line needs suites.

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--suite', required=True, help='suite.py[:arg]')
  parser.add_argument('--cell', required=True, help='task/method/examples_per_class')
  parser.add_argument('--seeds', default='0,1,2')
  parser.add_argument('--upstream', required=True, help='the upstream workdir')
  parser.add_argument('--no-warmup', action='store_true')
  parser.add_argument('--batching', default='vmap', choices=('vmap', 'unroll'))
  args = parser.parse_args(argv)
  suite = runner.load_suite(args.suite)
  task, method, size = args.cell.split('/')
  configs = [
      runner.cell_config(suite, task, method, int(size), int(s), args.upstream, None)
      for s in args.seeds.split(',')
  ]
  print(
      json.dumps(
          measure_speedup(configs, warmup=not args.no_warmup, batching=args.batching), indent=1
      ),
      flush=True,
  )


if __name__ == '__main__':
  main()
