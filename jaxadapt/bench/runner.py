"""`jaxadapt bench`: run a suite of cells (task x method x data size x seed) and record them.

A suite file defines `get_suite(arg) -> ConfigDict` with an upstream run,
downstream tasks (config overrides), methods (config file + arguments), data
sizes, seeds and a step budget. Every cell is an ordinary `jaxadapt train`
run through the same trainer, whose `summary.json` becomes one line of
`results.jsonl`. Finished cells are skipped on rerun, so a crashed suite
resumes; runs are deterministic by seed, so a rerun reproduces the numbers.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import json
import math
import shutil
import time
from typing import Any, Iterator

import jax
import ml_collections
from etils import epath

from jaxadapt import config as config_lib, data, fast_probe, train as train_lib
from jaxadapt.errors import UserError

KNOWN_METHODS = (
    'scratch',
    'linear_probe',
    'linear_probe_fast',
    'partial_ft',
    'full_ft',
    'lora',
    'bitfit',
    'student_alone',
    'distill',
)
REQUIRED = ('upstream', 'tasks', 'methods', 'sizes', 'seeds', 'steps')


class SuiteError(UserError):
  """A malformed suite file; the message names the field."""


def load_module_suite(path: str, arg: str | None) -> ml_collections.ConfigDict:
  """Imports a suite file and calls its `get_suite(arg)`."""
  if not epath.Path(path).exists():
    raise SuiteError(f'suite file not found: {path}')
  module_spec = importlib.util.spec_from_file_location('_jaxadapt_suite', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    return module.get_suite(arg or None)
  except AttributeError as e:
    raise SuiteError(f'suite file {path} must define get_suite(arg): {e}') from None
  except (SyntaxError, ImportError, NameError, TypeError, config_lib.ConfigError) as e:
    raise SuiteError(f'could not load suite {path}: {type(e).__name__}: {e}') from None


def load_suite(spec: str, quick: bool = False) -> ml_collections.ConfigDict:
  """Loads `suite.py[:arg]`, validates it, applies the quick variant."""
  path, _, arg = spec.partition(':')
  suite = load_module_suite(path, arg)
  missing = [k for k in REQUIRED if k not in suite]
  if missing:
    raise SuiteError(
        f"suite {path} lacks {', '.join(missing)}; a suite defines " f"{', '.join(REQUIRED)}"
    )
  for name, method in suite.methods.items():
    if name not in KNOWN_METHODS:
      close = difflib.get_close_matches(name, KNOWN_METHODS, n=1)
      raise SuiteError(
          f"suite {path}: unknown method '{name}'; known: {', '.join(KNOWN_METHODS)}"
          + (f" (did you mean '{close[0]}'?)" if close else '')
      )
    if 'config' not in method:
      raise SuiteError(f"suite {path}: method '{name}' needs a 'config' file")
  if quick:
    suite.sizes, suite.seeds = tuple(suite.quick.sizes), tuple(suite.quick.seeds)
  return suite


def cells(suite: ml_collections.ConfigDict) -> Iterator[tuple[str, str, int, int]]:
  """(task, method, examples_per_class, seed) in run order: teachers before students."""
  order = {m: i for i, m in enumerate(KNOWN_METHODS)}
  for task in suite.tasks:
    for seed in suite.seeds:
      for size in task_sizes(suite, task):
        for method in sorted(suite.methods, key=order.get):
          yield task, method, size, seed


def task_sizes(suite: ml_collections.ConfigDict, task: str) -> tuple[int, ...]:
  """The suite's sizes, minus those a task marks too large for its data (`max_size`)."""
  cap = suite.tasks[task].get('max_size', 0)
  return tuple(s for s in suite.sizes if not cap or s <= cap)


def steps_for(suite: ml_collections.ConfigDict, n_examples: int, batch_size: int) -> int:
  """Epochs over the subset, clipped to [min, max] steps: small data still gets trained."""
  s = suite.steps
  return int(min(max(math.ceil(s.epochs * n_examples / batch_size), s.min), s.max))


def cell_config(
    suite, task: str, method: str, size: int, seed: int, upstream_dir: str, teacher_dir: str | None
) -> ml_collections.ConfigDict:
  m = suite.methods[method]
  arg = m.get('args', '')
  config = config_lib.load_config(f"{m.config}{':' + arg if arg else ''}")
  for o in (*suite.get('common', ()), *suite.tasks[task].overrides, *m.get('overrides', ())):
    config_lib.apply_override(config, f'--config.{o}')
  config.seed = seed
  config.dataset.subset_seed = seed
  config.dataset.examples_per_class = size
  if config.init.checkpoint is not None and method not in ('scratch', 'student_alone'):
    config.init.checkpoint = upstream_dir
  if method == 'distill':
    config.distill.teachers = (teacher_dir,)
  n = _train_size(config)
  ndev = jax.device_count()
  if n < ndev:
    raise SuiteError(
        f'task {task}: {n} training examples at {size}/class cannot fill '
        f'{ndev} devices; drop that size from the suite'
    )
  config.batch_size = min(suite.batch_size, n // ndev * ndev)
  config.num_epochs, config.num_steps = 0.0, steps_for(suite, n, config.batch_size)
  config.eval_every = config.num_steps
  config.log_every = max(1, config.num_steps // 5)
  config.ckpt_every, config.keep_ckpts = 0, 1
  return config


def _train_size(config) -> int:
  return len(data.load_split(config.dataset, config.dataset.train_split)['label'])


def run_suite(
    spec: str, out: str, quick: bool = False, log=functools.partial(print, flush=True)
) -> list[dict[str, Any]]:
  """Runs every unfinished cell of the suite; returns all result records."""
  suite = load_suite(spec, quick)
  out_dir = epath.Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  results_path = out_dir / 'results.jsonl'
  done = {r['cell']: r for r in read_results(results_path)}
  runs = out_dir / 'runs'

  upstream_dir = runs / 'upstream'
  todo = list(cells(suite))
  remaining = [c for c in todo if _cell_id(*c) not in done]
  log(
      f'[bench] {len(todo)} cells, {len(todo) - len(remaining)} already done, '
      f'{len(remaining)} to run -> {results_path}'
  )
  # Build every cell's config first: a bad size or override fails now, not an hour in.
  configs = {
      _cell_id(*c): cell_config(
          suite, *c, str(upstream_dir), str(runs / _cell_id(c[0], 'full_ft', c[2], c[3]))
      )
      for c in remaining
  }
  # Upstream pretraining, once per suite.
  if 'upstream' not in done:
    config = config_lib.load_config(
        suite.upstream.config,
        [f'--config.{o}' for o in (*suite.get('common', ()), *suite.upstream.get('overrides', ()))],
    )
    log(
        f'[upstream] pretraining {config.model.name} on {config.dataset.name} '
        f"classes {config.dataset.classes or 'all'}"
    )
    done['upstream'] = run_cell(
        config,
        upstream_dir,
        'upstream',
        {
            'task': 'upstream',
            'method': 'pretrain',
            'examples_per_class': 0,
            'seed': config.seed,
            'pretrained': False,
        },
        results_path,
    )

  t_start, finished = time.perf_counter(), 0
  for task, method, size, seed in todo:
    cell = _cell_id(task, method, size, seed)
    if cell in done:
      continue
    config = configs[cell]
    elapsed = time.perf_counter() - t_start
    eta = (
        f', ETA {fmt_seconds(elapsed / finished * (len(remaining) - finished))}' if finished else ''
    )
    log(
        f'[{finished + 1}/{len(remaining)}] {cell}: {config.num_steps} steps of '
        f'{config.batch_size}{eta}'
    )
    done[cell] = run_cell(
        config,
        runs / cell,
        cell,
        {
            'task': task,
            'method': method,
            'examples_per_class': size,
            'seed': seed,
            'pretrained': bool(config.init.checkpoint),
        },
        results_path,
    )
    finished += 1
    if method != 'full_ft':  # full_ft runs are the distillation teachers: keep them
      shutil.rmtree(runs / cell, ignore_errors=True)
  return list(done.values())


def run_cell(config, workdir: epath.Path, cell: str, info: dict, results_path) -> dict:
  if workdir.exists():
    shutil.rmtree(workdir)  # a half-finished cell from a crash restarts cleanly
  t0 = time.perf_counter()
  if config.adapt.fast_probe:
    fast_probe.run(config, str(workdir), quiet=True)
  else:
    train_lib.train(config, str(workdir), quiet=True)
  wall = time.perf_counter() - t0
  summary = json.loads((workdir / 'summary.json').read_text())
  record = {
      'cell': cell,
      **info,
      'test_accuracy': summary.get('test/accuracy'),
      'val_accuracy': summary.get('val/accuracy'),
      'wall_seconds': wall,
      'config': json.loads(json.dumps(config.to_dict(), default=str)),
      **{
          k: summary[k]
          for k in (
              'trainable_params',
              'total_params',
              'opt_state_bytes',
              'step_flops',
              'steps',
              'train_flops',
              'examples_seen',
              'train_examples',
              'model',
          )
      },
  }
  with results_path.open('a') as f:
    f.write(json.dumps(record, sort_keys=True) + '\n')
  return record


def read_results(path: epath.Path) -> list[dict]:
  if not path.exists():
    return []
  out = []
  for line in path.read_text().splitlines():
    try:
      out.append(json.loads(line))
    except json.JSONDecodeError:
      pass  # a line cut by a crash mid-write: that cell simply runs again
  return out


def _cell_id(task: str, method: str, size: int, seed: int) -> str:
  return f'{task}/{method}/{size}/{seed}'


def fmt_seconds(seconds: float) -> str:
  return f'{seconds / 60:.0f} min' if seconds >= 90 else f'{seconds:.0f} s'
