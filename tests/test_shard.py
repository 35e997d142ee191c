"""Shards (bench/shard.py) without training: assignment, dependencies, merge rules, errors.

The end-to-end check (two shards of the tiny suite merged equal one whole run) is in
tests/test_bench.py, which already trains the whole run.
"""

import json
import pathlib

import pytest

from jaxadapt import cli
from jaxadapt.bench import shard

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = str(ROOT / 'configs/suites/fashion_mnist.py') + ':tiny'

RUNS = [
    dict(name='up', config='a.py'),
    dict(name='teacher', config='a.py', overrides=('init.checkpoint={run:up}',)),
    dict(name='student', config='a.py', overrides=("distill.teachers=('{run:teacher}',)",)),
    dict(name='alone', config='a.py'),
    dict(name='probe', config='a.py', overrides=('init.checkpoint={run:up}',)),
]


def test_parse_accepts_i_of_n_only():
  assert shard.parse('1/1') == (1, 1) and shard.parse('3/4') == (3, 4)
  for bad in ('0/2', '3/2', 'x', '1/0', '-1/2', '1/2/3', ''):
    with pytest.raises(shard.ShardError, match='--shard must be i/n with 1 <= i <= n'):
      shard.parse(bad)


def test_round_robin_partitions_the_runs_and_pulls_in_dependencies_transitively():
  """Catches a shard that misses a run, runs one twice, or lacks what its runs read."""
  owned = [shard.owned(RUNS, i, 2) for i in (1, 2)]
  assert owned == [['up', 'student', 'probe'], ['teacher', 'alone']]
  # The student reads the teacher, which reads up: both come along, before it, in run order.
  assert [r['name'] for r in shard.needed(RUNS, ['student'])] == ['up', 'teacher', 'student']
  assert [r['name'] for r in shard.needed(RUNS, owned[1])] == ['up', 'teacher', 'alone']
  assert shard.owned(RUNS, 1, 1) == [r['name'] for r in RUNS]


def _results_dir(path, records, index=None, count=2, digest='d', **meta):
  path.mkdir()
  suite = dict({'report': 'adaptation', 'quick': True}, **meta)
  if index:
    names = ['up', 'teacher', 'student']
    suite['shard'] = dict(index=index, count=count, runs=names, digest=digest)
  (path / 'suite.json').write_text(json.dumps(suite))
  (path / 'results.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  return path


def test_merge_keeps_the_owners_record_once_in_run_order(tmp_path):
  """Catches a dependency counted twice, or its copy replacing the owner's record."""
  s2 = _results_dir(
      tmp_path / 's2',
      [
          {'cell': 'up', 'v': 'copy', 'shard_dependency': True},
          {'cell': 'teacher', 'v': 'own'},
      ],
      index=2,
  )
  s1 = _results_dir(
      tmp_path / 's1',
      [
          {'cell': 'up', 'v': 'own'},
          {'cell': 'teacher', 'v': 'copy', 'shard_dependency': True},
          {'cell': 'student', 'v': 'own'},
      ],
      index=1,
  )
  meta, records = shard.merge([s2, s1])  # the dependency's dir first: the owner still wins
  assert [(r['cell'], r['v']) for r in records] == [
      ('up', 'own'),
      ('teacher', 'own'),
      ('student', 'own'),
  ]
  assert 'shard' not in meta and meta['report'] == 'adaptation'
  assert shard.missing([s1, s2]) == [] and shard.missing([s2]) == ['1/2']


def test_shards_of_different_suites_do_not_merge(tmp_path, capsys):
  a = _results_dir(tmp_path / 'a', [], index=1)
  quick = _results_dir(tmp_path / 'b', [], index=2, quick=False)
  with pytest.raises(shard.ShardError, match='their suite.json differ in quick; merge only'):
    shard.merge([a, quick])
  other_runs = _results_dir(tmp_path / 'c', [], index=2, digest='e')
  with pytest.raises(shard.ShardError, match=r'differ in the runs \(shard digest\)'):
    shard.merge([a, other_runs])
  other_count = _results_dir(tmp_path / 'd', [], index=2, count=3)
  with pytest.raises(shard.ShardError, match=r'the shard count \(2 vs 3\)'):
    shard.merge([a, other_count])
  assert cli.main(['report', str(a), str(quick)]) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'cannot merge' in err
  assert cli.main(['report', str(a), str(tmp_path / 'nothing')]) == 2
  assert 'has no suite.json' in capsys.readouterr().err


def test_a_shard_directory_takes_only_its_own_shard(tmp_path, capsys):
  """Catches shard 2 resuming into shard 1's directory (mixing two shards' records)."""
  out = tmp_path / 'out'
  out.mkdir()
  meta = {'report': 'adaptation', 'quick': True, 'shard': dict(index=1, count=2)}
  (out / 'suite.json').write_text(json.dumps(meta))
  argv = ['bench', '--suite', TINY, '--out', str(out), '--quick', '--shard', '2/2']
  assert cli.main(argv) == 2
  assert 'holds shard 1/2 of a suite; write shard 2/2 of this suite to another --out' in (
      capsys.readouterr().err
  )
  assert cli.main(argv[:-2]) == 2  # the whole suite into a shard's directory
  assert 'write all the runs of this suite to another --out' in capsys.readouterr().err
  assert sorted(p.name for p in out.iterdir()) == ['suite.json']
