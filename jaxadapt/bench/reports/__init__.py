"""The report kinds, and `write_report`: a results directory's report.md from its own files
(or from several shard directories of one suite, merged).

A results directory holds results.jsonl (one record per run, with the run's tags) and
suite.json (the report kind and what the report shows, written by the runner). Each kind is
a pure function of those two (no timestamps), so `jaxadapt report` rebuilds the same
report.md byte for byte:

  adaptation       matrix suites: the verdict (which method for a data size and a compute
                   budget, bench/verdict.py), then per task every method's accuracy by data
                   size, the data it needs, its compute, time and memory; accuracy vs data
                   / FLOPs plots
  transferability  Yosinski et al. 2014: accuracy vs copied layers n (BnB, BnB+, AnB, AnB+)
  table            a rows x columns accuracy table beside the published values
  distillation     Hinton et al. 2015: teacher, student alone, distilled students by
                   temperature and the share of the gap closed
"""

from __future__ import annotations

import os
from typing import Callable

from jaxadapt.bench import results
from jaxadapt.bench.reports import adaptation, common, distillation, table, transferability
from jaxadapt.errors import UserError

Writer = Callable[[list[dict], dict, str], common.Report]
KINDS: dict[str, Writer] = {
    'adaptation': adaptation.write,
    'transferability': transferability.write,
    'table': table.write,
    'distillation': distillation.write,
}


def write_report(*results_dirs: str | os.PathLike, out: str | None = None) -> common.Report:
  """Reads results.jsonl + suite.json in each results dir; writes report.md and its figures
  into `out` (default: the first dir).

  Several dirs (the shards of one suite, bench --shard) are merged: their suite.json must
  agree and a run recorded in several counts once (shard.merge).
  """
  from jaxadapt.bench import shard  # here: shard reads suites, and suite.py imports reports

  if not results_dirs:
    raise UserError('name at least one results directory (written by jaxadapt bench)')
  target = os.fspath(out if out is not None else results_dirs[0])
  if len(results_dirs) == 1:
    meta = shard.read_meta(results_dirs[0])
    records = results.latest(
        results.read(os.path.join(os.fspath(results_dirs[0]), 'results.jsonl'))
    )
  else:
    meta, records = shard.merge(results_dirs)
  kind = meta.get('report')
  if kind not in KINDS:
    raise UserError(
        f"{os.path.join(os.fspath(results_dirs[0]), 'suite.json')}: unknown report '{kind}'; "
        f"known: {', '.join(KINDS)}"
    )
  os.makedirs(target, exist_ok=True)
  report = KINDS[kind](records, meta, target)
  with open(os.path.join(target, 'report.md'), 'w', encoding='utf-8') as f:
    f.write(report.markdown)
  return report
