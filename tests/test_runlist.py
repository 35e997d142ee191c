"""The suite runner: order, dependencies, kept workdirs, resume, suite.json and its errors.

Training is replaced by a fake that writes what a run leaves behind (config.json, a
summary), so these tests check the runner alone; tests/test_bench.py and
tests/test_reproductions.py train real suites end to end.
"""

import json
import pathlib
import shutil

import pytest

from jaxadapt import cli
from jaxadapt.bench import runlist, suite as suite_lib
from shared_runs import bench_records

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / 'configs/mnist1d/train.py') + ':model=linear,smoke'


@pytest.fixture
def trained(monkeypatch):
  """Replaces training by a fake; returns the names of the runs it trained, in order."""
  names = []

  def fake_train_run(config, workdir):
    names.append(str(workdir).split('/runs/', 1)[1])
    if config.seed == 13:
      raise KeyboardInterrupt  # a crash in the middle of the run
    workdir.mkdir(parents=True)
    (workdir / 'config.json').write_text('{}')
    summary = {k: 1 for k in runlist.SUMMARY_KEYS}
    return dict(summary, model=config.model.name, **{'test/accuracy': 0.5 + config.seed / 100})

  monkeypatch.setattr(runlist, '_train_run', fake_train_run)
  return names


def _suite(tmp_path, runs: str, report: str = 'table') -> str:
  path = tmp_path / 'suite.py'
  path.write_text(
      'import ml_collections\n'
      'def get_suite(arg=None):\n'
      '  s = ml_collections.ConfigDict()\n'
      f'  s.report = {report!r}\n'
      f'  s.runs = {runs}\n'
      '  return s\n'
  )
  return str(path)


# b reads a's workdir, c reads b's; d reads nothing and nothing reads it.
CHAIN = (
    f"[dict(name='a', config='{CONFIG}', tags=dict(k=1)), "
    f"dict(name='b', config='{CONFIG}', overrides=('init.checkpoint={{run:a}}', 'seed=1')), "
    f"dict(name='g/c', config='{CONFIG}', overrides=('init.checkpoint={{run:b}}', 'seed=2')), "
    f"dict(name='d', config='{CONFIG}', overrides=('seed=3',))]"
)


def test_runs_in_order_resolves_references_and_keeps_only_read_workdirs(tmp_path, trained):
  out = tmp_path / 'out'
  records = runlist.run_suite(_suite(tmp_path, CHAIN), str(out), log=lambda *a: None)
  assert trained == ['a', 'b', 'g/c', 'd']
  assert [r['cell'] for r in records] == [r['cell'] for r in bench_records(out)] == trained
  a, b, c, d = records
  assert a['tags'] == {'k': 1} and b['tags'] == {}
  assert b['config']['init']['checkpoint'] == str(out / 'runs/a')
  assert c['config']['init']['checkpoint'] == str(out / 'runs/b')
  assert b['pretrained'] and not d['pretrained']
  assert d['test_accuracy'] == 0.53 and d['model'] == 'linear'
  assert sorted(p.name for p in (out / 'runs').iterdir()) == ['a', 'b', 'g']
  assert not (out / 'runs/g/c').exists()
  assert json.loads((out / 'suite.json').read_text()) == {'report': 'table', 'quick': False}


def test_resume_after_a_crash_runs_only_what_is_left(tmp_path, trained, capsys):
  out = tmp_path / 'out'
  spec = _suite(tmp_path, CHAIN.replace("'seed=2'", "'seed=13'"))  # g/c crashes
  with pytest.raises(KeyboardInterrupt):
    runlist.run_suite(spec, str(out))
  assert [r['cell'] for r in bench_records(out)] == ['a', 'b']
  (out / 'runs/g/c').mkdir(parents=True)  # what the crashed run left behind
  trained.clear()
  spec = _suite(tmp_path, CHAIN)
  runlist.run_suite(spec, str(out))
  assert trained == ['g/c', 'd']
  assert '4 runs, 2 already done, 2 to run' in capsys.readouterr().out
  trained.clear()
  runlist.run_suite(spec, str(out))
  assert trained == [] and len(bench_records(out)) == 4


def test_a_run_whose_base_is_gone_names_the_fix(tmp_path, trained, capsys):
  out = tmp_path / 'out'
  spec = _suite(tmp_path, CHAIN)
  runlist.run_suite(spec, str(out))
  # Lose a's workdir and b's record: b cannot run again, and the error says what to do.
  shutil.rmtree(out / 'runs' / 'a')
  lines = (out / 'results.jsonl').read_text().splitlines()
  (out / 'results.jsonl').write_text(''.join(l + '\n' for l in lines if '"cell": "b"' not in l))
  trained.clear()
  assert cli.main(['bench', '--suite', spec, '--out', str(out)]) == 2
  err = capsys.readouterr().err
  assert "run 'b' needs the workdir of 'a', which is gone" in err and 'results.jsonl' in err
  assert trained == []  # found before anything ran


def test_quick_and_full_results_never_mix(tmp_path, trained, capsys):
  out = tmp_path / 'out'
  spec = _suite(tmp_path, CHAIN)
  runlist.run_suite(spec, str(out))
  (out / 'suite.json').write_text(json.dumps({'report': 'table', 'quick': True}))
  assert cli.main(['bench', '--suite', spec, '--out', str(out)]) == 2
  assert (
      'holds a table suite (--quick); write this table suite to another --out'
      in capsys.readouterr().err
  )


def test_bad_config_fails_before_anything_is_written(tmp_path, trained, capsys):
  spec = _suite(
      tmp_path, f"[dict(name='a', config='{CONFIG}'), dict(name='b', config='configs/missing.py')]"
  )
  assert cli.main(['bench', '--suite', spec, '--out', str(tmp_path / 'out')]) == 2
  assert 'config file not found: configs/missing.py' in capsys.readouterr().err
  assert not (tmp_path / 'out').exists() and trained == []


def test_budget_fits_the_subset_and_a_subset_smaller_than_the_mesh_is_an_error(tmp_path, trained):
  # MNIST-1D with 2 examples per class: 20 training sequences on the 8 test devices.
  run = dict(
      name='t/m/2/0',
      config=CONFIG,
      overrides=('dataset.examples_per_class=2',),
      budget=dict(epochs=10.0, min=3, max=100, batch_size=64),
  )
  config = runlist.run_config(run, tmp_path)
  assert (config.batch_size, config.num_steps, config.num_epochs) == (16, 13, 0.0)
  tiny = dict(
      run, name='t/m/0.5/0', overrides=('dataset.examples_per_class=2', 'dataset.classes=(1, 2, 3)')
  )
  with pytest.raises(
      suite_lib.SuiteError, match="run 't/m/0.5/0': 6 training examples cannot fill 8"
  ):
    runlist.run_config(tiny, tmp_path)
