"""The benchmark suite end to end on a tiny suite: results, report, plots, resume, errors."""

import json
import pathlib
import shutil

import pytest

from jaxadapt import cli
from shared_runs import bench_records, quick_bench

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = str(ROOT / 'configs/suites/fashion_mnist.py') + ':tiny'


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  return quick_bench(tmp_path_factory.mktemp('bench') / 'results', TINY)


def test_quick_writes_results_report_and_plots(results):
  records = bench_records(results)
  cells = {r['cell'] for r in records}
  assert 'upstream' in cells
  methods = {r['method'] for r in records if r['task'] != 'upstream'}
  assert {'scratch', 'linear_probe_fast', 'full_ft', 'lora', 'student_alone', 'distill'} <= methods
  assert {r['task'] for r in records} == {'upstream', 'related', 'unrelated'}
  for r in records:
    assert 0.0 <= r['test_accuracy'] <= 1.0
    assert r['train_flops'] > 0 and r['wall_seconds'] > 0 and r['trainable_params'] > 0
    assert r['config']['seed'] == r['seed']
  lora = next(r for r in records if r['method'] == 'lora')
  full = next(r for r in records if r['method'] == 'full_ft' and r['task'] == lora['task'])
  assert lora['opt_state_bytes'] < full['opt_state_bytes']
  assert (
      lora['pretrained'] and not next(r for r in records if r['method'] == 'scratch')['pretrained']
  )
  report = (results / 'report.md').read_text()
  assert '## Task: related' in report and '| lora |' in report
  for png in ('accuracy_vs_data.png', 'accuracy_vs_flops.png'):
    assert (results / png).stat().st_size > 1000


def test_rerun_skips_finished_cells(results, capsys):
  before = (results / 'results.jsonl').read_text()
  assert cli.main(['bench', '--suite', TINY, '--out', str(results), '--quick']) == 0
  assert ', 0 to run' in capsys.readouterr().out
  assert (results / 'results.jsonl').read_text() == before


def test_a_torn_last_record_is_dropped_and_its_cell_runs_again(results, tmp_path, capsys):
  """Catches a crash mid-write breaking every later bench and report ('malformed JSON')."""
  out = tmp_path / 'results'
  shutil.copytree(results, out)
  path = out / 'results.jsonl'
  lines = path.read_text().splitlines(keepends=True)
  path.write_text(''.join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
  capsys.readouterr()
  assert cli.main(['bench', '--suite', TINY, '--out', str(out), '--quick']) == 0
  assert ', 1 to run' in capsys.readouterr().out
  assert [r['cell'] for r in bench_records(out)] == [json.loads(l)['cell'] for l in lines]
  assert cli.main(['report', str(out)]) == 0


def test_report_regenerates_identical_tables(results):
  before = (results / 'report.md').read_text()
  (results / 'report.md').unlink()
  assert cli.main(['report', str(results)]) == 0
  assert (results / 'report.md').read_text() == before


def test_unknown_method_and_malformed_suite(tmp_path, capsys):
  bad = tmp_path / 'bad.py'
  bad.write_text(
      pathlib.Path(TINY.split(':')[0]).read_text().replace('      lora=dict(', '      lroa=dict(')
  )
  assert cli.main(['bench', '--suite', str(bad), '--out', str(tmp_path / 'o')]) == 2
  err = capsys.readouterr().err
  assert "unknown method 'lroa'" in err and "did you mean 'lora'" in err
  empty = tmp_path / 'empty.py'
  empty.write_text(
      'import ml_collections\ndef get_suite(arg=None):\n'
      '  return ml_collections.ConfigDict({"tasks": {}})\n'
  )
  assert cli.main(['bench', '--suite', str(empty), '--out', str(tmp_path / 'o')]) == 2
  assert 'lacks upstream' in capsys.readouterr().err
  assert (
      cli.main(['bench', '--suite', str(tmp_path / 'nope.py'), '--out', str(tmp_path / 'o')]) == 2
  )
  assert 'suite file not found' in capsys.readouterr().err
