"""SIGTERM mid-run, then resume: final parameters bitwise equal to an uninterrupted run."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

from jaxadapt import checkpoint, param_tree

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'
STEPS = [
    '--config.num_steps=30',
    '--config.log_every=1',
    '--config.ckpt_every=10',
    '--config.eval_every=30',
]


def _train(workdir, **popen):
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=1'}
  return subprocess.Popen(
      [
          sys.executable,
          '-m',
          'jaxadapt.cli',
          'train',
          '--quiet',
          '--config',
          SMOKE,
          '--workdir',
          str(workdir),
          *STEPS,
      ],
      env=env,
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      **popen,
  )


def _params(workdir):
  return param_tree.flatten(checkpoint.restore_params(workdir))


def test_sigterm_then_resume_is_bitwise_identical(tmp_path):
  full = _train(tmp_path / 'full')
  assert full.wait(timeout=300) == 0, full.stdout.read()

  wd = tmp_path / 'interrupted'
  proc = _train(wd)
  metrics = wd / 'metrics.jsonl'
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:  # mid-run, not at a save
      proc.send_signal(signal.SIGTERM)
      break
    time.sleep(0.05)
  out = proc.communicate(timeout=300)[0]
  assert proc.returncode == 0, out
  assert 'stopped by signal' in out, out
  stopped_at = max(int(p.name) for p in (wd / 'checkpoints').iterdir() if p.name.isdigit())
  assert 0 < stopped_at < 30

  resumed = _train(wd)
  out = resumed.communicate(timeout=300)[0]
  assert resumed.returncode == 0, out
  a, b = _params(tmp_path / 'full'), _params(wd)
  assert a.keys() == b.keys()
  for k in a:
    assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k
