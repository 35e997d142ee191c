"""The reproduction suites' quick variants end to end: runs, dependencies, reports, figures."""

import pathlib

import pytest

from jaxadapt import cli
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
