"""optim.ema: the moving average of the trainable parameters that evaluation and loading use."""

import json
import pathlib
import shutil

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from safetensors.numpy import load_file

from jaxadapt import checkpoint, cli, defaults, ema, optim, param_tree
from jaxadapt.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'
LORA_SMOKE = str(ROOT / 'configs/methods/lora.py') + ':model=cnn,smoke'


def test_average_follows_the_warmed_up_formula():
  """Catches a swapped decay (d * new + (1 - d) * old), a missing warm-up, or averaging the
  parameters before the update instead of after it."""
  decay, lr = 0.9, 0.5
  tx = optax.chain(optax.sgd(lr), ema.track(decay))
  params = {'w': jnp.array([1.0, -2.0])}
  state = tx.init(params)
  expected = np.array([1.0, -2.0])
  for t in range(30):
    grads = {'w': jnp.array([0.3, 0.1]) * (t + 1)}
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    d = min(decay, (1 + t) / (10 + t))
    expected = d * expected + (1 - d) * np.asarray(params['w'])
  np.testing.assert_allclose(np.asarray(ema.averages(state)['w']), expected, rtol=1e-6)
  # Evaluation sees the average, not the last parameters.
  np.testing.assert_allclose(np.asarray(ema.ema_params(params, state)['w']), expected, rtol=1e-6)
  assert not np.allclose(expected, np.asarray(params['w']))


def test_only_trainable_leaves_are_averaged():
  """Catches an average over the frozen base too: for LoRA on a large model that would
  double the frozen memory the method exists to save."""
  cfg = defaults.base_config().optim
  cfg.ema = 0.99
  cfg.wd_rules = (('.*', 1.0),)  # no biases here: the default's bias rule would match nothing
  params = {'base': {'kernel': jnp.ones((3, 3))}, 'head': {'kernel': jnp.ones((3, 2))}}
  trainable = {'base/kernel': False, 'head/kernel': True}
  groups = optim.param_groups(cfg, param_tree.flatten(params), trainable)
  tx = optim.make_optimizer(cfg, groups, total_steps=10)
  assert set(ema.averages(tx.init(params))) == {'head/kernel'}


def run(capsys, *args):
  code = cli.main(['train', '--quiet', *args])
  err = capsys.readouterr().err
  assert code == 0, err


def test_resume_continues_the_average_bitwise_and_loading_gives_it(tmp_path, capsys):
  """Catches an average that is not saved with the train state (a resumed run would restart
  it from the resumed parameters) and a load that ignores it."""
  whole, resumed = tmp_path / 'whole', tmp_path / 'resumed'
  args = ['--config', SMOKE, '--config.optim.ema=0.9']
  run(capsys, *args, '--workdir', str(whole))
  run(capsys, *args, '--workdir', str(resumed))
  # Interrupt `resumed` after its step-3 checkpoint: drop what came after, then rerun.
  shutil.rmtree(resumed / 'checkpoints' / '6')
  (resumed / ema.FILE).unlink()
  run(capsys, *args, '--workdir', str(resumed))

  a, b = load_file(str(whole / ema.FILE)), load_file(str(resumed / ema.FILE))
  assert set(a) == set(b) and a
  for k in a:
    assert np.array_equal(a[k], b[k]), k

  loaded = param_tree.flatten(checkpoint.restore_params(whole))
  raw = param_tree.flatten(checkpoint._read_params(whole / 'checkpoints' / '6' / 'default'))
  for k in a:
    assert np.array_equal(np.asarray(loaded[k]), a[k]), k
  assert any(not np.array_equal(np.asarray(raw[k]), a[k]) for k in a)
  # The average changes what is evaluated, never how the run trains.
  plain = tmp_path / 'plain'
  run(capsys, '--config', SMOKE, '--workdir', str(plain))
  train = lambda wd: [r['train/loss'] for r in read_metrics(wd) if 'train/loss' in r]
  final = lambda wd: [r['val/loss'] for r in read_metrics(wd) if 'val/loss' in r][-1]
  assert train(whole) == train(plain)
  assert final(whole) != final(plain)
  summary = json.loads((whole / 'summary.json').read_text())
  assert summary['val/loss'] == final(whole)


def test_a_stale_average_is_not_loaded(tmp_path, capsys):
  """A run stopped before its end has a checkpoint newer than its averages: loading must
  not mix the old average into the newer parameters."""
  wd = tmp_path / 'run'
  run(capsys, '--config', SMOKE, '--config.optim.ema=0.9', '--workdir', str(wd))
  shutil.copy(wd / ema.FILE, tmp_path / 'old')
  run(
      capsys,
      '--config',
      SMOKE,
      '--config.optim.ema=0.9',
      '--config.num_steps=9',
      '--workdir',
      str(wd),
  )
  shutil.copy(tmp_path / 'old', wd / ema.FILE)  # the step-6 averages beside a step-9 checkpoint
  loaded = param_tree.flatten(checkpoint.restore_params(wd))
  raw = param_tree.flatten(checkpoint._read_params(wd / 'checkpoints' / '9' / 'default'))
  for k in raw:
    assert np.array_equal(np.asarray(loaded[k]), np.asarray(raw[k])), k


def test_ema_outside_0_1_is_one_line_error(tmp_path, capsys):
  code = cli.main(
      ['train', '--config', SMOKE, '--workdir', str(tmp_path / 'w'), '--config.optim.ema=1.0']
  )
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1 and 'optim.ema' in err, err
  assert not (tmp_path / 'w').exists()
