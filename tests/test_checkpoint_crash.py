"""A checkpoint left half-written by `kill -9` during a save is ignored on resume.

Orbax (0.12 on a local or NFS path) saves step N into `N.orbax-checkpoint-tmp/`
(item inside as `default.orbax-checkpoint-tmp/`) and renames both to their final
names only when every file is written; `commit_success.txt` is written too, but
on non-GCS paths the rename is what marks a step as finished (a directory named
`N` counts as complete with or without it). The manager lists finished steps
only, and the next save of step N deletes the leftover temporary directory.

Two tests, both compared bitwise with one uninterrupted 9-step run (checkpoints
every 3 steps, the last 2 kept):

* fabricated, deterministic: a workdir holding the finished checkpoint 6 and
  the reference's checkpoint 9 turned into what a killed save leaves behind:
  the temporary names, no commit files, no metadata or manifests, data files
  cut in half (the state seen when listing a real save of this model every
  millisecond). Resuming must start from 6, not the fake 9.
* real: the trainer is sent SIGKILL the moment the save of step 6 has started
  writing its data (the save takes ~150 ms; we poll every millisecond), then
  resumed; it must start from step 3.
"""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxadapt import checkpoint, param_tree
from jaxadapt.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'
ARGS = [
    '--config',
    SMOKE,
    '--config.num_steps=9',
    '--config.ckpt_every=3',
    '--config.keep_ckpts=2',
    '--config.log_every=2',
    '--config.eval_every=3',
]
TMP = '.orbax-checkpoint-tmp'
TIMEOUT = 300  # generous: a loaded 2-core machine runs this 9-step smoke run in minutes


def _command(workdir, quiet=True):
  return [
      sys.executable,
      '-m',
      'jaxadapt.cli',
      'train',
      *(['--quiet'] if quiet else []),
      '--workdir',
      str(workdir),
      *ARGS,
  ]


def _env():
  return {
      **os.environ,
      'JAX_PLATFORMS': 'cpu',
      'XLA_FLAGS': '--xla_force_host_platform_device_count=1',
  }


def _train(workdir, quiet=True) -> str:
  proc = subprocess.run(
      _command(workdir, quiet),
      env=_env(),
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      timeout=TIMEOUT,
  )
  assert proc.returncode == 0, proc.stdout[-4000:]
  return proc.stdout


def _params(workdir) -> dict:
  flat = param_tree.flatten(checkpoint.restore_params(workdir))
  return {k: np.asarray(v) for k, v in flat.items()}


def _assert_bitwise_equal(a: dict, b: dict) -> None:
  assert a.keys() == b.keys()
  for k in a:
    assert np.array_equal(a[k], b[k]), k


def _steps(workdir) -> list[str]:
  return sorted(p.name for p in (workdir / 'checkpoints').iterdir())


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  _train(workdir)
  assert _steps(workdir) == ['6', '9']
  return workdir


def _half_write(step_dir: pathlib.Path) -> pathlib.Path:
  """Turns a finished step directory into what a save killed mid-write leaves."""
  tmp = step_dir.with_name(step_dir.name + TMP)
  step_dir.rename(tmp)
  (tmp / 'default').rename(tmp / f'default{TMP}')
  for path in sorted(tmp.rglob('*'), reverse=True):
    if path.name in ('commit_success.txt', '_METADATA', 'manifest.ocdbt'):
      path.unlink()
    elif path.is_file() and path.parent.name == 'd':  # array data: cut mid-write
      path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  return tmp


def test_fabricated_half_written_step_is_ignored(reference, tmp_path):
  workdir = tmp_path / 'crashed'
  (workdir / 'checkpoints').mkdir(parents=True)
  for step in ('6', '9'):
    shutil.copytree(reference / 'checkpoints' / step, workdir / 'checkpoints' / step)
  fake = _half_write(workdir / 'checkpoints' / '9')
  assert _steps(workdir) == ['6', f'9{TMP}']

  out = _train(workdir, quiet=False)
  assert 'resumed from step 6' in out, out[-4000:]
  # Steps 7-9 were trained here: train metrics logged at 8 and at the last step, eval at 9.
  assert [(r['step'], 'train/loss' in r) for r in read_metrics(workdir)] == [
      (8, True),
      (9, True),
      (9, False),
  ]
  assert not fake.exists()  # the save of step 9 replaced the leftover
  assert _steps(workdir) == ['6', '9']
  _assert_bitwise_equal(_params(reference), _params(workdir))


def _kill_during_save(workdir: pathlib.Path) -> list[str]:
  """Runs the trainer, SIGKILLs it once the save of step 6 has started; returns the steps left."""
  saving = workdir / 'checkpoints' / f'6{TMP}' / f'default{TMP}'
  proc = subprocess.Popen(
      _command(workdir),
      env=_env(),
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )
  killed_mid_save = False
  try:
    deadline = time.time() + TIMEOUT
    while proc.poll() is None and time.time() < deadline:
      if saving.exists():  # the save of step 6 is writing its item: kill now
        proc.send_signal(signal.SIGKILL)
        killed_mid_save = True
        break
      time.sleep(0.001)
  finally:
    if proc.poll() is None:
      proc.kill()  # on the deadline or an error here: never leave it running
    out = proc.communicate(timeout=60)[0]
  assert killed_mid_save, f'exited {proc.returncode} before saving step 6\n{out[-4000:]}'
  assert proc.returncode == -signal.SIGKILL, out[-4000:]
  return _steps(workdir)


def test_kill_9_during_save_then_resume(reference, tmp_path):
  # The save takes ~150 ms and we poll every millisecond, but a stalled machine can let
  # the final rename win the race against SIGKILL: try again in a fresh workdir.
  for attempt in range(3):
    workdir = tmp_path / f'killed{attempt}'
    steps = _kill_during_save(workdir)
    if '6' not in steps:
      break
  if '6' in steps:
    # Never caught mid-save (the fabricated test above covers that state deterministically);
    # a kill right after a finished save must still resume from it, bitwise.
    assert steps[-1] == '6', steps
    resumed_from = 6
  else:
    assert steps == ['3', f'6{TMP}'], steps
    resumed_from = 3

  out = _train(workdir, quiet=False)
  assert f'resumed from step {resumed_from}' in out, out[-4000:]
  assert _steps(workdir) == ['6', '9']
  _assert_bitwise_equal(_params(reference), _params(workdir))
