"""The fast linear probe: one backbone pass over the data, then a head fit in seconds.

Selected by `adapt.fast_probe` (`ridge` or `softmax`); an alternative to `train.train`
for linear probing, writing the same workdir files (config, parameter table, metrics,
one checkpoint holding the fitted head, `summary.json`).
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxadapt import checkpoint, cost, data, experiment, probe, sharding, validate
from jaxadapt import step as step_lib, workdir as workdir_lib, workdir_lock
from jaxadapt.metrics import MetricWriter


def run(config: ml_collections.ConfigDict, workdir: str, *, quiet: bool = False) -> dict[str, Any]:
  """Fits the probe head on cached features; returns the eval metrics."""
  validate.validate(config)
  probe.check_kind(config.adapt.fast_probe)
  workdir = checkpoint.absolute(workdir)
  lock = workdir_lock.WorkdirLock(workdir)
  try:
    return _run(config, workdir, lock, quiet)
  finally:
    lock.release()


def _run(config, workdir, lock: workdir_lock.WorkdirLock, quiet: bool) -> dict[str, Any]:
  log = (lambda *a: None) if quiet or jax.process_index() else (lambda *a: print(*a, flush=True))
  mesh = sharding.make_mesh(config.mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')
  l2s = probe.check_penalties(config.adapt.probe_l2)
  info = data.dataset_info(config.dataset)
  train_arrays = data.load_split(config.dataset, config.dataset.train_split)
  eval_arrays = data.load_eval_splits(config.dataset)
  exp = experiment.build(config, mesh, info, total_steps=1, log=log)
  workdir_lib.prepare(workdir)
  lock.acquire()
  ckpt = checkpoint.Checkpointer(workdir, 0, config.keep_ckpts)
  trained = [s for s in ckpt.manager.all_steps() if s != 0]
  if trained:
    ckpt.close()
    raise workdir_lib.WorkdirError(
        f'workdir {workdir} holds checkpoints of a trained run (steps '
        f"{', '.join(map(str, trained))}); use a new --workdir for the fast probe"
    )
  workdir_lib.record_run(workdir, config, exp, None, workdir_lib.config_changes(workdir, config))

  t0 = time.perf_counter()
  feats = {
      name: probe.extract_features(
          exp.forward, exp.params, exp.preprocess_eval, arrays, config.eval_batch_size, mesh
      )
      for name, arrays in {'train': train_arrays, **eval_arrays}.items()
  }
  t_feat = time.perf_counter() - t0
  settings = probe.candidates(config.adapt.fast_probe, l2s)
  heads = probe.fit_heads(
      config.adapt.fast_probe,
      feats['train'],
      train_arrays['label'],
      exp.params['head']['kernel'].shape[-1],
      settings,
      tol=config.adapt.probe_tol,
      max_iter=config.adapt.probe_max_iter,
  )
  # The setting is chosen on the val split (disjoint from train), never on test; without
  # one, the first: the smallest penalty with per-feature scaling.
  chosen, val_scores = 0, []
  if 'val' in feats:
    chosen, val_scores = probe.select_head(
        heads, settings, feats['val'], eval_arrays['val']['label']
    )
  head = heads[chosen]
  t_fit = time.perf_counter() - t0 - t_feat
  params = {**exp.params, 'head': jax.device_put(head, sharding.replicated(mesh))}
  results = {}
  for name, arrays in eval_arrays.items():
    scores = probe.score(feats[name], arrays['label'], head)
    results.update({f'{name}/{k}': v for k, v in scores.items()})
  results.update({'probe/feature_seconds': t_feat, 'probe/fit_seconds': t_fit})
  writer = MetricWriter(workdir, keep_through=-1)  # a rerun replaces the earlier result
  writer.write(0, results)
  writer.close()
  if 0 in ckpt.manager.all_steps():  # a rerun: its head replaces the earlier one
    ckpt.manager.delete(0)
  ckpt.maybe_save(0, step_lib.init_state(params, exp.tx), force=True)
  ckpt.close()
  log(
      f'fast probe ({config.adapt.fast_probe}): features {t_feat:.1f}s, fit {t_fit:.2f}s: '
      + ' '.join(f'{k}={v:.4f}' for k, v in results.items() if 'seconds' not in k)
  )
  # Cost: one backbone pass over the training set (the head fit is negligible next to it).
  inputs = step_lib.model_input(train_arrays)
  sample = jnp.zeros((config.eval_batch_size, *inputs.shape[1:]), inputs.dtype)
  features = lambda p, x: exp.forward(p, exp.preprocess_eval(x, None, False), features_only=True)
  per_batch = cost.compiled_cost(features, exp.params, sample)['flops']
  n_batches = math.ceil(len(train_arrays['label']) / config.eval_batch_size)
  if jax.process_index() == 0:
    summary = cost.run_summary(
        config,
        steps=n_batches,
        batch_size=config.eval_batch_size,
        train_examples=len(train_arrays['label']),
        step_flops=per_batch,
        opt_state_bytes=0,
        **cost.param_counts(exp.params, exp.trainable),
    )
    # One pass over the data, not steps x batch (the last batch is padded).
    summary['examples_seen'] = len(train_arrays['label'])
    summary['trainable_params'] = sum(int(np.size(v)) for v in jax.tree.leaves(head))
    grid = {
        'probe/l2': settings[chosen]['l2'],
        'probe/scale': settings[chosen].get('scale', 'none'),
        'probe/l2_grid': settings,
        'probe/l2_val': val_scores,
    }
    cost.write_summary(workdir, {**summary, **results, **grid})
  return results
