r"""Peer benchmark: the default Fashion-MNIST CNN trained by jaxadapt and by a PyTorch twin.

The model is `configs/fashion_mnist/scratch.py`'s (conv32-pool-conv64-pool-dense256,
dropout 0.3; 824,458 parameters), trained with AdamW + warmup/cosine, batch 128, random
horizontal flips. The twin is the same function written the way a careful PyTorch user
would write it: the same layers starting from the same initial parameters (copied from
jaxadapt's init, layouts converted and checked by a forward pass), the same optimizer,
schedule, weight-decay groups, data order, augmentation and dropout rate, and it computes
the same metrics (loss, accuracy, gradient norm) every step.

  .venv/bin/pip install -e '.[bench]' --find-links /opt/wheels     # torch==2.13.0, CPU build
  .venv/bin/python benchmarks/peer_cnn.py                 # train step, interleaved blocks
  .venv/bin/python benchmarks/peer_cnn.py --whole-run     # and both whole 10-epoch runs

Step times: blocks of `--steps` steps alternate between the two frameworks in one process
(`--blocks` of each), so both see the same machine load; a block's time / steps is one
sample (JAX dispatches asynchronously, as in the trainer's loop, and the block waits for
the last result), and the report gives medians and their ratio.

`--whole-run` then runs `jaxadapt train` on the config (a subprocess, as a user would) and
the twin's whole run (a subprocess too: 10 epochs, val and test evaluated once per epoch,
a checkpoint every 500 steps), one after the other, and reports wall times, time per step
over the isolated step (loop overhead) and the time to first reach `--target` test accuracy.
Not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

CONFIG = 'configs/fashion_mnist/scratch.py'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------- jaxadapt
def jax_setup(config):
  """The trainer's compiled train step, initial state and batch source for `config`."""
  import jax

  from jaxadapt import data, experiment, sharding, step as step_lib

  mesh = sharding.make_mesh(config.mesh)
  info = data.dataset_info(config.dataset)
  source = data.train_source(data.load_split(config.dataset, config.dataset.train_split), config)
  total_steps = config.num_steps or math.ceil(config.num_epochs * source.steps_per_epoch)
  exp = experiment.build(config, mesh, info, total_steps)
  init_state = lambda p: step_lib.init_state(p, exp.tx)
  state_shardings = exp.shardings(jax.eval_shape(init_state, exp.params), mesh)
  state = jax.jit(init_state, out_shardings=state_shardings)(exp.params)
  replicated = sharding.replicated(mesh)
  train_step = jax.jit(
      step_lib.make_train_step(
          exp.forward, exp.tx, exp.trainable, exp.preprocess_train, config.seed, exp.schedule
      ),
      in_shardings=(state_shardings, sharding.batch_sharding(mesh), replicated),
      out_shardings=(state_shardings, replicated),
      donate_argnums=0,
  )
  first = sharding.global_batch(source.batch(0), mesh)
  train_step = train_step.lower(state, first, None).compile()
  return exp, state, train_step, source, mesh, total_steps


class JaxRunner:
  """Runs blocks of jaxadapt train steps on consecutive batches."""

  def __init__(self, config):
    from jaxadapt import sharding

    self._global_batch = sharding.global_batch
    self.exp, self.state, self.step_fn, self.source, self.mesh, self.total = jax_setup(config)
    self.step = 0

  def block(self, n: int) -> float:
    import jax

    t0 = time.perf_counter()
    for _ in range(n):
      batch = self._global_batch(self.source.batch(self.step), self.mesh)
      self.state, metrics = self.step_fn(self.state, batch, None)
      self.step += 1
    jax.block_until_ready((self.state, metrics))
    return (time.perf_counter() - t0) / n


# ------------------------------------------------------------------------ the twin
def torch_model(jax_params, dropout: float):
  """The CNN in PyTorch (NCHW), initialised with jaxadapt's parameters."""
  import torch
  from torch import nn

  class TwinCNN(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
      self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
      self.dense = nn.Linear(7 * 7 * 64, 256)
      self.head = nn.Linear(256, 10)
      self.dropout = nn.Dropout(dropout)

    def features(self, x):
      x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
      x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
      return torch.relu(self.dense(x.flatten(1)))

    def forward(self, x):
      return self.head(self.dropout(self.features(x)))

  model = TwinCNN()
  p = {k: np.asarray(v) for k, v in _flat(jax_params).items()}
  c2 = p['block2/conv1/kernel'].shape[-1]
  # HWIO -> OIHW; the dense kernel's rows go from (h, w, c) flattening order to (c, h, w).
  dense = p['dense/kernel'].reshape(7, 7, c2, -1).transpose(2, 0, 1, 3).reshape(7 * 7 * c2, -1)
  weights = {
      'conv1.weight': p['block1/conv1/kernel'].transpose(3, 2, 0, 1),
      'conv1.bias': p['block1/conv1/bias'],
      'conv2.weight': p['block2/conv1/kernel'].transpose(3, 2, 0, 1),
      'conv2.bias': p['block2/conv1/bias'],
      'dense.weight': dense.T,
      'dense.bias': p['dense/bias'],
      'head.weight': p['head/kernel'].T,
      'head.bias': p['head/bias'],
  }
  model.load_state_dict({k: torch.tensor(np.ascontiguousarray(v)) for k, v in weights.items()})
  return model


def _flat(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict) or hasattr(v, 'items'):
      out.update(_flat(v, f'{prefix}{k}/'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def lr_at(step: int, config, total_steps: int) -> float:
  """Linear warmup from 0, then cosine to 0: the schedule jaxadapt's optim.py builds."""
  o = config.optim
  warmup = min(o.warmup_steps or int(o.warmup_fraction * total_steps), max(total_steps - 1, 0))
  if step < warmup:
    return o.lr * step / warmup
  t = min(step - warmup, total_steps - warmup) / max(total_steps - warmup, 1)
  return o.lr * 0.5 * (1 + math.cos(math.pi * t))


class TorchRunner:
  """The twin's training: same batches, flips, dropout, AdamW groups and schedule."""

  def __init__(self, config, jax_params, source, total_steps: int):
    import torch

    torch.manual_seed(config.seed)
    self.torch = torch
    self.model = torch_model(jax_params, config.model.kwargs.dropout)
    decay = [p for n, p in self.model.named_parameters() if n.endswith('weight')]
    no_decay = [p for n, p in self.model.named_parameters() if n.endswith('bias')]
    self.opt = torch.optim.AdamW(
        [
            {'params': decay, 'weight_decay': config.optim.weight_decay},
            {'params': no_decay, 'weight_decay': 0.0},
        ],
        lr=config.optim.lr,
        betas=(config.optim.momentum, config.optim.b2),
        eps=1e-8,
    )
    self.sched = torch.optim.lr_scheduler.LambdaLR(
        self.opt, lambda s: lr_at(s, config, total_steps) / config.optim.lr
    )
    self.source = source
    self.mean, self.std = 0.286, 0.353
    self.step = 0
    self.pending = []

  def preprocess(self, images: np.ndarray, train: bool):
    torch = self.torch
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    x = (x - self.mean) / self.std
    if train:
      flip = torch.rand(x.shape[0]) < 0.5
      x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x

  def train_step(self, batch: dict) -> None:
    torch = self.torch
    self.model.train()
    x = self.preprocess(batch['image'], True)
    y = torch.from_numpy(batch['label']).long()
    logits = self.model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
      grad_norm = torch.linalg.vector_norm(
          torch.stack([torch.linalg.vector_norm(p.grad) for p in self.model.parameters()])
      )
      accuracy = (logits.argmax(-1) == y).float().mean()
    self.opt.step()
    self.sched.step()
    self.pending.append(torch.stack([loss.detach(), accuracy, grad_norm]))
    self.step += 1

  def block(self, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
      self.train_step(self.source.batch(self.step))
    return (time.perf_counter() - t0) / n

  def evaluate(self, arrays: dict, batch_size: int) -> float:
    torch = self.torch
    self.model.eval()
    correct = 0
    with torch.no_grad():
      for start in range(0, len(arrays['label']), batch_size):
        x = self.preprocess(arrays['image'][start : start + batch_size], False)
        y = torch.from_numpy(arrays['label'][start : start + batch_size]).long()
        correct += int((self.model(x).argmax(-1) == y).sum())
    return correct / len(arrays['label'])


def check_same_function(runner: JaxRunner, twin: TorchRunner) -> float:
  """Max |difference| of the two models' features on a batch: the twin is the same net."""
  import jax

  images = runner.source.batch(0)['image']
  x = runner.exp.preprocess_eval(jax.numpy.asarray(images), None, False)
  ours = np.asarray(runner.exp.forward(runner.state.params, x, features_only=True))
  with twin.torch.no_grad():
    theirs = twin.model.features(twin.preprocess(images, False)).numpy()
  return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(ours)), 1e-12))


# ---------------------------------------------------------------------------- steps
def measure_steps(config, blocks: int, steps: int, log=print) -> dict:
  runner = JaxRunner(config)
  twin = TorchRunner(config, runner.state.params, runner.source, runner.total)
  err = check_same_function(runner, twin)
  if err > 1e-4:
    raise SystemExit(f'the twin is not the same function: relative feature error {err:.2e}')
  log(f'twin check: features agree to {err:.1e} (relative)')
  runner.block(3), twin.block(3)  # warm up both (allocators, thread pools)
  ours, theirs = [], []
  for b in range(blocks):
    # Alternate which goes first so neither always follows the other.
    pair = (runner, twin) if b % 2 == 0 else (twin, runner)
    for r in pair:
      (ours if r is runner else theirs).append(r.block(steps))
    log(
        f'block {b + 1}/{blocks}: jaxadapt {ours[-1] * 1e3:.1f} ms  torch {theirs[-1] * 1e3:.1f} ms'
    )
  return {
      'jaxadapt_step_ms': statistics.median(ours) * 1e3,
      'torch_step_ms': statistics.median(theirs) * 1e3,
      'ratio': statistics.median(ours) / statistics.median(theirs),
      'blocks': blocks,
      'steps_per_block': steps,
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default=CONFIG)
  parser.add_argument('--blocks', type=int, default=7, help='blocks of each framework')
  parser.add_argument('--steps', type=int, default=20, help='train steps per block')
  parser.add_argument('--whole-run', action='store_true', help='also time both whole runs')
  parser.add_argument('--target', type=float, default=0.91, help='test accuracy for time-to-X')
  args = parser.parse_args(argv)

  sys.path.insert(0, REPO)
  from jaxadapt import config as config_lib

  config = config_lib.load_config(os.path.join(REPO, args.config))
  result = measure_steps(config, args.blocks, args.steps)
  print(json.dumps(result, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
