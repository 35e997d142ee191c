"""Run-list (reproduction) suites: runner, dependencies, resume, reports and errors."""

import json
import pathlib
import shutil

import pytest

from jaxadapt import cli
from jaxadapt.bench import repro_report, runlist, runner
from jaxadapt.errors import UserError
from shared_runs import bench_records, quick_bench

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRANSFER = str(ROOT / 'configs/suites/transferability.py')


@pytest.fixture(scope='module')
def transfer(tmp_path_factory):
  return quick_bench(tmp_path_factory.mktemp('repro') / 'transfer', TRANSFER)


def test_transferability_quick_writes_every_variant_report_and_figure(transfer):
  records = bench_records(transfer)
  variants = {(r['tags']['variant'], r['tags'].get('n')) for r in records}
  assert variants == {('baseA', None), ('baseB', None)} | {
      (v, n) for v in ('BnB', 'BnB+', 'AnB', 'AnB+') for n in (2, 6)
  }
  report = (transfer / 'report.md').read_text()
  assert '| AnB+ |' in report and 'n=6' in report and 'Quick variant' in report
  assert (transfer / 'transferability.png').stat().st_size > 5000
  # Bases are kept (later runs read them); the others are deleted after their record.
  assert (transfer / 'runs/s0/baseA/config.json').exists()
  assert not (transfer / 'runs/s0/AnB/2').exists()


def test_transferability_copies_freezes_and_reinitialises(transfer):
  by_name = {r['cell']: r for r in bench_records(transfer)}
  frozen, plus = by_name['s0/AnB/2'], by_name['s0/AnB+/2']
  base_a = transfer / 'runs/s0/baseA'
  assert frozen['config']['init']['checkpoint'] == str(base_a)
  assert plus['config']['init']['checkpoint'] == str(base_a)
  # Two conv layers of 2 channels frozen: (1*2*9 + 2) + (2*2*9 + 2) = 58 parameters.
  assert frozen['total_params'] - frozen['trainable_params'] == 58
  assert plus['trainable_params'] == plus['total_params']
  assert frozen['config']['dataset']['classes'] == by_name['s0/baseB']['tags']['classes']


def test_rerun_skips_finished_runs_and_report_is_stable(transfer, capsys):
  before = (transfer / 'results.jsonl').read_text()
  report = (transfer / 'report.md').read_text()
  assert cli.main(['bench', '--suite', TRANSFER, '--out', str(transfer), '--quick']) == 0
  assert ', 0 to run' in capsys.readouterr().out
  assert (transfer / 'results.jsonl').read_text() == before
  assert cli.main(['report', str(transfer)]) == 0
  assert (transfer / 'report.md').read_text() == report


def _suite(tmp_path, runs: str) -> str:
  path = tmp_path / 'suite.py'
  path.write_text(
      'import ml_collections\n'
      'def get_suite(arg=None):\n'
      '  s = ml_collections.ConfigDict()\n'
      "  s.report = 'table'\n"
      f'  s.runs = {runs}\n'
      '  return s\n'
  )
  return str(path)


@pytest.mark.parametrize(
    'runs, message',
    [
        (
            "[dict(name='a', config='x.py'), dict(name='a', config='x.py')]",
            "two runs are named 'a'",
        ),
        (
            "[dict(name='b', config='x.py:base={run:a}'), dict(name='a', config='x.py')]",
            "uses {run:a}, which is not an earlier run; list 'a' before 'b'",
        ),
        ("[dict(name='a b', config='x.py')]", "needs a 'name'"),
        ("[dict(name='a')]", "run 'a' needs a 'config' file"),
        ('[]', 'lists no runs'),
    ],
)
def test_bad_run_lists_fail_before_any_run(tmp_path, runs, message):
  with pytest.raises(runner.SuiteError, match=message.replace('{', r'\{').replace('+', r'\+')):
    runlist.load(_suite(tmp_path, runs))


def test_bad_override_fails_before_any_run(tmp_path, capsys):
  spec = _suite(tmp_path, "[dict(name='a', config='configs/mnist_like_missing.py')]")
  assert cli.main(['bench', '--suite', spec, '--out', str(tmp_path / 'out')]) == 2
  assert 'config file not found: configs/mnist_like_missing.py' in capsys.readouterr().err
  assert not (tmp_path / 'out').exists()


def test_quick_and_full_results_never_mix(transfer, capsys):
  assert cli.main(['bench', '--suite', TRANSFER, '--out', str(transfer)]) == 2
  assert (
      'holds a transferability suite (--quick); write this transferability suite to another '
      '--out' in capsys.readouterr().err
  )


def _write(out: pathlib.Path, meta: dict, records: list[dict]) -> None:
  out.mkdir(parents=True, exist_ok=True)
  (out / 'suite.json').write_text(json.dumps(meta))
  (out / 'results.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))


def _rec(cell, acc, **tags):
  return {
      'cell': cell,
      'test_accuracy': acc,
      'wall_seconds': 60.0,
      'total_params': 1000,
      'tags': tags,
  }


def test_distillation_report_gap_closed_and_errors(tmp_path):
  records = [
      _rec('t', 0.99, role='teacher'),
      _rec('a0', 0.90, role='alone', seed=0),
      _rec('a1', 0.92, role='alone', seed=1),
      _rec('d0', 0.96, role='distilled', temperature=4.0, seed=0),
      _rec('d1', 0.96, role='distilled', temperature=4.0, seed=1),
      _rec('d2', 0.91, role='distilled', temperature=1.0, seed=0),
  ]
  _write(tmp_path, {'report': 'distillation', 'test_examples': 1000}, records)
  text, plots = repro_report.write_report(tmp_path)
  # alone = 0.91, teacher = 0.99: T=4 closes (0.96 - 0.91) / 0.08 = 62.5% of the gap.
  assert '| distilled, T=4 | 1,000 | 96.0 ± 0.0 | 40 | 62% | 2 of 2 |' in text
  assert '| student alone | 1,000 | 91.0 ± 1.4 | 90 | 0% | |' in text
  assert '| distilled, T=1 | 1,000 | 91.0 | 90 | 0% | 1 of 1 |' in text  # 0.91 > seed 0's 0.90
  assert 'test errors (of 1,000)' in text
  assert pathlib.Path(plots[0]).stat().st_size > 5000


def test_table_report_puts_published_beside_ours(tmp_path):
  records = [
      _rec('a', 0.30, model='linear', positions='fixed', seed=0),
      _rec('b', 0.34, model='linear', positions='fixed', seed=1),
      _rec('c', 0.90, model='cnn', positions='shuffled', seed=0),
  ]
  _write(
      tmp_path,
      {
          'report': 'table',
          'table': {'rows': 'model', 'columns': 'positions'},
          'published': {'linear': {'fixed': 0.32}, 'cnn': {'shuffled': 0.56}},
      },
      records,
  )
  text, _ = repro_report.write_report(tmp_path)
  assert '| linear | 32.0 ± 2.8 / 32 | - |' in text
  assert '| cnn | - | 90.0 / 56 |' in text


def test_report_errors_name_the_fix(tmp_path, capsys):
  assert cli.main(['report', str(tmp_path)]) == 2  # neither kind of results here
  _write(tmp_path, {'report': 'nope'}, [])
  with pytest.raises(UserError, match="unknown report 'nope'; known: transferability, table"):
    repro_report.write_report(tmp_path)


@pytest.mark.parametrize(
    'suite, rows, png',
    [
        ('mnist1d', ['| linear |', '| mlp |', '| cnn1d |', '| gru |'], None),
        (
            'distillation',
            ['| teacher |', '| student alone |', '| distilled, T=2 |', '| distilled, T=8 |'],
            'distillation_vs_temperature.png',
        ),
    ],
)
def test_mnist1d_suites_quick(tmp_path, suite, rows, png):
  out = quick_bench(tmp_path / suite, ROOT / f'configs/suites/{suite}.py')
  report = (out / 'report.md').read_text()
  for row in rows:
    assert row in report
  if png:
    assert (out / png).stat().st_size > 5000
  records = bench_records(out)
  if suite == 'mnist1d':  # ours beside the paper's number in every cell
    assert '| cnn1d | ' in report and ' / 94 | ' in report and ' / 56 |' in report
    assert {r['tags']['positions'] for r in records} == {'ordered', 'shuffled'}
    shuffled = next(r for r in records if r['tags']['positions'] == 'shuffled')
    assert shuffled['config']['preprocess']['train'] == 'permute(42)'
  else:  # students read the teacher's workdir, which is kept
    teacher = out / 'runs' / 'teacher'
    assert all(
        r['config']['distill']['teachers'] == [str(teacher)]
        for r in records
        if r['tags']['role'] == 'distilled'
    )
    assert (teacher / 'config.json').exists()


def test_dependent_run_whose_base_is_gone_names_the_fix(tmp_path, capsys):
  config = str(ROOT / 'configs/mnist1d/train.py') + ':model=linear,smoke'
  spec = _suite(
      tmp_path,
      f"[dict(name='a', config='{config}'), dict(name='b', config='{config}', "
      f"overrides=('init.checkpoint={{run:a}}',))]",
  )
  out = tmp_path / 'out'
  assert cli.main(['bench', '--suite', spec, '--out', str(out)]) == 0
  b = next(r for r in bench_records(out) if r['cell'] == 'b')
  assert b['config']['init']['checkpoint'] == str(out / 'runs' / 'a')
  assert (out / 'runs/a/config.json').exists() and not (out / 'runs/b').exists()
  # Lose a's workdir and b's record: b cannot run again, and the error says what to do.
  shutil.rmtree(out / 'runs' / 'a')
  lines = (out / 'results.jsonl').read_text().splitlines()
  (out / 'results.jsonl').write_text(''.join(l + '\n' for l in lines if '"cell": "b"' not in l))
  assert cli.main(['bench', '--suite', spec, '--out', str(out)]) == 2
  err = capsys.readouterr().err
  assert "run 'b' needs the workdir of 'a', which is gone" in err and 'results.jsonl' in err
