"""Bad input is one line on stderr and exit status 2, before anything is written.

Each case was a silent wrong run (exit 0) or a traceback before; the message must name the
key or file and the fix, and the workdir must not exist afterwards.
"""

import os
import pathlib

import numpy as np
import pytest

from jaxadapt import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'


def run(capsys, *args):
  code = cli.main(list(args))
  return code, capsys.readouterr().err


def assert_one_line(code, err, *fragments):
  assert code == 2, err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('jaxadapt: error:'), err
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize(
    'override, fragments',
    [
        ('optim.lr=-1', ['optim.lr=-1.0 must be > 0']),
        ('optim.lr=0', ['optim.lr=0.0 must be > 0']),
        ('optim.grad_clip=-1', ['optim.grad_clip=-1.0 must be >= 0']),
        ('num_steps=-5', ['num_steps=-5 must be >= 0']),
        ('num_epochs=-1', ['num_epochs=-1.0 must be > 0 when num_steps is 0']),
        ('keep_ckpts=0', ['keep_ckpts=0 must be >= 1', 'trained model is lost']),
        ('dataset.examples_per_class=-3', ['dataset.examples_per_class=-3 must be >= 0']),
        ("optim.lr_rules=(('head/.*', -5.0), ('.*', 1.0))", ['multiplier -5', 'adapt.trainable']),
        ("optim.lr_rules=(('.*', 'fast'),)", ["optim.lr_rules: value 'fast'", 'not a number']),
        ('dataset.train_split=train[100:50]', ["dataset.train_split='train[100:50]'", 'no examp']),
        ('dataset.val_split=train[7:7]', ["dataset.val_split='train[7:7]' selects no examples"]),
        ('dataset.test_split=tset', ["dataset.test_split='tset'", 'Unknown split']),
        ('adapt.fast_probe=lasso', ["unknown adapt.fast_probe 'lasso'", 'ridge or softmax']),
    ],
)
def test_bad_value_is_one_line_before_anything_is_written(tmp_path, capsys, override, fragments):
  wd = tmp_path / 'run'
  extra = ['--config.num_steps=0'] if override.startswith('num_epochs') else []
  code, err = run(
      capsys,
      'train',
      '--quiet',
      '--config',
      SMOKE,
      '--workdir',
      str(wd),
      *extra,
      f'--config.{override}',
  )
  assert_one_line(code, err, *fragments)
  assert not wd.exists()


def test_zero_steps_and_zero_epochs_is_an_error(tmp_path, capsys):
  """Catches a run that exits 0 after training nothing."""
  wd = tmp_path / 'run'
  args = ['--config.num_steps=0', '--config.num_epochs=0']
  code, err = run(capsys, 'train', '--config', SMOKE, '--workdir', str(wd), *args)
  assert_one_line(code, err, 'num_epochs=0.0 must be > 0 when num_steps is 0')
  assert not wd.exists()


def test_fast_probe_checks_its_values_before_writing(tmp_path, capsys):
  wd = tmp_path / 'run'
  args = ['--config.adapt.fast_probe=ridge', '--config.keep_ckpts=0']
  code, err = run(capsys, 'train', '--config', SMOKE, '--workdir', str(wd), *args)
  assert_one_line(code, err, 'keep_ckpts=0')
  assert not wd.exists()


def _random_file(path: pathlib.Path) -> pathlib.Path:
  path.write_bytes(np.random.default_rng(0).bytes(4096))
  return path


@pytest.mark.parametrize('name', ['weights.npz', 'weights.safetensors', 'weights.bin'])
def test_unreadable_init_checkpoint_names_the_key(tmp_path, capsys, name):
  """Catches numpy's pickle advice / a 25-line traceback for a random checkpoint file."""
  path = _random_file(tmp_path / name)
  wd = tmp_path / 'run'
  code, err = run(
      capsys,
      'train',
      '--config',
      SMOKE,
      '--workdir',
      str(wd),
      f'--config.init.checkpoint={path}',
  )
  assert_one_line(code, err, f'init.checkpoint={path}')
  assert not wd.exists()


def test_missing_init_adapters_is_named_as_init_adapters(tmp_path, capsys):
  """Catches a missing adapter file reported as init.checkpoint with the wrong fix."""
  wd, missing = tmp_path / 'run', tmp_path / 'lora.safetensors'
  code, err = run(
      capsys, 'train', '--config', SMOKE, '--workdir', str(wd), f'--config.init.adapters={missing}'
  )
  assert_one_line(code, err, f'init.adapters not found: {missing}', '--mode adapters')
  assert 'init.checkpoint' not in err
  assert not wd.exists()
  garbage = _random_file(tmp_path / 'garbage.safetensors')
  code, err = run(
      capsys, 'train', '--config', SMOKE, '--workdir', str(wd), f'--config.init.adapters={garbage}'
  )
  assert_one_line(code, err, f'init.adapters={garbage} is not a readable .safetensors')
  assert not wd.exists()


def test_perf_with_zero_steps(capsys):
  code, err = run(capsys, 'perf', '--config', SMOKE, '--steps', '0')
  assert_one_line(code, err, 'perf --steps 0', '>= 1')


def test_every_shipped_config_passes_validation():
  """validate() must not reject the project's own configs (defaults and smoke variants)."""
  from jaxadapt import config as config_lib, validate

  files = sorted((ROOT / 'configs').rglob('*.py'))
  checked = 0
  for path in files:
    if 'suites' in path.parts or 'reproductions' in path.parts:
      continue
    for arg in ('', 'smoke'):
      try:
        config = config_lib.load_config(f'{path}:{arg}' if arg else str(path))
      except config_lib.ConfigError:
        continue  # a file without a smoke argument
      validate.validate(config)
      checked += 1
  assert checked >= 10, checked
