"""Two processes on localhost (one CPU device each) train exactly like one process on two devices.

The distributed run goes through the real CLI path: `--distributed` ->
`jax.distributed.initialize` (coordinator on 127.0.0.1, gloo CPU collectives),
process-local batch slices assembled into global arrays, metrics from process
0 only, and collective Orbax saves into one workdir shared by both processes
(as a gs:// workdir is shared on a pod). The reference is the same config in a
single process with two devices: same mesh shape, same global batch, so the
same SPMD program; only the collectives differ (gloo over TCP vs in-process).
A sum over two participants is exact in any order, so the results are
expected to be bitwise equal, not just close.
"""

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from jaxadapt import checkpoint, param_tree
from jaxadapt.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'
# log at 2, 4, 6; eval at 3, 6; checkpoints at 3, 6 (smoke preset), global batch 64.
ARGS = [
    '--config',
    SMOKE,
    '--config.num_steps=6',
    '--config.log_every=2',
    '--config.eval_every=3',
    '--config.ckpt_every=3',
]
TIMEOUT = 120  # seconds for the whole test; a lost peer must fail the test, not hang CI
JAX_DIST_VARS = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID')


def _free_port() -> int:
  try:
    import portpicker

    return portpicker.pick_unused_port()
  except ImportError:
    with socket.socket() as s:
      s.bind(('127.0.0.1', 0))
      return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
  env = {k: v for k, v in os.environ.items() if k not in JAX_DIST_VARS}
  env.update(
      JAX_PLATFORMS='cpu', XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', **extra
  )
  return env


def _start(workdir, log_path, env, *flags, args=ARGS):
  log = open(log_path, 'w')
  try:
    return subprocess.Popen(
        [sys.executable, '-m', 'jaxadapt.cli', 'train', *flags, '--workdir', str(workdir), *args],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
  finally:
    log.close()  # the child holds its own descriptor


def _wait_all(procs: dict, deadline: float) -> None:
  """Waits for every process; on the first failure or the deadline the rest are killed."""
  pending = dict(procs)
  while pending:
    for name, proc in list(pending.items()):
      if proc.poll() is not None:
        del pending[name]
        if proc.returncode != 0:
          return  # the caller reports it; a peer of a dead process would only hang
    if time.time() > deadline:
      return
    time.sleep(0.1)


def _train_records(workdir) -> dict[int, dict]:
  records = [r for r in read_metrics(workdir) if 'train/loss' in r]
  steps = [r['step'] for r in records]
  assert steps == sorted(set(steps)), f'duplicate or unordered metric lines: {steps}'
  return {r['step']: r for r in records}


def _params(workdir) -> dict:
  flat = param_tree.flatten(checkpoint.restore_params(workdir))
  return {k: np.asarray(v) for k, v in flat.items()}


def test_two_processes_match_one_process_with_two_devices(tmp_path):
  multi, single = tmp_path / 'multi', tmp_path / 'single'
  coordinator = f'127.0.0.1:{_free_port()}'
  logs = {name: tmp_path / f'{name}.log' for name in ('process0', 'process1', 'single')}
  procs = {}
  try:
    for pid in (0, 1):
      env = _env(
          1, JAX_COORDINATOR_ADDRESS=coordinator, JAX_NUM_PROCESSES='2', JAX_PROCESS_ID=str(pid)
      )
      # Process 0 not --quiet: its log states the device count of the global mesh.
      flags = ['--distributed'] + (['--quiet'] if pid else [])
      procs[f'process{pid}'] = _start(multi, logs[f'process{pid}'], env, *flags)
    procs['single'] = _start(single, logs['single'], _env(2), '--quiet')
    _wait_all(procs, time.time() + TIMEOUT)
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
      proc.wait()
  outputs = {name: path.read_text() for name, path in logs.items()}
  # The process that failed by itself first; -9 means killed here (deadline or a failed peer).
  failed = sorted((proc.returncode == -9, name) for name, proc in procs.items() if proc.returncode)
  assert not failed, '\n\n'.join(
      f'{name} exited with {procs[name].returncode}:\n' + outputs[name][-3000:]
      for _, name in failed
  )
  assert '2 device(s)' in outputs['process0'], outputs['process0'][-4000:]

  # Process 0 alone writes metrics: one line per log step and per eval step, no duplicates.
  lines = read_metrics(multi)
  assert [r['step'] for r in lines] == [r['step'] for r in read_metrics(single)] == [2, 3, 4, 6, 6]
  a, b = _train_records(multi), _train_records(single)
  assert list(a) == list(b) == [2, 4, 6]
  np.testing.assert_allclose(
      [a[s]['train/loss'] for s in a], [b[s]['train/loss'] for s in b], rtol=1e-5
  )

  # The collective save wrote complete checkpoints into the shared workdir.
  ckpts = sorted(int(p.name) for p in (multi / 'checkpoints').iterdir() if p.name.isdigit())
  assert ckpts == [3, 6]
  pa, pb = _params(multi), _params(single)
  assert pa.keys() == pb.keys()
  for k in pa:
    np.testing.assert_allclose(pa[k], pb[k], rtol=1e-5, atol=1e-6, err_msg=k)
  for k in pa:  # two-way sums are exact in any order: expect identical bits
    assert np.array_equal(pa[k], pb[k]), f'{k}: close but not bitwise equal'


def test_a_signal_to_one_process_stops_every_process_at_the_same_step(tmp_path):
  """Catches each host stopping at its own step (the collective save then deadlocks).

  SIGTERM reaches process 1 only; JAX's preemption service must make both processes
  save the same step and exit 0. The checkpoint of that step exists only if both took
  part in its (collective) save.
  """
  wd = tmp_path / 'multi'
  coordinator = f'127.0.0.1:{_free_port()}'
  args = ARGS + ['--config.num_steps=1000000', '--config.log_every=1', '--config.ckpt_every=0']
  args += ['--config.eval_every=1000000']
  logs = {pid: tmp_path / f'process{pid}.log' for pid in (0, 1)}
  procs = {}
  try:
    for pid in (0, 1):
      env = _env(
          1, JAX_COORDINATOR_ADDRESS=coordinator, JAX_NUM_PROCESSES='2', JAX_PROCESS_ID=str(pid)
      )
      procs[pid] = _start(wd, logs[pid], env, '--distributed', '--quiet', args=args)
    deadline = time.time() + TIMEOUT
    metrics = wd / 'metrics.jsonl'
    while time.time() < deadline and all(p.poll() is None for p in procs.values()):
      if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
        procs[1].send_signal(signal.SIGTERM)
        break
      time.sleep(0.05)
    _wait_all(procs, deadline)
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
      proc.wait()
  outputs = {pid: path.read_text() for pid, path in logs.items()}
  for pid, proc in procs.items():
    assert proc.returncode == 0, f'process {pid} exited {proc.returncode}:\n' + outputs[pid][-3000:]
  message = [l for l in outputs[0].splitlines() if l.startswith('stopped by signal at step')]
  assert len(message) == 1, outputs[0][-3000:]
  step = int(message[0].split('at step ')[1].split(';')[0])
  assert sorted(int(p.name) for p in (wd / 'checkpoints').iterdir()) == [step]
  assert max(r['step'] for r in read_metrics(wd)) == step
