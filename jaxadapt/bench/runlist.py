"""Run-list suites: named runs with dependencies, for reproducing published results.

The matrix suites of `runner.py` (task x method x size x seed) cannot express
"copy the first n layers of baseA into a network trained on B" or "a teacher,
then students at five temperatures". A run-list suite names every run:

  s.report = 'transferability'          # which reproduction report (repro_report.py)
  s.published = {...}                   # the paper's numbers, shown beside ours
  s.runs = [dict(name='s0/baseA', config='configs/...py:arg', overrides=('k=v', ...),
                 tags=dict(split=0, variant='baseA')), ...]

The config argument or an override may name an earlier run's workdir as
`{run:NAME}` (a pretrained base, a teacher); such runs must come first and their workdirs are
kept, the others are deleted once their record is written. `get_suite(arg)`
receives `quick=True` for `--quick`. Like the matrix runner, finished runs are
skipped on rerun and every config is built before the first run starts.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import time
from typing import Any

import ml_collections
from etils import epath

from jaxadapt import config as config_lib
from jaxadapt.bench import results, runner

REQUIRED = ('runs', 'report')
_REF = re.compile(r'\{run:([^}]+)\}')
_NAME = re.compile(r'[A-Za-z0-9_.+=-]+(/[A-Za-z0-9_.+=-]+)*')


def is_runlist(suite: ml_collections.ConfigDict) -> bool:
  return 'runs' in suite


def load(spec: str, quick: bool = False) -> ml_collections.ConfigDict:
  """Loads `suite.py[:arg]` (adding quick=True for --quick) and validates its runs."""
  path, _, arg = spec.partition(':')
  if quick:
    arg = f'{arg},quick=True' if arg else 'quick=True'
  suite = runner.load_module_suite(path, arg)
  missing = [k for k in REQUIRED if k not in suite]
  if missing:
    raise runner.SuiteError(
        f"suite {path} lacks {', '.join(missing)}; a run-list suite defines "
        f"{', '.join(REQUIRED)}"
    )
  if not suite.runs:
    raise runner.SuiteError(
        f"suite {path} ({arg or 'no arguments'}) lists no runs; check its "
        f'arguments (e.g. splits=0, seeds=0)'
    )
  seen: set[str] = set()
  for i, run in enumerate(suite.runs):
    name = run.get('name')
    if not isinstance(name, str) or not _NAME.fullmatch(name):
      raise runner.SuiteError(
          f"suite {path}: run {i} needs a 'name' of letters, digits, "
          f"'_.+=-' and '/', got {name!r}"
      )
    if name in seen:
      raise runner.SuiteError(f"suite {path}: two runs are named '{name}'")
    if 'config' not in run:
      raise runner.SuiteError(f"suite {path}: run '{name}' needs a 'config' file")
    for ref in _refs(run):
      if ref not in seen:
        raise runner.SuiteError(
            f"suite {path}: run '{name}' uses {{run:{ref}}}, which is not an "
            f"earlier run; list '{ref}' before '{name}'"
        )
    seen.add(name)
  return suite


def run_config(
    run: dict, runs_dir: epath.Path, common: tuple[str, ...] = ()
) -> ml_collections.ConfigDict:
  """The run's config: its file and arguments, the suite's common overrides, then its own."""
  resolve = lambda text: _REF.sub(lambda m: str(runs_dir / m.group(1)), text)
  overrides = [f'--config.{resolve(o)}' for o in (*common, *run.get('overrides', ()))]
  return config_lib.load_config(resolve(run['config']), overrides)


def _refs(run: dict) -> list[str]:
  """Names of the runs whose workdirs this run reads."""
  return _REF.findall(' '.join((run['config'], *run.get('overrides', ()))))


def run_suite(
    spec: str, out: str, quick: bool = False, log=functools.partial(print, flush=True)
) -> list[dict[str, Any]]:
  """Runs every unfinished run of the suite in order; returns all result records."""
  suite = load(spec, quick)
  out_dir = epath.Path(out)
  results_path = out_dir / 'results.jsonl'
  runs_dir = out_dir / 'runs'
  # Every config is built before anything is written: a bad override fails at once.
  common = tuple(suite.get('common', ()))
  configs = {run['name']: run_config(run, runs_dir, common) for run in suite.runs}
  # The report needs the suite's report kind and published numbers without the suite file.
  meta = {
      'report': suite.report,
      'quick': quick,
      **{
          k: _plain(suite[k])
          for k in ('title', 'published', 'table', 'test_examples')
          if k in suite
      },
  }
  meta_path = out_dir / 'suite.json'
  if meta_path.exists():
    old = json.loads(meta_path.read_text())
    if (old.get('report'), old.get('quick')) != (meta['report'], quick):
      raise runner.SuiteError(
          f"{out} holds a {old.get('report')} suite{' (--quick)' if old.get('quick') else ''}; "
          f"write this {meta['report']} suite{' (--quick)' if quick else ''} to another --out"
      )
  out_dir.mkdir(parents=True, exist_ok=True)
  meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + '\n')

  done = {r['cell']: r for r in results.read(results_path)}
  referenced = {ref for run in suite.runs for ref in _refs(run)}
  remaining = [run for run in suite.runs if run['name'] not in done]
  log(
      f'[repro] {len(suite.runs)} runs, {len(suite.runs) - len(remaining)} already done, '
      f'{len(remaining)} to run -> {results_path}'
  )
  t_start = time.perf_counter()
  for i, run in enumerate(remaining):
    name = run['name']
    for ref in _refs(run):
      if not (runs_dir / ref / 'config.json').exists():
        raise runner.SuiteError(
            f"run '{name}' needs the workdir of '{ref}', which is gone; "
            f'delete its line from {results_path} to retrain it'
        )
    config = configs[name]
    elapsed = time.perf_counter() - t_start
    eta = f', ETA {runner.fmt_seconds(elapsed / i * (len(remaining) - i))}' if i else ''
    log(
        f'[{i + 1}/{len(remaining)}] {name}: {config.model.name}, '
        f"{config.num_steps or f'{config.num_epochs:g} epochs'} steps{eta}"
    )
    info = {'tags': dict(run.get('tags', {}))}
    done[name] = runner.run_cell(config, runs_dir / name, name, info, results_path)
    if name not in referenced:
      shutil.rmtree(runs_dir / name, ignore_errors=True)
  return [done[run['name']] for run in suite.runs]


def _plain(x: Any) -> Any:
  """ConfigDict / tuples -> JSON-ready dicts and lists."""
  if isinstance(x, ml_collections.ConfigDict):
    x = x.to_dict()
  return json.loads(json.dumps(x))
