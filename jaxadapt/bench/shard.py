"""Shards: split a suite's runs over n machines (`bench --shard i/n`) and merge their results.

Assignment: round-robin over the suite's run list in run order, so shard i (1-based) owns
runs i-1, i-1+n, i-1+2n, ...: deterministic, and balanced to within one run. A run a shard
owns may read another run's workdir (`{run:NAME}`: the upstream model, a distillation
teacher); a shard that needs such a run and does not own it trains it too (once, before
the runs that read it) and marks its record `shard_dependency`. The merge keeps one record
per run, the owner's, so a dependency trained by several shards counts once.

A shard's suite.json carries `shard`: its index, the count, the suite's run names in order
(the merge restores that order, which the selection's tie-break follows) and a digest of
the runs, so shards of different suites (or arguments) refuse to merge.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Sequence

from jaxadapt.bench import results, suite as suite_lib
from jaxadapt.errors import UserError

DEPENDENCY = 'shard_dependency'  # the record field that marks a run trained for another one
_SPEC = re.compile(r'(\d+)/(\d+)')


class ShardError(UserError):
  """A bad --shard value, or results directories that cannot be merged."""


def parse(text: str) -> tuple[int, int]:
  """'i/n' -> (i, n) with 1 <= i <= n."""
  m = _SPEC.fullmatch(text.strip())
  if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
    raise ShardError(
        f"--shard must be i/n with 1 <= i <= n (e.g. 1/4 for the first of 4 shards), got '{text}'"
    )
  return int(m.group(1)), int(m.group(2))


def owned(runs: Sequence[dict], index: int, count: int) -> list[str]:
  """The names of the runs shard `index` of `count` owns: round-robin in run order."""
  return [run['name'] for k, run in enumerate(runs) if k % count == index - 1]


def needed(runs: Sequence[dict], names: Sequence[str]) -> list[dict]:
  """The runs `names` and every run they read, transitively, in run order."""
  by_name = {run['name']: run for run in runs}
  want, stack = set(), list(names)
  while stack:
    name = stack.pop()
    if name not in want:
      want.add(name)
      stack += suite_lib.refs(by_name[name])
  return [run for run in runs if run['name'] in want]


def meta(runs: Sequence[dict], common: Sequence[str], index: int, count: int) -> dict[str, Any]:
  """suite.json's `shard` field."""
  plain = json.dumps([list(common), list(runs)], sort_keys=True)
  return {
      'index': index,
      'count': count,
      'runs': [run['name'] for run in runs],
      'digest': hashlib.sha256(plain.encode()).hexdigest()[:16],
  }


def read_meta(results_dir: str | os.PathLike) -> dict[str, Any]:
  """A results directory's suite.json (a one-line error if it has none)."""
  out = os.fspath(results_dir)
  path = os.path.join(out, 'suite.json')
  if not os.path.exists(path):
    raise UserError(
        f'{out} has no suite.json: run `jaxadapt bench --suite ... --out {out}` first '
        f'(finished runs are skipped)'
    )
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def merge(dirs: Sequence[str | os.PathLike]) -> tuple[dict[str, Any], list[dict]]:
  """(the shared suite.json without `shard`, one record per run) of several results dirs.

  The suite.json files must agree (apart from the shard index); a run recorded in several
  dirs keeps its owner's record (not a `shard_dependency`), else the first dir's.
  """
  metas = [read_meta(d) for d in dirs]
  base = {k: v for k, v in metas[0].items() if k != 'shard'}
  for d, m in zip(dirs[1:], metas[1:]):
    other = {k: v for k, v in m.items() if k != 'shard'}
    diff = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
    shards = [x['shard'] for x in (metas[0], m) if 'shard' in x]
    if not diff and len(shards) == 2 and shards[0]['digest'] != shards[1]['digest']:
      diff = ['the runs (shard digest)']
    if not diff and len(shards) == 2 and shards[0]['count'] != shards[1]['count']:
      diff = [f"the shard count ({shards[0]['count']} vs {shards[1]['count']})"]
    if diff:
      raise ShardError(
          f'cannot merge {os.fspath(d)} with {os.fspath(dirs[0])}: their suite.json differ in '
          f"{', '.join(diff)}; merge only the shards of one suite"
      )
  chosen: dict[str, dict] = {}
  for d in dirs:
    for r in results.latest(results.read(os.path.join(os.fspath(d), 'results.jsonl'))):
      if r['cell'] not in chosen or (chosen[r['cell']].get(DEPENDENCY) and not r.get(DEPENDENCY)):
        chosen[r['cell']] = r
  order = next((m['shard']['runs'] for m in metas if 'shard' in m), [])
  index = {name: i for i, name in enumerate(order)}
  records = sorted(chosen.values(), key=lambda r: index.get(r['cell'], len(index)))
  return base, records


def missing(dirs: Sequence[str | os.PathLike]) -> list[str]:
  """The shards ('i/n') of a sharded suite that none of `dirs` holds."""
  shards = [m['shard'] for m in map(read_meta, dirs) if 'shard' in m]
  if not shards:
    return []
  have = {s['index'] for s in shards}
  count = shards[0]['count']
  return [f'{i}/{count}' for i in range(1, count + 1) if i not in have]
