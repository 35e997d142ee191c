"""`jaxadapt bench` end to end on the tiny Fashion-MNIST matrix suite: runs, report, resume.

The report must be the one the code before the unified engine wrote (tests/golden/).
"""

import json
import pathlib
import shutil

import pytest

from jaxadapt import cli
from jaxadapt.bench import shard
from shared_runs import bench_records, quick_bench

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = str(ROOT / 'configs/suites/fashion_mnist.py') + ':tiny'
GOLDEN = pathlib.Path(__file__).parent / 'golden'


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  return quick_bench(tmp_path_factory.mktemp('bench') / 'results', TINY)


def test_quick_writes_tagged_results_report_and_plots(results):
  records = bench_records(results)
  assert [r['cell'] for r in records][0] == 'upstream'
  runs = [r for r in records if r['cell'] != 'upstream']
  assert {r['tags']['method'] for r in runs} == {
      'scratch',
      'linear_probe_fast',
      'full_ft',
      'lora',
      'student_alone',
      'distill',
  }
  assert {r['tags']['task'] for r in runs} == {'related', 'unrelated'}
  for r in runs:
    assert r['cell'] == '{task}/{method}/{size}/{seed}'.format(**r['tags'])
    assert r['config']['seed'] == r['tags']['seed'] == r['config']['dataset']['subset_seed']
    assert r['config']['dataset']['examples_per_class'] == r['tags']['size'] == 10
  for r in records:
    assert 0.0 <= r['test_accuracy'] <= 1.0
    assert r['train_flops'] > 0 and r['wall_seconds'] > 0 and r['trainable_params'] > 0
  by_cell = {r['cell']: r for r in records}
  lora, full = by_cell['related/lora/10/0'], by_cell['related/full_ft/10/0']
  assert lora['opt_state_bytes'] < full['opt_state_bytes']
  assert lora['pretrained'] and not by_cell['related/scratch/10/0']['pretrained']
  # The dependencies the suite declares, resolved to workdirs: the upstream run for the
  # adapted methods, the full_ft run of the same cell for the distilled student.
  assert lora['config']['init']['checkpoint'] == str(results / 'runs/upstream')
  assert by_cell['related/distill/10/0']['config']['distill']['teachers'] == [
      str(results / 'runs/related/full_ft/10/0')
  ]
  # Kept: the workdirs a later run reads; deleted: every other one.
  assert (results / 'runs/upstream/config.json').exists()
  assert (results / 'runs/related/full_ft/10/0/config.json').exists()
  assert not (results / 'runs/related/lora/10/0').exists()
  meta = json.loads((results / 'suite.json').read_text())
  assert meta == {
      'report': 'adaptation',
      'quick': True,
      'methods': ['scratch', 'linear_probe_fast', 'full_ft', 'lora', 'student_alone', 'distill'],
  }
  report = (results / 'report.md').read_text()
  assert '## Task: related' in report and '| lora |' in report
  for png in ('accuracy_vs_data.png', 'accuracy_vs_flops.png'):
    assert (results / png).stat().st_size > 1000


def test_report_is_the_golden_one(results, tmp_path):
  # Wall time is the one field that differs between runs: fix it, as the golden file did.
  out = tmp_path / 'fixed'
  out.mkdir()
  records = [dict(r, wall_seconds=1.0) for r in bench_records(results)]
  (out / 'results.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  (out / 'suite.json').write_text((results / 'suite.json').read_text())
  assert cli.main(['report', str(out)]) == 0
  assert (out / 'report.md').read_text() == (
      GOLDEN / 'fashion_mnist_tiny_quick_report.md'
  ).read_text()


def test_rerun_skips_finished_runs(results, capsys):
  before = (results / 'results.jsonl').read_text()
  assert cli.main(['bench', '--suite', TINY, '--out', str(results), '--quick']) == 0
  assert '13 runs, 13 already done, 0 to run' in capsys.readouterr().out
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


def test_report_regenerates_identical_tables(results, capsys):
  before = (results / 'report.md').read_text()
  (results / 'report.md').unlink()
  assert cli.main(['report', str(results)]) == 0
  assert (results / 'report.md').read_text() == before
  terminal = capsys.readouterr().out
  assert terminal.startswith('task ') and 'related    linear_probe_fast' in terminal


def test_malformed_suites_are_one_line_errors(tmp_path, capsys):
  source = pathlib.Path(TINY.split(':')[0]).read_text()
  bad = tmp_path / 'bad.py'
  bad.write_text(source.replace("name='full_ft'", "name='full_tf'"))  # the teachers' method
  assert cli.main(['bench', '--suite', f'{bad}:tiny', '--out', str(tmp_path / 'o')]) == 2
  assert (
      "run 'related/distill/2/0' uses {run:related/full_ft/2/0}, but no run is named "
      "'related/full_ft/2/0' (did you mean 'related/full_tf/2/0'?)"
  ) in capsys.readouterr().err
  bad.write_text(source.replace('{run:upstream}', '{run:upstraem}'))
  assert cli.main(['bench', '--suite', f'{bad}:tiny', '--out', str(tmp_path / 'o')]) == 2
  assert "uses {run:upstraem}, but no run is named 'upstraem' (did you mean 'upstream'?)" in (
      capsys.readouterr().err
  )
  assert not (tmp_path / 'o').exists()
  assert (
      cli.main(['bench', '--suite', str(tmp_path / 'nope.py'), '--out', str(tmp_path / 'o')]) == 2
  )
  assert 'suite file not found' in capsys.readouterr().err


def _comparable(records, out) -> list[dict]:
  """Records without wall time (the one field that differs between runs), the results dir
  in their configs' paths replaced by <out>."""
  text = [json.dumps({k: v for k, v in r.items() if k != 'wall_seconds'}) for r in records]
  return [json.loads(t.replace(str(out), '<out>')) for t in text]


def _fixed_wall_copy(src, dst):
  """A copy of a results dir (records and suite.json only) with every wall time 1.0 s."""
  dst.mkdir()
  records = [dict(r, wall_seconds=1.0) for r in bench_records(src)]
  (dst / 'results.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  (dst / 'suite.json').write_text((src / 'suite.json').read_text())
  return dst


def test_two_shards_merged_equal_one_whole_run(results, tmp_path, capsys):
  """Catches a shard that skips or repeats runs, a dependency missing from the shard that
  needs it, and a merge that counts a dependency twice or loses the run order."""
  shards = [tmp_path / 'shard1', tmp_path / 'shard2']
  for i, out in enumerate(shards, start=1):
    argv = ['bench', '--suite', TINY, '--out', str(out), '--quick', '--shard', f'{i}/2']
    assert cli.main(argv) == 0
  log = capsys.readouterr().out
  # 13 runs round-robin: shard 1 owns 7 (upstream, 3 distilled students among them) and
  # trains the 2 teachers it reads; shard 2 owns 6 and trains upstream for its adapters.
  assert "shard 1/2: 7 of the suite's 13 runs and 2 they read" in log
  assert "shard 2/2: 6 of the suite's 13 runs and 1 they read" in log
  per_shard = [bench_records(out) for out in shards]
  owned = [[r['cell'] for r in rs if not r.get('shard_dependency')] for rs in per_shard]
  whole = bench_records(results)
  assert sorted(owned[0] + owned[1]) == sorted(r['cell'] for r in whole)  # a partition
  assert 'upstream' in owned[0] and 'upstream' in [r['cell'] for r in per_shard[1]]

  merged = tmp_path / 'merged'
  assert cli.main(['report', *map(str, shards), '--out', str(merged)]) == 0
  assert 'merged 2 results directories' in capsys.readouterr().out
  _, records = shard.merge(shards)
  by_dir = {cell: out for out, cells in zip(shards, owned) for cell in cells}
  assert [r['cell'] for r in records] == [r['cell'] for r in whole]  # once each, in run order
  assert not any(r.get('shard_dependency') for r in records)  # the owner's record
  normalised = [_comparable([r], by_dir[r['cell']])[0] for r in records]
  assert normalised == _comparable(whole, results)
  # The same report as the whole run (wall times fixed: they differ between runs).
  fixed = [_fixed_wall_copy(out, tmp_path / f'fixed{i}') for i, out in enumerate(shards)]
  assert cli.main(['report', *map(str, fixed), '--out', str(tmp_path / 'fixed_merged')]) == 0
  whole_fixed = _fixed_wall_copy(results, tmp_path / 'fixed_whole')
  assert cli.main(['report', str(whole_fixed)]) == 0
  assert (tmp_path / 'fixed_merged/report.md').read_text() == (
      whole_fixed / 'report.md'
  ).read_text()


@pytest.mark.parametrize('spec', ['0/2', '3/2', 'x', '1/0', '1/2/3'])
def test_a_bad_shard_is_a_one_line_error_before_anything_is_written(tmp_path, capsys, spec):
  out = tmp_path / 'o'
  assert cli.main(['bench', '--suite', TINY, '--out', str(out), '--quick', '--shard', spec]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and '--shard must be i/n with 1 <= i <= n' in err
  assert not out.exists()
