"""Benchmark suites: load a suite file, check it, expand its matrix, say what its report needs.

A suite file defines `get_suite(arg)` returning a ConfigDict (or dict) with

  report     the report kind: adaptation | transferability | table | distillation
             (jaxadapt/bench/reports/)
  runs       named runs, in run order: [dict(name, config='file.py[:args]',
             overrides=('key=value', ...), tags={...}, budget=...)]
  matrix     tasks x methods x data sizes x seeds, expanded into more runs after `runs`
             (matrix.py)
  common     overrides every run applies before its own
  title, published, table, test_examples: what the report shows beside the runs
  notes      lines the adaptation report prints under its header (e.g. what was capped)
  macro_metric  adaptation report: also a table of this class-balanced test metric
             (macro_f1 or macro_accuracy), for unbalanced classes

A run's config or overrides may name an earlier run's workdir as `{run:NAME}` (a
pretrained model, a teacher). `jaxadapt bench --quick` passes `quick=True` to `get_suite`:
every suite takes that argument and picks its small variant.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
from typing import Any

import ml_collections
from etils import epath

from jaxadapt import config as config_lib
from jaxadapt.bench import matrix as matrix_lib, reports
from jaxadapt.errors import UserError

# What suite.json keeps from the suite, for the report (which never imports the suite file).
META_FIELDS = ('title', 'published', 'table', 'test_examples', 'notes', 'macro_metric')
MATRIX_FIELDS = ('tasks', 'methods', 'sizes', 'seeds', 'batch_size', 'steps')
_REF = re.compile(r'\{run:([^}]+)\}')
_NAME = re.compile(r'[A-Za-z0-9_.+=-]+(/[A-Za-z0-9_.+=-]+)*')


class SuiteError(UserError):
  """A malformed suite file; the message names the field."""


def load(spec: str, quick: bool = False) -> dict[str, Any]:
  """Loads `suite.py[:arg]` (adding quick=True for --quick), checks it, expands its matrix.

  Returns the suite as plain data, its `runs` holding every run (matrix runs included).
  """
  path, _, arg = spec.partition(':')
  if quick:
    arg = f'{arg},quick=True' if arg else 'quick=True'
  suite = _import(path, arg)
  if 'report' not in suite:
    raise SuiteError(
        f'suite {path} lacks report; a suite defines report (one of '
        f"{', '.join(reports.KINDS)}) and runs and/or a matrix"
    )
  if suite['report'] not in reports.KINDS:
    raise SuiteError(
        f"suite {path}: unknown report '{suite['report']}'; known: {', '.join(reports.KINDS)}"
        + _did_you_mean(suite['report'], reports.KINDS)
    )
  macro = suite.get('macro_metric')
  if macro is not None and macro not in reports.adaptation.MACRO_METRICS:
    raise SuiteError(
        f"suite {path}: unknown macro_metric '{macro}'; choose one of "
        f"{', '.join(reports.adaptation.MACRO_METRICS)}"
        + _did_you_mean(macro, reports.adaptation.MACRO_METRICS)
    )
  runs = list(suite.get('runs', ()))
  if 'matrix' in suite:
    _check_matrix(path, suite['matrix'])
    runs += matrix_lib.expand(suite['matrix'])
  if not runs:
    raise SuiteError(
        f"suite {path} ({arg or 'no arguments'}) lists no runs; check its arguments "
        f'(e.g. splits=0, seeds=0)'
    )
  _check_runs(path, runs)
  return dict(suite, runs=runs, common=tuple(suite.get('common', ())))


def meta(suite: dict[str, Any], quick: bool) -> dict[str, Any]:
  """suite.json: the report kind and what the report shows; the method order of a matrix."""
  out = {'report': suite['report'], 'quick': quick}
  out.update({k: suite[k] for k in META_FIELDS if k in suite})
  if 'matrix' in suite:
    out['methods'] = [m['name'] for m in suite['matrix']['methods']]
  return out


def refs(run: dict[str, Any]) -> list[str]:
  """Names of the runs whose workdirs this run reads (`{run:NAME}`)."""
  return _REF.findall(' '.join((run['config'], *run.get('overrides', ()))))


def resolve(text: str, runs_dir: epath.Path) -> str:
  """`text` with every `{run:NAME}` replaced by that run's workdir."""
  return _REF.sub(lambda m: str(runs_dir / m.group(1)), text)


def _import(path: str, arg: str) -> dict[str, Any]:
  """Imports a suite file and returns its `get_suite(arg)` as plain dicts and lists."""
  if not epath.Path(path).exists():
    raise SuiteError(f'suite file not found: {path}')
  module_spec = importlib.util.spec_from_file_location('_jaxadapt_suite', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    get_suite = module.get_suite
  except AttributeError as e:
    if hasattr(module, 'get_config'):
      raise SuiteError(
          f'{path} is a config file, not a suite: train it with '
          f'`jaxadapt train --config {path} --workdir ...`'
      ) from None
    raise SuiteError(f'suite file {path} must define get_suite(arg): {e}') from None
  except (SyntaxError, ImportError, NameError) as e:
    raise SuiteError(f'could not load suite {path}: {type(e).__name__}: {e}') from None
  try:
    suite = get_suite(arg or None)
  except (TypeError, config_lib.ConfigError) as e:
    raise SuiteError(f'could not load suite {path}: {type(e).__name__}: {e}') from None
  if isinstance(suite, ml_collections.ConfigDict):
    suite = suite.to_dict()
  if not isinstance(suite, dict):
    raise SuiteError(f'get_suite in {path} must return a ConfigDict or dict')
  try:  # plain JSON data: tuples become lists, and suite.json can hold any of it
    return json.loads(json.dumps(suite))
  except TypeError as e:
    raise SuiteError(
        f'suite {path}: values must be strings, numbers, lists or dicts: {e}'
    ) from None


def _check_matrix(path: str, matrix: dict[str, Any]) -> None:
  missing = [k for k in MATRIX_FIELDS if k not in matrix]
  if missing:
    raise SuiteError(
        f"suite {path}: matrix lacks {', '.join(missing)}; a matrix defines "
        f"{', '.join(MATRIX_FIELDS)}"
    )
  for kind in ('tasks', 'methods'):
    names = [entry.get('name') if isinstance(entry, dict) else None for entry in matrix[kind]]
    for name in names:
      if not isinstance(name, str) or not _NAME.fullmatch(name) or '/' in name:
        raise SuiteError(
            f"suite {path}: every matrix {kind[:-1]} needs a 'name' of letters, digits and "
            f"'_.+=-', got {name!r}"
        )
    if len(set(names)) < len(names):
      twice = sorted({n for n in names if names.count(n) > 1})
      raise SuiteError(f"suite {path}: two matrix {kind} are named '{twice[0]}'")
  missing_steps = [k for k in ('epochs', 'min', 'max') if k not in matrix['steps']]
  if missing_steps:
    raise SuiteError(f"suite {path}: matrix steps lacks {', '.join(missing_steps)}")
  for method in matrix['methods']:
    if 'config' not in method:
      raise SuiteError(f"suite {path}: method '{method['name']}' needs a 'config' file")
    for text in (method['config'], *method.get('overrides', ())):
      unknown = [p for p in matrix_lib.placeholders(text) if p not in matrix_lib.PLACEHOLDERS]
      if unknown:
        raise SuiteError(
            f"suite {path}: method '{method['name']}' uses {{{unknown[0]}}}; a method may "
            f"name its cell with {', '.join('{' + p + '}' for p in matrix_lib.PLACEHOLDERS)}"
        )


def _check_runs(path: str, runs: list[dict[str, Any]]) -> None:
  """Names are unique and well formed; a run reads only runs listed before it."""
  names = [run.get('name') for run in runs]
  seen: set[str] = set()
  for i, run in enumerate(runs):
    name = run.get('name')
    if not isinstance(name, str) or not _NAME.fullmatch(name):
      raise SuiteError(
          f"suite {path}: run {i} needs a 'name' of letters, digits, '_.+=-' and '/', "
          f'got {name!r}'
      )
    if name in seen:
      raise SuiteError(f"suite {path}: two runs are named '{name}'")
    if 'config' not in run:
      raise SuiteError(f"suite {path}: run '{name}' needs a 'config' file")
    for ref in refs(run):
      if ref not in names:
        raise SuiteError(
            f"suite {path}: run '{name}' uses {{run:{ref}}}, but no run is named '{ref}'"
            + _did_you_mean(ref, names)
        )
      if ref not in seen:
        raise SuiteError(
            f"suite {path}: run '{name}' uses {{run:{ref}}}, which is not an earlier run; "
            f"list '{ref}' before '{name}'"
        )
    seen.add(name)


def _did_you_mean(name: str, valid) -> str:
  close = difflib.get_close_matches(name, [v for v in valid if isinstance(v, str)], n=1)
  return f" (did you mean '{close[0]}'?)" if close else ''
