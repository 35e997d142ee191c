"""The trainer: one function that runs every method, readable top to bottom.

Sections: config checks, mesh, input, model and parameters, rules and
optimizer, workdir (lock, then record), checkpoint (resume > fresh), compiled
steps, loop. The method (scratch, probe, fine-tune, ...) is data in the config,
never a code path. Nothing is written to the workdir until every input check
has passed and the checkpoint to resume from has been read.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxadapt import checkpoint, cost, data, distill, divergence, ema, evaluate, experiment
from jaxadapt import preemption, sharding, validate, workdir_lock
from jaxadapt import step as step_lib, workdir as workdir_lib
from jaxadapt.metrics import MetricWriter


def train(
    config: ml_collections.ConfigDict, workdir: str, *, quiet: bool = False
) -> dict[str, Any]:
  """Trains (or resumes) the run in `workdir`; returns the final eval metrics."""
  if config.adapt.fast_probe:
    raise ValueError('adapt.fast_probe is set: run jaxadapt.fast_probe.run, not train()')
  validate.validate(config)
  workdir = checkpoint.absolute(workdir)
  lock = workdir_lock.WorkdirLock(workdir)
  try:
    return _train(config, workdir, lock, quiet)
  finally:
    lock.release()


def _train(config, workdir, lock: workdir_lock.WorkdirLock, quiet: bool) -> dict[str, Any]:
  log = (lambda *a: None) if quiet or jax.process_index() else (lambda *a: print(*a, flush=True))

  # ---------------------------------------------------------------- mesh
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')

  # --------------------------------------------------------------- input
  # Everything that can fail on bad input runs before the workdir is touched.
  info = data.dataset_info(config.dataset)
  # Streaming (dataset.stream) reads training rows from disk; eval splits load in memory.
  stream = config.dataset.stream
  train_arrays = None if stream else data.load_split(config.dataset, config.dataset.train_split)
  eval_arrays = data.load_eval_splits(config.dataset)
  source = data.train_source(train_arrays, config)
  total_steps = config.num_steps or math.ceil(config.num_epochs * source.steps_per_epoch)
  eval_every = config.eval_every or source.steps_per_epoch
  log(
      f"data: {config.dataset.name} train={source.num_examples}{' (streamed)' if stream else ''} "
      + ' '.join(f"{k}={len(v['label'])}" for k, v in eval_arrays.items())
      + f" classes={info['num_classes']} | {total_steps} steps of {config.batch_size} "
      f'({total_steps / source.steps_per_epoch:.1f} epochs) on {mesh.devices.size} device(s)'
  )

  # ------------------------------------- model, parameters, rules, optimizer
  exp = experiment.build(config, mesh, info, total_steps, log)
  objective, mix, aux = None, None, None
  if config.distill.teachers:
    teachers = distill.load_teachers(config.distill, info['num_classes'])
    for t in teachers:  # restored on one device; the step runs on the whole mesh
      t.params = jax.device_put(t.params, sharding.replicated(mesh))
    objective = distill.make_objective(config.distill, teachers)
    if config.distill.loss == 'fm':
      mix = functools.partial(distill.mixup, alpha=config.distill.mixup_alpha)
    aux = [t.params for t in teachers]
    log(
        'distill: '
        + ', '.join(f'{t.name} ({t.num_params:,} params)' for t in teachers)
        + f' -> student; loss={config.distill.loss} T={config.distill.temperature}'
    )
    if config.distill.cache_logits:
      _check_cacheable(config)
      train_arrays = {
          **train_arrays,
          'teacher_logits': distill.cache_logits(
              teachers,
              lambda x: exp.preprocess_eval(x, None, False),
              train_arrays,
              config.eval_batch_size,
              mesh,
          ),
      }
      source = data.train_source(train_arrays, config)
      aux = None
      log(f"distill: cached teacher logits for {len(train_arrays['label'])} examples")

  # ----------------------- workdir: lock, resume > fresh init, then record
  workdir_lib.prepare(workdir)
  lock.acquire()  # one run per workdir; released by train() however this ends
  replicated = sharding.replicated(mesh)
  init_state = lambda p: step_lib.init_state(p, exp.tx)
  state_shardings = exp.shardings(jax.eval_shape(init_state, exp.params), mesh)
  state = jax.jit(init_state, out_shardings=state_shardings)(exp.params)
  ckpt = checkpoint.Checkpointer(workdir, config.ckpt_every, config.keep_ckpts)
  changes = workdir_lib.config_changes(workdir, config)
  # A checkpoint of another model or optimizer is refused here, before anything is recorded.
  state, start = ckpt.restore_newest(state, workdir_lib.mismatch_hint(workdir, changes))
  if start is not None:
    log(f'resumed from step {start} in {ckpt.directory}')
  workdir_lib.record_run(workdir, config, exp, start, changes)
  log(exp.table.splitlines()[-1].replace('TOTAL', 'params:', 1))
  start = int(start or 0)

  # -------------------------------------------------------- compiled steps
  train_step = jax.jit(
      step_lib.make_train_step(
          exp.forward,
          exp.tx,
          exp.trainable,
          exp.preprocess_train,
          config.seed,
          exp.schedule,
          objective,
          mix,
          config.optim.accumulate,
      ),
      in_shardings=(state_shardings, sharding.batch_sharding(mesh), replicated),
      out_shardings=(state_shardings, replicated),
      donate_argnums=0,
  )
  # Compile ahead of time: the same executable runs the loop and reports its FLOPs.
  # The first batch the loop reads: a streamed source then starts its workers only once.
  first_batch = sharding.global_batch(source.batch(start), mesh)
  train_step = train_step.lower(state, first_batch, aux).compile()
  # XLA's cost analysis counts a loop body once: with accumulation, once per micro-batch.
  step_flops = cost.compiled_flops(train_step) * config.optim.accumulate
  eval_step = jax.jit(
      step_lib.make_eval_step(exp.forward, exp.preprocess_eval),
      in_shardings=(state_shardings.params, sharding.batch_sharding(mesh)),
      out_shardings=replicated,
  )

  # With optim.ema the averaged trainable parameters are what is evaluated (ema.py).
  run_eval = lambda state: evaluate.evaluate_splits(
      eval_step,
      ema.ema_params(state.params, state.opt_state),
      eval_arrays,
      config.eval_batch_size,
      mesh,
  )

  # ------------------------------------------------------------------ loop
  writer = MetricWriter(workdir, keep_through=start)  # a resume rewrites what came after
  stop = preemption.StopRequest()
  final: dict[str, Any] = {}
  pending: list[dict] = []
  checked = 0  # pending[:checked] are known finite
  interrupted = False
  bar = tqdm(
      total=total_steps,
      initial=start,
      desc='train',
      unit='step',
      dynamic_ncols=True,
      disable=quiet or jax.process_index() != 0,
      mininterval=0.5 if sys.stderr.isatty() else 30.0,
  )
  t0, steps_timed = time.perf_counter(), 0
  try:
    for step in range(start + 1, total_steps + 1):
      batch = sharding.global_batch(source.batch(step - 1), mesh)
      state, metrics = train_step(state, batch, aux)
      pending.append(metrics)
      steps_timed += 1
      bar.update(1)
      is_last = step == total_steps
      stopping = stop.requested(step) and not is_last  # every step: processes must agree
      logging_now = step % config.log_every == 0 or is_last
      evaluating = step % eval_every == 0 or is_last
      if logging_now or evaluating or stopping or ckpt.due(step, force=is_last):
        # Before anything reads or saves this state: a NaN model is never checkpointed.
        first = step - len(pending) + 1
        divergence.check(pending[checked:], first + checked, ckpt, config.optim.lr)
        checked = len(pending)
      if logging_now:
        means = {
            f'train/{k}': float(np.mean(v))
            for k, v in jax.device_get(jax.tree.map(lambda *xs: jnp.stack(xs), *pending)).items()
        }
        means['train/steps_per_sec'] = steps_timed / (time.perf_counter() - t0)
        pending, checked, t0, steps_timed = [], 0, time.perf_counter(), 0
        bar.set_postfix(loss=f"{means['train/loss']:.4f}", acc=f"{means['train/accuracy']:.3f}")
        writer.write(step, means)
      if evaluating:
        final = run_eval(state)
        writer.write(step, final)
        if not bar.disable:
          bar.write(f'step {step}: ' + ' '.join(f'{k}={v:.4f}' for k, v in final.items()))
      ckpt.maybe_save(step, state, force=is_last)
      if stopping:
        interrupted = True
        ckpt.maybe_save(step, state, force=True)
        if jax.process_index() == 0:  # even with --quiet: the user must know how to continue
          print(
              f'stopped by signal at step {step}; checkpoint saved, rerun the same command '
              f'to resume',
              file=sys.stderr,
              flush=True,
          )
        break
    else:
      if start >= total_steps:
        final = run_eval(state)
        log(
            f'run already complete at step {start}: '
            + ' '.join(f'{k}={v:.4f}' for k, v in final.items())
        )
  finally:
    bar.close()
    if stream:
      source.close()  # its grain worker processes
    ckpt.close()
    writer.close()
    stop.restore()
  if config.optim.ema and not interrupted:
    ema.save_averages(workdir, state.opt_state, int(state.step))
  if jax.process_index() == 0 and not interrupted:
    summary = cost.run_summary(
        config,
        steps=total_steps,
        batch_size=config.batch_size,
        train_examples=source.num_examples,
        step_flops=step_flops,
        opt_state_bytes=cost.tree_bytes(state.opt_state),
        **cost.param_counts(exp.params, exp.trainable),
    )
    cost.write_summary(workdir, {**summary, **final})
  return final


def _check_cacheable(config) -> None:
  """Cached teacher logits are only right if every epoch sees the same images, all in memory."""
  if config.dataset.stream:
    raise distill.DistillError(
        'distill.cache_logits needs the train split in memory; set dataset.stream=False '
        'or distill.cache_logits=False'
    )
  random_ops = [op.name for op in data.preprocess.parse(config.preprocess.train) if op.random]
  if random_ops or config.distill.loss == 'fm':
    why = (
        f"preprocess.train has random ops ({', '.join(random_ops)})"
        if random_ops
        else "distill.loss='fm' mixes images every step"
    )
    raise distill.DistillError(
        f'distill.cache_logits needs un-augmented data but {why}; '
        f'remove them or set distill.cache_logits=False'
    )
