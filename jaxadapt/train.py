"""The trainer: one function that runs every method, readable top to bottom.

Sections: workdir checks, mesh, input, model and parameters, rules and
optimizer, checkpoint (resume > fresh), compiled steps, loop. The method
(scratch, probe, fine-tune, ...) is data in the config, never a code path.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import signal
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath
from tqdm import tqdm

from jaxadapt import checkpoint, config as config_lib, data, lora, models, optim, partition
from jaxadapt import distill, pretrained, probe
from jaxadapt import sharding, step as step_lib
from jaxadapt.metrics import MetricWriter


class WorkdirError(ValueError):
  """The workdir cannot be used; the message says why and what to do."""


def train(
    config: ml_collections.ConfigDict, workdir: str, *, quiet: bool = False
) -> dict[str, Any]:
  """Trains (or resumes) the run in `workdir`; returns the final eval metrics."""
  log = (lambda *a: None) if quiet or jax.process_index() else (lambda *a: print(*a, flush=True))
  workdir = checkpoint.absolute(workdir)

  # ---------------------------------------------------------------- mesh
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')

  # --------------------------------------------------------------- input
  # Everything that can fail on bad input runs before the workdir is touched.
  info = data.dataset_info(config.dataset)
  train_arrays = data.load_split(config.dataset, config.dataset.train_split)
  eval_splits = {'val': config.dataset.val_split, 'test': config.dataset.test_split}
  eval_arrays = {
      name: data.load_split(_full_split(config.dataset), split)
      for name, split in eval_splits.items()
      if split
  }
  source = train_source(train_arrays, config)
  total_steps = config.num_steps or math.ceil(config.num_epochs * source.steps_per_epoch)
  eval_every = config.eval_every or source.steps_per_epoch
  log(
      f"data: {config.dataset.name} train={len(train_arrays['label'])} "
      + ' '.join(f"{k}={len(v['label'])}" for k, v in eval_arrays.items())
      + f" classes={info['num_classes']} | {total_steps} steps of {config.batch_size} "
      f'({total_steps / source.steps_per_epoch:.1f} epochs) on {mesh.devices.size} device(s)'
  )

  # ------------------------------------- model, parameters, rules, optimizer
  exp = build(config, mesh, info, total_steps, log)
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
      source = train_source(train_arrays, config)
      aux = None
      log(f"distill: cached teacher logits for {len(train_arrays['label'])} examples")

  # ------------------------------------------------------------ workdir
  _prepare_workdir(workdir)
  if jax.process_index() == 0:
    _warn_on_config_change(workdir, config, log)
    config_lib.save_config(config, workdir / 'config.json')
    (workdir / 'params.txt').write_text(exp.table + '\n')
    (workdir / 'params.json').write_text(
        json.dumps(
            {
                p: {'shape': list(np.shape(v)), **exp.groups[p], 'trainable': exp.trainable[p]}
                for p, v in partition.flatten(exp.params).items()
            },
            indent=1,
        )
    )
  log(exp.table.splitlines()[-1].replace('TOTAL', 'params:', 1))

  if config.adapt.fast_probe:
    return _fast_probe(config, exp, mesh, train_arrays, eval_arrays, workdir, log)

  # ------------------------------------- checkpoint: resume > fresh init
  replicated = sharding.replicated(mesh)
  init_state = lambda p: step_lib.init_state(p, exp.tx)
  state_shardings = exp.shardings(jax.eval_shape(init_state, exp.params), mesh)
  state = jax.jit(init_state, out_shardings=state_shardings)(exp.params)
  ckpt = checkpoint.Checkpointer(workdir, config.ckpt_every, config.keep_ckpts)
  start = ckpt.latest_step()
  if start is not None:
    state = ckpt.restore(state, start)
    log(f'resumed from step {start} in {ckpt.directory}')
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
      ),
      in_shardings=(state_shardings, sharding.batch_sharding(mesh), replicated),
      out_shardings=(state_shardings, replicated),
      donate_argnums=0,
  )
  # Compile ahead of time: the same executable runs the loop and reports its FLOPs.
  train_step = train_step.lower(state, sharding.global_batch(source.batch(0), mesh), aux).compile()
  step_flops = compiled_flops(train_step)
  eval_step = jax.jit(
      step_lib.make_eval_step(exp.forward, exp.preprocess_eval),
      in_shardings=(state_shardings.params, sharding.batch_sharding(mesh)),
      out_shardings=replicated,
  )

  evaluate = lambda params: evaluate_splits(
      eval_step, params, eval_arrays, config.eval_batch_size, mesh
  )

  # ------------------------------------------------------------------ loop
  writer = MetricWriter(workdir)
  stop = _StopOnSignal()
  final: dict[str, Any] = {}
  pending: list[dict] = []
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
      if step % config.log_every == 0 or is_last:
        means = {
            f'train/{k}': float(np.mean(v))
            for k, v in jax.device_get(jax.tree.map(lambda *xs: jnp.stack(xs), *pending)).items()
        }
        means['train/steps_per_sec'] = steps_timed / (time.perf_counter() - t0)
        pending, t0, steps_timed = [], time.perf_counter(), 0
        bar.set_postfix(loss=f"{means['train/loss']:.4f}", acc=f"{means['train/accuracy']:.3f}")
        writer.write(step, means)
      if step % eval_every == 0 or is_last:
        final = evaluate(state.params)
        writer.write(step, final)
        if not bar.disable:
          bar.write(f'step {step}: ' + ' '.join(f'{k}={v:.4f}' for k, v in final.items()))
      ckpt.maybe_save(step, state, force=is_last)
      if stop.requested and not is_last:
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
        final = evaluate(state.params)
        log(
            f'run already complete at step {start}: '
            + ' '.join(f'{k}={v:.4f}' for k, v in final.items())
        )
  finally:
    bar.close()
    ckpt.close()
    writer.close()
    stop.restore()
  if jax.process_index() == 0 and not stop.requested:
    _write_summary(
        workdir,
        {
            'method': config.adapt.method,
            'model': config.model.name,
            'steps': total_steps,
            'batch_size': config.batch_size,
            'examples_seen': total_steps * config.batch_size,
            'train_examples': len(train_arrays['label']),
            'step_flops': step_flops,
            'train_flops': step_flops * total_steps,
            'opt_state_bytes': tree_bytes(state.opt_state),
            **param_counts(exp),
            **final,
        },
    )
  return final


@dataclasses.dataclass
class Experiment:
  """Everything about a run that is not data or loop: model, parameters, optimizer."""

  model: Any
  forward: step_lib.Forward
  params: Any
  trainable: dict[str, bool]
  groups: dict[str, dict[str, Any]]
  tx: Any
  schedule: Any
  preprocess_train: Any
  preprocess_eval: Any
  input_shape: tuple[int, ...]
  table: str
  specs: dict[str, Any]  # PartitionSpec per parameter path
  shapes: dict[str, tuple[int, ...]]

  def shardings(self, tree, mesh):
    """Shardings for params or a train state: optimizer state follows its parameter."""
    return sharding.tree_shardings(tree, self.specs, self.shapes, mesh)


def build(
    config: ml_collections.ConfigDict, mesh, info: dict, total_steps: int, log=lambda *a: None
) -> Experiment:
  """Model, initial parameters (fresh > pretrained > LoRA), rules and optimizer."""
  model = models.build_model(
      config.model.name, info['num_classes'], **config.model.kwargs.to_dict()
  )
  forward = step_lib.make_forward(model, config.adapt.lora.alpha)
  preprocess_train = data.make_preprocess(config.preprocess.train)
  preprocess_eval = data.make_preprocess(config.preprocess.eval)
  input_shape = data.output_shape(config.preprocess.train, info['image_shape'])
  init_fn = lambda key: model.init(key, jnp.zeros((1, *input_shape)))['params']
  key = jax.random.key(config.seed)
  # Shapes first (no allocation), so large models are created already sharded.
  init_shardings, _, _ = sharding.plan(jax.eval_shape(init_fn, key), config.mesh.param_rules, mesh)
  params = jax.jit(init_fn, out_shardings=init_shardings)(key)
  if config.init.checkpoint:
    params, report = pretrained.load_into(
        params, config.init.checkpoint, config.init.dont_load, config.init.name_map
    )
    log(
        f"init: {len(report['loaded'])} tensors from {config.init.checkpoint}, "
        f"{len(report['kept'])} kept fresh ({', '.join(report['kept']) or 'none'}), "
        f"{len(report['unused'])} checkpoint tensors unused"
    )
  if config.adapt.lora.rules:
    params = lora.add_adapters(params, config.adapt.lora.rules, jax.random.key(config.seed + 1))
  if config.init.adapters:
    params = pretrained.overlay(params, config.init.adapters)
    log(f'init: adapters and head from {config.init.adapters}')

  params, specs, shapes = sharding.shard_params(params, config.mesh.param_rules, mesh)
  flat = partition.flatten(params)
  trainable = optim.trainable_mask(config, list(flat))
  groups = optim.param_groups(config, flat, trainable)
  trainable = {p: g['label'] != optim.FROZEN for p, g in groups.items()}
  table = partition.summary_table(
      flat,
      {
          'label': {p: g['label'] for p, g in groups.items()},
          'lr_mult': {p: g['lr_mult'] for p, g in groups.items()},
      },
      trainable,
  )
  return Experiment(
      model,
      forward,
      params,
      trainable,
      groups,
      optim.make_optimizer(config, groups, total_steps),
      optim.schedule(config.optim, total_steps),
      preprocess_train,
      preprocess_eval,
      input_shape,
      table,
      specs,
      shapes,
  )


def eval_sums(eval_step, params, arrays: dict, batch_size: int, mesh) -> dict[str, np.ndarray]:
  """Summed loss, correct count and example count over a whole split, on the host."""
  sums = None
  for batch in data.eval_batches(arrays, batch_size, jax.process_index(), jax.process_count()):
    s = eval_step(params, sharding.global_batch(batch, mesh))
    sums = s if sums is None else jax.tree.map(jnp.add, sums, s)
  return jax.device_get(sums)


def evaluate_splits(
    eval_step, params, eval_arrays: dict, batch_size: int, mesh
) -> dict[str, float]:
  """Exact accuracy and mean loss over every example of each split (padding masked)."""
  out = {}
  for name, arrays in eval_arrays.items():
    sums = eval_sums(eval_step, params, arrays, batch_size, mesh)
    out[f'{name}/accuracy'] = float(sums['correct'] / sums['count'])
    out[f'{name}/loss'] = float(sums['loss'] / sums['count'])
  return out


def _fast_probe(config, exp: Experiment, mesh, train_arrays, eval_arrays, workdir, log) -> dict:
  """Linear probe on cached features: one backbone pass, then a head fit in seconds."""
  t0 = time.perf_counter()
  feats = {
      name: probe.extract_features(
          exp.forward, exp.params, exp.preprocess_eval, arrays, config.eval_batch_size, mesh
      )
      for name, arrays in {'train': train_arrays, **eval_arrays}.items()
  }
  t_feat = time.perf_counter() - t0
  head = probe.fit_head(
      config.adapt.fast_probe,
      feats['train'],
      train_arrays['label'],
      exp.params['head']['kernel'].shape[-1],
      l2=config.adapt.probe_l2,
      epochs=config.adapt.probe_epochs,
      seed=config.seed,
  )
  t_fit = time.perf_counter() - t0 - t_feat
  params = {**exp.params, 'head': jax.device_put(head, sharding.replicated(mesh))}
  results = {}
  for name, arrays in eval_arrays.items():
    results.update(
        {f'{name}/{k}': v for k, v in probe.score(feats[name], arrays['label'], head).items()}
    )
  results.update({'probe/feature_seconds': t_feat, 'probe/fit_seconds': t_fit})
  writer = MetricWriter(workdir)
  writer.write(0, results)
  writer.close()
  ckpt = checkpoint.Checkpointer(workdir, 0, config.keep_ckpts)
  ckpt.maybe_save(0, step_lib.init_state(params, exp.tx), force=True)
  ckpt.close()
  log(
      f'fast probe ({config.adapt.fast_probe}): features {t_feat:.1f}s, fit {t_fit:.2f}s: '
      + ' '.join(f'{k}={v:.4f}' for k, v in results.items() if '/' in k and 'seconds' not in k)
  )
  # Cost: one backbone pass over the training set (the head fit is negligible next to it).
  inputs = step_lib.model_input(train_arrays)
  sample = jnp.zeros((config.eval_batch_size, *inputs.shape[1:]), inputs.dtype)
  per_batch = compiled_flops(
      jax.jit(lambda p, x: exp.forward(p, exp.preprocess_eval(x, None, False), features_only=True))
      .lower(exp.params, sample)
      .compile()
  )
  n_batches = math.ceil(len(train_arrays['label']) / config.eval_batch_size)
  if jax.process_index() == 0:
    head_size = sum(int(np.size(v)) for v in jax.tree.leaves(head))
    _write_summary(
        workdir,
        {
            'method': config.adapt.method,
            'model': config.model.name,
            'steps': n_batches,
            'batch_size': config.eval_batch_size,
            'examples_seen': len(train_arrays['label']),
            'train_examples': len(train_arrays['label']),
            'step_flops': per_batch,
            'train_flops': per_batch * n_batches,
            'opt_state_bytes': 0,
            **param_counts(exp),
            'trainable_params': head_size,
            **results,
        },
    )
  return results


def train_source(arrays: dict, config: ml_collections.ConfigDict) -> data.BatchSource:
  """This process's shuffled training batches, a pure function of (config.seed, step)."""
  return data.BatchSource(
      arrays,
      config.batch_size,
      config.seed,
      shuffle=True,
      drop_remainder=True,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
  )


def compiled_flops(compiled) -> float:
  """FLOPs of one call of a compiled executable (XLA cost analysis)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get('flops', 0.0))


def tree_bytes(tree) -> int:
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree) if hasattr(x, 'dtype')))


def param_counts(exp: Experiment) -> dict[str, int]:
  flat = partition.flatten(exp.params)
  return {
      'total_params': sum(int(np.size(v)) for v in flat.values()),
      'trainable_params': sum(int(np.size(v)) for p, v in flat.items() if exp.trainable[p]),
  }


def _write_summary(workdir: epath.Path, summary: dict) -> None:
  """`summary.json`: what the run cost and reached, for benchmarks and reports."""
  tmp = workdir / 'summary.json.tmp'
  tmp.write_text(json.dumps(summary, indent=1, sort_keys=True) + '\n')
  tmp.replace(workdir / 'summary.json')


def _check_cacheable(config) -> None:
  """Cached teacher logits are only right if every epoch sees the same images."""
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


def _full_split(dataset_cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Eval splits never take the k-shot subset: that only applies to training data."""
  cfg = ml_collections.ConfigDict(dataset_cfg.to_dict())
  cfg.examples_per_class = 0
  return cfg


def _prepare_workdir(workdir: epath.Path) -> None:
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / f'.write_test.{jax.process_index()}'  # one per process: shared workdirs
    probe.write_text('ok')
    probe.unlink()
  except OSError as e:
    raise WorkdirError(
        f'cannot write to workdir {workdir}: {e.strerror or e}; ' f'choose a writable --workdir'
    ) from None


def _warn_on_config_change(workdir: epath.Path, config, log) -> None:
  path = workdir / 'config.json'
  if not path.exists():
    return
  old = json.loads(path.read_text())
  new = json.loads(json.dumps(config.to_dict(), default=str))
  changed = config_lib.differing_keys(old, new)
  if changed:
    log(f"warning: config differs from the one in {path} at: {', '.join(changed)}")


class _StopOnSignal:
  """Turns SIGTERM/SIGINT into a flag so the loop can checkpoint and exit cleanly."""

  def __init__(self):
    self.requested = False
    self._old = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: leave signals alone.
        pass

  def _handle(self, signum, frame):
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt  # A second Ctrl-C means stop now.
    self.requested = True

  def restore(self):
    for sig, handler in self._old.items():
      signal.signal(sig, handler)
