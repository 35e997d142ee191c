"""LoRA forward forms on one model and batch: merged kernels, factored (our interceptor,
lora.factored), auto (factored where cheaper), and qwix's LoraProvider. Steps are timed
in interleaved rounds, so machine load reaches every form alike.

Compiled FLOPs, peak bytes and median step time of one LoRA train step (rank 8 on the
ViT's query/value/MLP kernels, Adam on adapters + head), beside full fine-tuning, in one
process so the timings share the machine's state. qwix is optional (`pip install qwix`).

    python benchmarks/lora_forms.py --steps 5        # ViT width 256, depth 4, batch 64
"""

from __future__ import annotations

import argparse
import copy
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxadapt import config as config_lib, cost, data, experiment, lora, methods, sharding
from jaxadapt import param_tree, step as step_lib

SPEC = 'configs/fashion_mnist/scratch.py:model=vit'
OVERRIDES = ['--config.model.kwargs.width=256', '--config.batch_size=64']


def build(method):
  cfg = config_lib.load_config(SPEC, OVERRIDES)
  cfg.unlock()
  methods.apply(cfg, method)
  mesh = sharding.make_mesh(cfg.mesh)
  info = data.dataset_info(cfg.dataset)
  return cfg, info, experiment.build(cfg, mesh, info, total_steps=1000)


def qwix_forward(model, alpha, rules):
  """qwix's LoraProvider over the same adapters, translated to its `<module>/kernel_lora_*`."""
  import qwix

  module_regex = rules[0][0].removesuffix('/kernel')
  rank = rules[0][1]
  provider = qwix.LoraProvider(module_path=module_regex, rank=rank, alpha=alpha)
  qmodel = qwix.apply_lora_to_model(model, provider)

  def forward(params, images, *, train=False, features_only=False, rngs=None):
    base, pairs = lora.split(params, alpha, 'factored')
    flat = param_tree.flatten(base)
    for path, (a, b) in pairs.items():
      module = path.removesuffix('/kernel')
      flat[f'{module}/kernel_lora_a'] = a.reshape(*flat[path].shape[:-1], a.shape[-1])
      flat[f'{module}/kernel_lora_b'] = b
    return qmodel.apply(
        {'params': param_tree.unflatten(flat)},
        images,
        train=train,
        features_only=features_only,
        rngs=rngs,
    )

  return forward


def prepare(name, cfg, info, exp, forward):
  """Compiled step and its costs; returns (row, run_one_step)."""
  state = step_lib.init_state(exp.params, exp.tx)
  step_fn = step_lib.make_train_step(forward, exp.tx, exp.trainable, exp.preprocess_train, 0)
  rng = np.random.default_rng(0)
  batch = {
      'image': jnp.asarray(rng.integers(0, 255, (cfg.batch_size, 28, 28, 1), dtype=np.uint8)),
      'label': jnp.asarray(rng.integers(0, 10, (cfg.batch_size,), dtype=np.int32)),
  }
  compiled = jax.jit(step_fn).lower(state, batch).compile()
  carry = [state]

  def run_one_step():
    t0 = time.perf_counter()
    carry[0], m = compiled(carry[0], batch)
    jax.block_until_ready(m)
    return time.perf_counter() - t0

  run_one_step()
  row = {
      'form': name,
      'gflops': cost.compiled_flops(compiled) / 1e9,
      'peak_mib': cost.compiled_peak_bytes(compiled) / 2**20,
  }
  return row, run_one_step


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--steps', type=int, default=5)
  parser.add_argument('--forms', default='full_ft,merged,factored,auto,qwix')
  args = parser.parse_args()
  forms = args.forms.split(',')
  rows = []
  cfg, info, exp = build('lora')
  from jaxadapt import models

  model = models.build_model(cfg.model.name, info['num_classes'], **cfg.model.kwargs.to_dict())
  alpha = cfg.adapt.lora.alpha
  steppers = []
  for form in forms:
    if form == 'full_ft':
      fcfg, finfo, fexp = build('full_ft')
      row, stepper = prepare(form, fcfg, finfo, fexp, fexp.forward)
    elif form in lora.FORMS:
      fwd = step_lib.make_forward(model, alpha, lora_form=form)
      row, stepper = prepare(form, cfg, info, exp, fwd)
    elif form == 'qwix':
      row, stepper = prepare(form, cfg, info, exp, qwix_forward(model, alpha, cfg.adapt.lora.rules))
    else:
      raise SystemExit(f"unknown form '{form}'; choose full_ft, qwix or one of {lora.FORMS}")
    rows.append(row)
    steppers.append(stepper)
  # Interleaved rounds: one step of each form per round, so load changes reach all alike.
  times = [[] for _ in rows]
  for _ in range(args.steps):
    for t, stepper in zip(times, steppers):
      t.append(stepper())
  for row, t in zip(rows, times):
    row['ms'] = 1e3 * statistics.median(t)
    print(row, flush=True)
  ref = next((r for r in rows if r['form'] == 'full_ft'), rows[0])
  print('| LoRA form | GFLOPs/step | x full_ft | peak MiB | median ms/step | x full_ft |')
  print('|---|---:|---:|---:|---:|---:|')
  for r in rows:
    print(
        f"| {r['form']} | {r['gflops']:.3f} | {r['gflops'] / ref['gflops']:.2f} | "
        f"{r['peak_mib']:.1f} | {r['ms']:.1f} | {r['ms'] / ref['ms']:.2f} |"
    )


if __name__ == '__main__':
  main()
