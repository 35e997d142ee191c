"""Workdir integrity: one run per workdir, resumes that cannot silently go wrong.

Each test works on a copy of one finished smoke run (checkpoints 3 and 6) and names the
failure it guards against.
"""

import json
import os
import pathlib
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxadapt import checkpoint, cli, cost, param_tree
from jaxadapt.metrics import read_metrics

from shared_runs import trained_run

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'


@pytest.fixture(scope='module')
def base(tmp_path_factory):
  return trained_run(tmp_path_factory, 'smoke_scratch', SMOKE)


@pytest.fixture
def wd(base, tmp_path):
  """A private copy of the finished run."""
  shutil.copytree(base, tmp_path / 'run')
  return tmp_path / 'run'


def run(capsys, *args):
  code = cli.main(['train', '--quiet', '--config', SMOKE, *args])
  out = capsys.readouterr()
  return code, out.err


def snapshot(workdir) -> dict:
  return {
      str(p.relative_to(workdir)): p.read_bytes()
      for p in sorted(pathlib.Path(workdir).rglob('*'))
      if p.is_file()
  }


def params(path) -> dict:
  return {k: np.asarray(v) for k, v in param_tree.flatten(checkpoint.restore_params(path)).items()}


def assert_bitwise_equal(a, b):
  assert a.keys() == b.keys()
  for k in a:
    assert np.array_equal(a[k], b[k]), k


def one_line(err: str) -> str:
  lines = [l for l in err.splitlines() if l.strip()]
  assert len(lines) == 1, err
  return lines[0]


# ------------------------------------------------------------------------ the lock


def test_a_live_lock_refuses_a_second_run_and_changes_nothing(wd, capsys):
  """Catches two runs on one workdir (every metrics line twice, a crash in the second)."""
  holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
  try:
    lock = {'pid': holder.pid, 'host': socket.gethostname(), 'since': time.time()}
    (wd / '.lock').write_text(json.dumps(lock))
    before = snapshot(wd)
    code, err = run(capsys, '--workdir', str(wd), '--config.num_steps=8')
    assert code == 2
    line = one_line(err)
    assert 'is in use by another run' in line and f'pid {holder.pid}' in line, line
    assert snapshot(wd) == before  # the lock stays with its owner, nothing else written
  finally:
    holder.kill()
    holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(wd, capsys):
  """Catches a kill -9 leaving a workdir locked for ever."""
  gone = subprocess.run(
      [sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True
  )
  dead_pid = int(gone.stdout)
  lock = {'pid': dead_pid, 'host': socket.gethostname(), 'since': time.time()}
  (wd / '.lock').write_text(json.dumps(lock))
  code, err = run(capsys, '--workdir', str(wd), '--config.num_steps=8')
  assert code == 0, err
  assert f'removing the stale lock' in err and f'pid {dead_pid}' in err, err
  assert not (wd / '.lock').exists()  # released at the end of the run


def test_two_real_runs_on_one_workdir(tmp_path, capsys):
  """A running trainer holds the lock; a second run fails in one line; the lock ends with it."""
  wd = tmp_path / 'shared'
  env = {
      **os.environ,
      'JAX_PLATFORMS': 'cpu',
      'XLA_FLAGS': '--xla_force_host_platform_device_count=1',
  }
  first = subprocess.Popen(
      [sys.executable, '-m', 'jaxadapt.cli', 'train', '--quiet', '--config', SMOKE]
      + ['--workdir', str(wd), '--config.num_steps=100000', '--config.log_every=1'],
      env=env,
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )
  try:
    deadline = time.time() + 120
    while not (wd / 'metrics.jsonl').exists() and first.poll() is None and time.time() < deadline:
      time.sleep(0.1)
    assert first.poll() is None, first.stdout.read()
    lines_before = len((wd / 'metrics.jsonl').read_text().splitlines())
    code, err = run(capsys, '--workdir', str(wd), '--config.num_steps=100000')
    assert code == 2 and 'is in use by another run' in one_line(err), err
    first.send_signal(signal.SIGTERM)
    out = first.communicate(timeout=120)[0]
  finally:
    if first.poll() is None:
      first.kill()
      first.wait()
  assert first.returncode == 0, out
  assert not (wd / '.lock').exists()
  steps = [r['step'] for r in read_metrics(wd) if 'train/loss' in r]
  assert len(steps) >= lines_before and steps == sorted(set(steps))  # one writer, no repeats


# --------------------------------------------------------------- resuming with a changed config


def test_resume_with_another_model_is_refused_before_anything_is_written(wd, capsys):
  """Catches config.json/params.* rewritten for a model the checkpoint does not hold."""
  before = snapshot(wd)
  code, err = run(capsys, '--workdir', str(wd), '--config.model.kwargs.dense=32')
  assert code == 2
  line = one_line(err)
  assert 'cannot resume' in line and 'params/dense/kernel' in line, line
  assert 'model.kwargs.dense' in line, line  # the config key that changed
  assert snapshot(wd) == before


def test_resume_with_another_lr_warns_and_records_from_which_step(wd, capsys):
  """Catches a changed lr recorded in config.json as if every step had used it."""
  code, err = run(capsys, '--workdir', str(wd), '--config.num_steps=8', '--config.optim.lr=0.01')
  assert code == 0, err
  assert 'warning: resuming' in err and 'optim.lr 0.002 -> 0.01' in err, err
  (record,) = [json.loads(l) for l in (wd / 'config_changes.jsonl').read_text().splitlines()]
  assert record == {'step': 6, 'changes': {'num_steps': [6, 8], 'optim.lr': [0.002, 0.01]}}
  assert json.loads((wd / 'config.json').read_text())['optim']['lr'] == 0.01


# ----------------------------------------------------------- metrics after a crash


def _tb_events(path):
  """(step, session_log_status, [tags]) of every event in a TensorBoard events file."""
  from tensorboardX.proto import event_pb2

  data, out, pos = path.read_bytes(), [], 0
  while pos < len(data):
    (length,) = struct.unpack('<Q', data[pos : pos + 8])
    event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
    pos += 12 + length + 4
    tags = [v.tag for v in event.summary.value]
    out.append((event.step, event.session_log.status if event.HasField('session_log') else 0, tags))
  return out


def test_metrics_after_the_resumed_step_are_dropped(base, wd, capsys):
  """Catches metrics.jsonl keeping the records of steps trained again after a crash."""
  # As if killed after logging step 6 but before its checkpoint was written.
  shutil.rmtree(wd / 'checkpoints' / '6')
  code, err = run(capsys, '--workdir', str(wd))
  assert code == 0, err
  again, first = read_metrics(wd), read_metrics(base)
  assert [r['step'] for r in again] == [r['step'] for r in first] == [2, 3, 4, 6, 6]
  # Step 4's train record now averages step 4 alone (the window restarted at 3); the rest
  # is the same run again, bit for bit.
  for a, b in [(again[i], first[i]) for i in (0, 1, 3, 4)]:
    assert {k: v for k, v in a.items() if 'per_sec' not in k} == {
        k: v for k, v in b.items() if 'per_sec' not in k
    }
  # TensorBoard: the resumed writer starts with a purge of every step after 3.
  files = sorted((wd / 'tensorboard').iterdir(), key=lambda p: p.stat().st_mtime)
  events = _tb_events(files[-1])
  from tensorboardX.proto import event_pb2

  assert (4, event_pb2.SessionLog.START, []) in events[:3], events[:3]


# ---------------------------------------------------------------- non-finite loss


def test_a_diverging_run_stops_and_keeps_a_checkpoint_to_resume_from(wd, capsys):
  """Catches NaN runs that finish with exit 0, NaN checkpoints and a summary with bare NaN."""
  args = ['--workdir', str(wd), '--config.num_steps=12', '--config.ckpt_every=1']
  code, err = run(capsys, *args, '--config.optim.lr=1e30', '--config.log_every=100')
  assert code == 2
  line = err.strip().splitlines()[-1]  # after the warning that the lr changed
  assert 'training diverged' in line and ' at step ' in line, err
  bad = int(line.split(' at step ')[1].split(';')[0])
  # The state saved after step bad - 1 produced the bad values: moved aside, not resumed.
  assert (wd / 'diverged_checkpoints' / str(bad - 1)).is_dir(), line
  saved = sorted(int(p.name) for p in (wd / 'checkpoints').iterdir())
  assert saved and max(saved) == bad - 2 and f'resume from step {bad - 2}' in line, (saved, line)
  for step in saved:
    assert all(np.isfinite(v).all() for v in params(wd / 'checkpoints' / str(step)).values())
  assert not any('train/loss' in r and r['step'] >= bad for r in read_metrics(wd))
  # The advice works: a sane lr resumes from that checkpoint and finishes.
  code, err = run(capsys, *args)
  assert code == 0, err
  assert json.loads((wd / 'summary.json').read_text(), parse_constant=pytest.fail)['steps'] == 12


def test_summary_json_is_strict_json(tmp_path):
  """Catches bare NaN / Infinity in summary.json (not JSON: every reader fails)."""
  cost.write_summary(tmp_path, {'test/loss': float('nan'), 'x': [float('inf'), 1.0], 'n': 3})
  got = json.loads((tmp_path / 'summary.json').read_text(), parse_constant=pytest.fail)
  assert got == {'test/loss': None, 'x': [None, 1.0], 'n': 3}


# ---------------------------------------------------------- a corrupt latest checkpoint


def _largest_data_file(step_dir):
  """The biggest OCDBT data file: array chunks (the small ones index them, or hold metadata)."""
  return max((step_dir / 'default' / 'ocdbt.process_0' / 'd').iterdir(), key=os.path.getsize)


def _delete_a_data_file(step_dir):
  _largest_data_file(step_dir).unlink()


def _truncate_a_data_file(step_dir):
  path = _largest_data_file(step_dir)
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _garble_metadata(step_dir):
  (step_dir / 'default' / '_METADATA').write_bytes(os.urandom(300))


def _empty_the_step(step_dir):
  shutil.rmtree(step_dir)
  step_dir.mkdir()


DAMAGE = [_delete_a_data_file, _truncate_a_data_file, _garble_metadata, _empty_the_step]


@pytest.mark.parametrize('damage', DAMAGE, ids=lambda f: f.__name__.strip('_'))
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(base, wd, capsys, damage):
  """Catches a damaged newest step failing the rerun with tracebacks (or being trusted)."""
  damage(wd / 'checkpoints' / '6')
  code, err = run(capsys, '--workdir', str(wd))
  assert code == 0, err
  line = one_line(err)
  assert line.startswith('warning: checkpoint step 6 is unreadable') and 'step 3' in line, line
  assert (wd / 'corrupt_checkpoints' / '6').is_dir()
  assert sorted(p.name for p in (wd / 'checkpoints').iterdir()) == ['3', '6']
  assert_bitwise_equal(params(wd), params(base))  # steps 4-6 trained again, deterministically


def test_export_falls_back_past_a_corrupt_latest_checkpoint(base, wd, capsys):
  _garble_metadata(wd / 'checkpoints' / '6')
  out = wd.parent / 'model.npz'
  code = cli.main(['export', '--workdir', str(wd), '--out', str(out), '--mode', 'full'])
  err = capsys.readouterr().err
  assert code == 0, err
  assert 'checkpoint step 6' in one_line(err) and 'using step 3' in err, err
  with np.load(out) as z:
    assert_bitwise_equal(dict(z), params(base / 'checkpoints' / '3'))


def test_no_readable_checkpoint_is_one_line(wd, capsys):
  _garble_metadata(wd / 'checkpoints' / '6')
  _empty_the_step(wd / 'checkpoints' / '3')
  before = snapshot(wd)
  code, err = run(capsys, '--workdir', str(wd))
  assert code == 2 and 'no readable checkpoint' in one_line(err), err
  assert snapshot(wd) == before
  code = cli.main(['export', '--workdir', str(wd), '--out', str(wd.parent / 'm.npz')])
  assert code == 2 and 'no readable checkpoint' in one_line(capsys.readouterr().err)


def test_export_adapters_of_a_run_that_froze_nothing_is_an_error(wd, capsys):
  """Catches `--mode adapters` silently writing the whole model of a scratch run."""
  out = wd.parent / 'adapters.safetensors'
  code = cli.main(['export', '--workdir', str(wd), '--out', str(out), '--mode', 'adapters'])
  line = one_line(capsys.readouterr().err)
  assert code == 2 and 'trained every parameter' in line and '--mode full' in line, line
  assert not out.exists()
