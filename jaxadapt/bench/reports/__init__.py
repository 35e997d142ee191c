"""The report kinds, and `write_report`: a results directory's report.md from its own files.

A results directory holds results.jsonl (one record per run, with the run's tags) and
suite.json (the report kind and what the report shows, written by the runner). Each kind is
a pure function of those two (no timestamps), so `jaxadapt report` rebuilds the same
report.md byte for byte:

  adaptation       matrix suites: per task, every method's accuracy by data size, the data
                   it needs, its compute, time and memory; accuracy vs data / FLOPs plots
  transferability  Yosinski et al. 2014: accuracy vs copied layers n (BnB, BnB+, AnB, AnB+)
  table            a rows x columns accuracy table beside the published values
  distillation     Hinton et al. 2015: teacher, student alone, distilled students by
                   temperature and the share of the gap closed
"""

from __future__ import annotations

import json
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


def write_report(results_dir: str | os.PathLike) -> common.Report:
  """Reads results.jsonl + suite.json in `results_dir`; writes report.md and its figures."""
  out = os.fspath(results_dir)
  meta_path = os.path.join(out, 'suite.json')
  if not os.path.exists(meta_path):
    raise UserError(
        f'{out} has no suite.json: run `jaxadapt bench --suite ... --out {out}` first '
        f'(finished runs are skipped)'
    )
  with open(meta_path, encoding='utf-8') as f:
    meta = json.load(f)
  kind = meta.get('report')
  if kind not in KINDS:
    raise UserError(f"{meta_path}: unknown report '{kind}'; known: {', '.join(KINDS)}")
  records = results.latest(results.read(os.path.join(out, 'results.jsonl')))
  report = KINDS[kind](records, meta, out)
  with open(os.path.join(out, 'report.md'), 'w', encoding='utf-8') as f:
    f.write(report.markdown)
  return report
