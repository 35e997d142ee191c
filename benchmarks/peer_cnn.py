r"""Peer benchmark: the default Fashion-MNIST CNN trained by jaxadapt and by a PyTorch twin.

The model is `configs/fashion_mnist/scratch.py`'s (conv32-pool-conv64-pool-dense256,
dropout 0.3; 824,458 parameters), trained with AdamW + warmup/cosine, batch 128, random
horizontal flips. The twin is the same training written the way a careful PyTorch user
would write it: the same layers starting from the same initial parameters (jaxadapt's
init, layouts converted and checked by a forward pass), the same AdamW, schedule and
weight-decay groups, the same batches in the same order, flips, dropout rate and metrics
(loss, accuracy, gradient norm every step), and in whole runs the same evaluations (val
and test once per epoch) and checkpoint interval.

  .venv/bin/pip install -e '.[bench]' --find-links /opt/wheels   # torch==2.13.0, CPU build
  .venv/bin/python benchmarks/peer_cnn.py                # train step, interleaved blocks
  .venv/bin/python benchmarks/peer_cnn.py --whole-run    # and both whole runs

Train step: blocks of `--steps` steps alternate between the frameworks in one process
(`--blocks` of each, the first of each pair alternating), so both see the same machine
load; a block's wall time / steps is one sample (jaxadapt dispatches asynchronously as its
trainer does, and the block waits for the last result); the report gives the medians and
their ratio. jaxadapt runs as `jaxadapt train` does (host.keep_freed_memory; one XLA
device, `JAX_NUM_CPU_DEVICES=2` for two); torch with its default threads. On a machine
other jobs share, `taskset -c 0 python benchmarks/peer_cnn.py` compares the two on one core
(one torch thread), which contention distorts less than two-thread runs: PyTorch's OpenMP
threads spin at every barrier, and when other jobs take a core its two-thread steps slow
down several-fold (`OMP_WAIT_POLICY=PASSIVE` makes them sleep instead; recorded in `env`).

`--whole-run` then times `jaxadapt train` on the config (a subprocess with an empty XLA
compilation cache, as a first run) and the twin's whole run (a subprocess that reads the
same arrays from an .npz this script writes, so data loading is not in its time), one after
the other, and reports both wall times, the time to first reach `--target` test accuracy,
jaxadapt's loop overhead (whole-run time per step over the isolated step time measured
above) and each run's timeline: its own steady step time (between metric logs), startup,
evaluations and checkpoints inside the loop, and the tail. Not a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import datetime
import glob
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'configs/fashion_mnist/scratch.py'
# Settings that change the timings, recorded with the results.
ENV_KEYS = ('OMP_WAIT_POLICY', 'OMP_NUM_THREADS', 'JAX_NUM_CPU_DEVICES', 'XLA_FLAGS')


def batch_index(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Rows of training batch `step`: the order of jaxadapt's data.BatchSource (drop_remainder)."""
  epoch, within = divmod(step, num_examples // batch_size)
  order = np.random.default_rng([seed, epoch]).permutation(num_examples)
  return order[within * batch_size : (within + 1) * batch_size]


def lr_at(step: int, lr: float, warmup: int, total: int) -> float:
  """Linear warmup from 0, then cosine to 0 (the schedule jaxadapt's optim.py builds)."""
  if step < warmup:
    return lr * step / warmup
  t = min(step - warmup, total - warmup) / max(total - warmup, 1)
  return lr * 0.5 * (1 + math.cos(math.pi * t))


# ------------------------------------------------------------------------ the twin
class TorchTwin:
  """The CNN and its training in PyTorch (NCHW), from jaxadapt's initial parameters."""

  def __init__(self, params: dict[str, np.ndarray], hp: dict):
    import torch
    from torch import nn

    torch.manual_seed(hp['seed'])
    self.torch, self.hp = torch, hp

    class TwinCNN(nn.Module):

      def __init__(self, c1, c2, dense, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.dense = nn.Linear(7 * 7 * c2, dense)
        self.head = nn.Linear(dense, classes)
        self.dropout = nn.Dropout(hp['dropout'])

      def features(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return torch.relu(self.dense(x.flatten(1)))

      def forward(self, x):
        return self.head(self.dropout(self.features(x)))

    p = params
    c1, c2 = p['block1/conv1/kernel'].shape[-1], p['block2/conv1/kernel'].shape[-1]
    dense, classes = p['dense/kernel'].shape[-1], p['head/kernel'].shape[-1]
    self.model = TwinCNN(c1, c2, dense, classes)
    # HWIO -> OIHW; the dense kernel's rows go from (h, w, c) flattening order to (c, h, w).
    dense_kernel = p['dense/kernel'].reshape(7, 7, c2, dense).transpose(2, 0, 1, 3)
    weights = {
        'conv1.weight': p['block1/conv1/kernel'].transpose(3, 2, 0, 1),
        'conv1.bias': p['block1/conv1/bias'],
        'conv2.weight': p['block2/conv1/kernel'].transpose(3, 2, 0, 1),
        'conv2.bias': p['block2/conv1/bias'],
        'dense.weight': dense_kernel.reshape(7 * 7 * c2, dense).T,
        'dense.bias': p['dense/bias'],
        'head.weight': p['head/kernel'].T,
        'head.bias': p['head/bias'],
    }
    self.model.load_state_dict(
        {k: torch.tensor(np.ascontiguousarray(v)) for k, v in weights.items()}
    )
    named = list(self.model.named_parameters())
    self.opt = torch.optim.AdamW(
        [
            {'params': [v for n, v in named if n.endswith('weight')]},
            {'params': [v for n, v in named if n.endswith('bias')], 'weight_decay': 0.0},
        ],
        lr=hp['lr'],
        betas=(hp['b1'], hp['b2']),
        eps=1e-8,
        weight_decay=hp['weight_decay'],
    )
    self.sched = torch.optim.lr_scheduler.LambdaLR(
        self.opt, lambda s: lr_at(s, 1.0, hp['warmup'], hp['total_steps'])
    )
    self.step = 0

  def preprocess(self, images: np.ndarray, train: bool):
    torch = self.torch
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    x = (x - self.hp['mean']) / self.hp['std']
    if train:
      flip = torch.rand(x.shape[0]) < 0.5
      x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x

  def train_step(self, images: np.ndarray, labels: np.ndarray):
    """One step; returns (loss, accuracy, grad_norm) as tensors (no host sync)."""
    torch = self.torch
    self.model.train()
    x, y = self.preprocess(images, True), torch.from_numpy(labels).long()
    logits = self.model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
      norms = [torch.linalg.vector_norm(v.grad) for v in self.model.parameters()]
      grad_norm = torch.linalg.vector_norm(torch.stack(norms))
      accuracy = (logits.argmax(-1) == y).float().mean()
    self.opt.step()
    self.sched.step()
    self.step += 1
    return torch.stack([loss.detach(), accuracy, grad_norm])

  def evaluate(self, arrays: dict, batch_size: int) -> dict[str, float]:
    """Accuracy and mean loss over a whole split, as jaxadapt's evaluation reports them."""
    torch = self.torch
    self.model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
      for start in range(0, len(arrays['label']), batch_size):
        x = self.preprocess(arrays['image'][start : start + batch_size], False)
        y = torch.from_numpy(arrays['label'][start : start + batch_size]).long()
        logits = self.model(x)
        correct += int((logits.argmax(-1) == y).sum())
        loss += float(torch.nn.functional.cross_entropy(logits, y, reduction='sum'))
    return {'accuracy': correct / len(arrays['label']), 'loss': loss / len(arrays['label'])}


def twin_hyperparameters(config, total_steps: int) -> dict:
  o = config.optim
  if (o.name, o.schedule, config.preprocess.train) != (
      'adamw',
      'cosine',
      'scale|normalize(0.286,0.353)|flip',
  ):
    raise SystemExit('the twin implements AdamW, cosine and scale|normalize|flip only')
  return {
      'seed': config.seed,
      'dropout': config.model.kwargs.dropout,
      'lr': o.lr,
      'b1': o.momentum,
      'b2': o.b2,
      'weight_decay': o.weight_decay,
      'warmup': min(o.warmup_steps or int(o.warmup_fraction * total_steps), total_steps - 1),
      'total_steps': total_steps,
      'batch_size': config.batch_size,
      'eval_batch_size': config.eval_batch_size,
      'eval_every': config.eval_every,  # 0: once per epoch
      'ckpt_every': config.ckpt_every,
      'log_every': config.log_every,
      'mean': 0.286,
      'std': 0.353,
  }


def twin_whole_run(npz: str, hp: dict, workdir: str) -> None:
  """The twin's whole run, as its own process: prints one JSON line per evaluation."""
  import torch

  t0 = float(os.environ['PEER_T0'])  # the parent's clock when it started this process
  data = np.load(npz)
  params = {k[len('param/') :]: data[k] for k in data.files if k.startswith('param/')}
  split = lambda name: {'image': data[f'{name}/image'], 'label': data[f'{name}/label']}
  train, evals = split('train'), {'val': split('val'), 'test': split('test')}
  twin = TorchTwin(params, hp)
  n, b = len(train['label']), hp['batch_size']
  eval_every = hp['eval_every'] or n // b
  pending = []
  for step in range(1, hp['total_steps'] + 1):
    rows = batch_index(n, b, hp['seed'], step - 1)
    pending.append(twin.train_step(train['image'][rows], train['label'][rows]))
    last = step == hp['total_steps']
    if step % hp['log_every'] == 0 or last:
      torch.stack(pending).mean(0).tolist()  # the host reads the metrics, as jaxadapt's loop
      pending = []
      print(json.dumps({'step': step, 'time': time.time() - t0, 'log': True}), flush=True)
    if step % eval_every == 0 or last:
      acc = {k: twin.evaluate(v, hp['eval_batch_size'])['accuracy'] for k, v in evals.items()}
      print(json.dumps({'step': step, 'time': time.time() - t0, **acc}), flush=True)
    if step % hp['ckpt_every'] == 0 or last:
      state = {'model': twin.model.state_dict(), 'opt': twin.opt.state_dict(), 'step': step}
      torch.save(state, os.path.join(workdir, 'checkpoint.pt'))


# ------------------------------------------------------------------------- jaxadapt
class JaxRunner:
  """jaxadapt's compiled train step (built as the trainer builds it) on the config's data."""

  def __init__(self, config):
    import jax

    from jaxadapt import data, experiment, param_tree, sharding, step as step_lib

    self.mesh = sharding.make_mesh(config.mesh)
    info = data.dataset_info(config.dataset)
    self.train_arrays = data.load_split(config.dataset, config.dataset.train_split)
    self.eval_arrays = data.load_eval_splits(config.dataset)
    self.source = data.train_source(self.train_arrays, config)
    source = self.source
    self.total_steps = config.num_steps or math.ceil(config.num_epochs * source.steps_per_epoch)
    self.exp = experiment.build(config, self.mesh, info, self.total_steps)
    self.initial_params = {k: np.asarray(v) for k, v in param_tree.flatten(self.exp.params).items()}
    init_state = lambda p: step_lib.init_state(p, self.exp.tx)
    shardings = self.exp.shardings(jax.eval_shape(init_state, self.exp.params), self.mesh)
    self.state = jax.jit(init_state, out_shardings=shardings)(self.exp.params)
    replicated = sharding.replicated(self.mesh)
    step = jax.jit(
        step_lib.make_train_step(
            self.exp.forward,
            self.exp.tx,
            self.exp.trainable,
            self.exp.preprocess_train,
            config.seed,
            self.exp.schedule,
        ),
        in_shardings=(shardings, sharding.batch_sharding(self.mesh), replicated),
        out_shardings=(shardings, replicated),
        donate_argnums=0,
    )
    self._global_batch = lambda step: sharding.global_batch(self.source.batch(step), self.mesh)
    self.config = config
    self.step_fn = step.lower(self.state, self._global_batch(0), None).compile()
    self.step = 0

  def features(self, images: np.ndarray) -> np.ndarray:
    x = self.exp.preprocess_eval(images, None, False)
    return np.asarray(self.exp.forward(self.state.params, x, features_only=True))

  def block(self, n: int) -> float:
    import jax

    t0 = time.perf_counter()
    for _ in range(n):
      self.state, metrics = self.step_fn(self.state, self._global_batch(self.step), None)
      self.step += 1
    jax.block_until_ready((self.state, metrics))
    return (time.perf_counter() - t0) / n


class TwinRunner:
  """Blocks of twin steps on the same batches as the JaxRunner."""

  def __init__(self, twin: TorchTwin, arrays: dict, batch_size: int, seed: int):
    self.twin, self.arrays, self.batch_size, self.seed = twin, arrays, batch_size, seed

  def block(self, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
      rows = batch_index(len(self.arrays['label']), self.batch_size, self.seed, self.twin.step)
      self.twin.train_step(self.arrays['image'][rows], self.arrays['label'][rows])
    return (time.perf_counter() - t0) / n


def measure_steps(ours: JaxRunner, twin: TorchTwin, blocks: int, steps: int, log) -> dict:
  theirs = TwinRunner(twin, ours.train_arrays, ours.config.batch_size, ours.config.seed)
  for step in (0, 429, 1000):  # the twin's batches are the trainer's
    rows = batch_index(len(ours.train_arrays['label']), theirs.batch_size, theirs.seed, step)
    if not np.array_equal(ours.train_arrays['label'][rows], ours.source.batch(step)['label']):
      raise SystemExit(f'the twin would see other batches than jaxadapt (step {step})')
  images = ours.train_arrays['image'][:256].copy()
  with twin.torch.no_grad():
    reference = twin.model.features(twin.preprocess(images, False)).numpy()
  error = np.max(np.abs(ours.features(images) - reference)) / np.max(np.abs(reference))
  if error > 1e-4:
    raise SystemExit(f'the twin is not the same function: relative feature error {error:.1e}')
  log(f'twin check: features agree to {error:.1e} (relative)')
  ours.block(3), theirs.block(3)  # warm up allocators and thread pools
  times = {'jaxadapt': [], 'torch': []}
  for b in range(blocks):
    pair = [('jaxadapt', ours), ('torch', theirs)]
    for name, runner in pair if b % 2 == 0 else pair[::-1]:
      times[name].append(runner.block(steps))
    log(
        f"block {b + 1}/{blocks}: jaxadapt {times['jaxadapt'][-1] * 1e3:.1f} ms/step, "
        f"torch {times['torch'][-1] * 1e3:.1f} ms/step"
    )
  med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
  return {
      'jaxadapt_step_ms': med['jaxadapt'],
      'torch_step_ms': med['torch'],
      'step_ratio': med['jaxadapt'] / med['torch'],
      'blocks': blocks,
      'steps_per_block': steps,
  }


# ------------------------------------------------------------------------ whole runs
def tb_scalars(directory: str, tag: str) -> list[tuple[float, int, float]]:
  """(wall_time, step, value) of a TensorBoard scalar (TFRecord-framed Event protos)."""
  from tensorboardX.proto import event_pb2

  out = []
  for path in sorted(glob.glob(os.path.join(directory, 'events.out.tfevents.*'))):
    with open(path, 'rb') as f:
      raw = f.read()
    pos = 0
    while pos + 12 <= len(raw):
      (length,) = struct.unpack('<Q', raw[pos : pos + 8])
      event = event_pb2.Event.FromString(raw[pos + 12 : pos + 12 + length])
      pos += 12 + length + 4
      out += [
          (event.wall_time, event.step, v.simple_value) for v in event.summary.value if v.tag == tag
      ]
  return out


def first_reaching(points: list[tuple[float, float]], target: float) -> float | None:
  """Earliest time whose accuracy is >= target; points are (time, accuracy)."""
  return next((t for t, acc in sorted(points) if acc >= target), None)


def timeline(logs: list[tuple[float, int]], total_s: float, steps: int) -> dict:
  """Where a whole run's time went, from (seconds since start, step) at each metrics log.

  The steady step time is the median time per step between consecutive logs, so the run
  measures itself under the load it saw. Overhead is the run's time over steps x that,
  minus one; `startup_s` is the time before the first logged window's steps began and
  `tail_s` the time after the last log (final evaluation, checkpoint, exit).
  """
  logs = sorted(logs)
  per_step = statistics.median(
      (t1 - t0) / (s1 - s0) for (t0, s0), (t1, s1) in zip(logs, logs[1:]) if s1 > s0
  )
  startup = logs[0][0] - logs[0][1] * per_step
  tail = total_s - logs[-1][0]
  return {
      'steady_step_ms': per_step * 1e3,
      'overhead': total_s / (steps * per_step) - 1.0,
      'startup_s': startup,
      'in_loop_extra_s': total_s - startup - tail - steps * per_step,  # evals, checkpoints
      'tail_s': tail,
  }


def whole_runs(args, ours: JaxRunner, hp: dict, log) -> dict:
  tmp = tempfile.mkdtemp(prefix='peer_cnn_')
  npz = os.path.join(tmp, 'arrays.npz')
  arrays = {f'train/{k}': v for k, v in ours.train_arrays.items()}
  for split, values in ours.eval_arrays.items():
    arrays.update({f'{split}/{k}': v for k, v in values.items()})
  arrays.update({f'param/{k}': v for k, v in ours.initial_params.items()})
  np.savez(npz, **arrays)

  jaxadapt = os.path.join(os.path.dirname(sys.executable), 'jaxadapt')
  env = {**os.environ, 'JAXADAPT_XLA_CACHE': os.path.join(tmp, 'xla-cache')}
  workdir = os.path.join(tmp, 'jaxadapt')
  log(f'whole run: jaxadapt train --config {args.config} --workdir {workdir}')
  start = time.time()
  with open(os.path.join(tmp, 'jaxadapt.log'), 'w') as out:
    subprocess.run(
        [jaxadapt, 'train', '--config', args.config, '--workdir', workdir],
        check=True,
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
  jax_wall = time.time() - start
  tensorboard = f'{workdir}/tensorboard'
  jax_test = [(t - start, acc) for t, _, acc in tb_scalars(tensorboard, 'test/accuracy')]
  jax_logs = [(t - start, step) for t, step, _ in tb_scalars(tensorboard, 'train/loss')]

  log('whole run: the PyTorch twin')
  twin_dir = os.path.join(tmp, 'torch')
  os.makedirs(twin_dir)
  start = time.time()
  out = subprocess.run(
      [sys.executable, __file__, '--twin-run', npz, json.dumps(hp), twin_dir],
      check=True,
      capture_output=True,
      text=True,
      env={**os.environ, 'PEER_T0': repr(start)},
  )
  torch_wall = time.time() - start
  records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{')]
  torch_test = [(r['time'], r['test']) for r in records if 'test' in r]
  torch_logs = [(r['time'], r['step']) for r in records if r.get('log')]
  jax_final = json.loads(open(f'{workdir}/summary.json').read())
  steps = hp['total_steps']
  return {
      'jaxadapt_run_s': jax_wall,
      'torch_run_s': torch_wall,
      'run_ratio': jax_wall / torch_wall,
      'steps': steps,
      'jaxadapt_run_ms_per_step': jax_wall / steps * 1e3,
      'jaxadapt_test_accuracy': jax_final.get('test/accuracy'),
      'torch_test_accuracy': torch_test[-1][1] if torch_test else None,
      f'jaxadapt_time_to_{args.target}_s': first_reaching(jax_test, args.target),
      f'torch_time_to_{args.target}_s': first_reaching(torch_test, args.target),
      'jaxadapt_timeline': timeline(jax_logs, jax_wall, steps),
      'torch_timeline': timeline(torch_logs, torch_wall, steps),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--config', default=CONFIG)
  parser.add_argument('--blocks', type=int, default=9, help='blocks of each framework')
  parser.add_argument('--steps', type=int, default=20, help='train steps per block')
  parser.add_argument('--whole-run', action='store_true', help='also time both whole runs')
  parser.add_argument('--target', type=float, default=0.91, help='test accuracy for time-to-X')
  parser.add_argument('--twin-run', nargs=3, help=argparse.SUPPRESS)  # internal: npz, hp, dir
  args = parser.parse_args(argv)
  if args.twin_run:
    twin_whole_run(args.twin_run[0], json.loads(args.twin_run[1]), args.twin_run[2])
    return 0

  os.chdir(REPO)
  sys.path.insert(0, REPO)
  from jaxadapt import config as config_lib, host

  log = lambda *a: print(*a, file=sys.stderr, flush=True)
  config = config_lib.load_config(args.config)
  host.keep_freed_memory()  # as the CLI does
  import jax
  import torch

  ours = JaxRunner(config)
  hp = twin_hyperparameters(config, ours.total_steps)
  twin = TorchTwin(ours.initial_params, hp)
  log(
      f'jaxadapt {jax.__version__} on {jax.device_count()} CPU device(s); torch '
      f'{torch.__version__} with {torch.get_num_threads()} threads; {len(os.sched_getaffinity(0))} usable cores'
  )
  result = {
      'date': datetime.date.today().isoformat(),
      'command': 'python benchmarks/peer_cnn.py' + (' ' + ' '.join(sys.argv[1:])).rstrip(),
      'jax_devices': jax.device_count(),
      'torch_threads': torch.get_num_threads(),
      'env': {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
      'load_average_before': round(os.getloadavg()[0], 2),
      **measure_steps(ours, twin, args.blocks, args.steps, log),
  }
  if args.whole_run:
    result.update(whole_runs(args, ours, hp, log))
    # Against the step measured above (loads differ between the two measurements) and, in
    # the timelines, against each run's own steady step time.
    result['jaxadapt_loop_overhead'] = (
        result['jaxadapt_run_ms_per_step'] / result['jaxadapt_step_ms'] - 1.0
    )
  result['load_average_after'] = round(os.getloadavg()[0], 2)  # other jobs on the machine
  print(json.dumps(result, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
