"""The CLI's error contract: a UserError is one line and exit 2; any other error is a bug
and keeps its traceback."""

import ast
import pathlib

import pytest

from jaxadapt import cli, fast_probe, train
from jaxadapt.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = 'configs/fashion_mnist/scratch.py:smoke'


def test_user_error_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
  def fail(*args, **kwargs):
    raise UserError('bad thing: do this instead\nsecond line')

  monkeypatch.setattr(train, 'train', fail)
  assert cli.main(['train', '--config', CONFIG, '--workdir', str(tmp_path / 'w')]) == 2
  assert capsys.readouterr().err == 'jaxadapt: error: bad thing: do this instead\n'


@pytest.mark.parametrize('error', [ValueError('inside numpy'), KeyError('x'), TypeError('t')])
def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path, error):
  def fail(*args, **kwargs):
    raise error

  monkeypatch.setattr(train, 'train', fail)
  with pytest.raises(type(error)):
    cli.main(['train', '--config', CONFIG, '--workdir', str(tmp_path / 'w')])


def test_debug_env_shows_user_error_traceback(monkeypatch, tmp_path):
  def fail(*args, **kwargs):
    raise UserError('bad')

  monkeypatch.setattr(train, 'train', fail)
  monkeypatch.setenv('JAXADAPT_DEBUG', '1')
  with pytest.raises(UserError):
    cli.main(['train', '--config', CONFIG, '--workdir', str(tmp_path / 'w')])


def test_fast_probe_config_runs_the_fast_probe_entry_point(monkeypatch, tmp_path):
  called = []
  monkeypatch.setattr(fast_probe, 'run', lambda config, workdir, quiet: called.append(workdir))
  monkeypatch.setattr(train, 'train', lambda *a, **k: pytest.fail('train() ran a fast probe'))
  argv = ['train', '--config', CONFIG, '--workdir', str(tmp_path / 'w')]
  assert cli.main(argv + ['--config.adapt.fast_probe=ridge']) == 0
  assert called == [str(tmp_path / 'w')]


def _imports(path: pathlib.Path) -> set[str]:
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module:
      names.update(f'{node.module}.{a.name}' for a in node.names)
    elif isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
  return names


def test_the_trainer_is_a_leaf():
  """Only the CLI and the bench runner import jaxadapt.train (to run a training)."""
  importers = sorted(
      str(p.relative_to(ROOT))
      for p in (ROOT / 'jaxadapt').rglob('*.py')
      if 'jaxadapt.train' in _imports(p)
  )
  assert importers == ['jaxadapt/bench/runlist.py', 'jaxadapt/cli.py']
