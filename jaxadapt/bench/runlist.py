"""`jaxadapt bench`: run a suite's named runs in order and record each one in results.jsonl.

Every run is an ordinary `jaxadapt train` run through the same trainer; its summary.json
becomes one line of results.jsonl, with the run's tags and resolved config. A run's config or
overrides may name an earlier run's workdir as `{run:NAME}` (an upstream model, a teacher):
such workdirs are kept, every other one is deleted once its record is written. Finished runs
are skipped on rerun, so a crashed suite resumes; runs are deterministic by seed, so a rerun
reproduces the numbers. Every config is built before the first run starts, and suite.json
(what the report needs) is written beside the results.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from typing import Any, Callable

import jax
import ml_collections
from etils import epath

from jaxadapt import config as config_lib, data, fast_probe, train as train_lib
from jaxadapt.bench import convergence, matrix, results, shard as shard_lib, suite as suite_lib
from jaxadapt.metrics import read_metrics

# The summary.json fields every record carries.
SUMMARY_KEYS = (
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


def run_suite(
    spec: str,
    out: str,
    quick: bool = False,
    log: Callable[[str], Any] = functools.partial(print, flush=True),
    shard: str | None = None,
) -> list[dict[str, Any]]:
  """Runs every unfinished run of the suite `spec` into `out`; returns all its records.

  `shard` 'i/n': only the runs shard i of n owns and the runs they read (shard.py).
  """
  index, count = shard_lib.parse(shard) if shard is not None else (1, 1)
  suite = suite_lib.load(spec, quick)
  out_dir = epath.Path(out)
  results_path = out_dir / 'results.jsonl'
  meta_path = out_dir / 'suite.json'
  runs_dir = out_dir / 'runs'  # one workdir per run, named after it
  meta = suite_lib.meta(suite, quick)
  if shard is not None:
    meta['shard'] = shard_lib.meta(suite['runs'], suite['common'], index, count)
  if meta_path.exists():
    old = json.loads(meta_path.read_text())
    if (old.get('report'), old.get('quick')) != (meta['report'], quick):
      raise suite_lib.SuiteError(
          f"{out} holds a {old.get('report')} suite{' (--quick)' if old.get('quick') else ''}; "
          f"write this {meta['report']} suite{' (--quick)' if quick else ''} to another --out"
      )
    where = lambda m: m.get('shard') and (m['shard']['index'], m['shard']['count'])
    if where(old) != where(meta):  # a changed suite may resume; another shard may not
      raise shard_lib.ShardError(
          f'{out} holds {_shard_words(old.get("shard"))} of a suite; write '
          f'{_shard_words(meta.get("shard"))} of this suite to another --out'
      )
  own = set(shard_lib.owned(suite['runs'], index, count))
  runs = shard_lib.needed(suite['runs'], sorted(own))  # the whole suite without --shard
  done = {r['cell']: r for r in results.read(results_path)}
  remaining = [run for run in runs if run['name'] not in done]
  # Every config is built before anything is written: a bad override fails at once.
  configs = {run['name']: run_config(run, runs_dir, suite['common']) for run in remaining}
  for run in remaining:  # a finished run that a remaining one reads must still have its workdir
    for ref in suite_lib.refs(run):
      if ref in done and not (runs_dir / ref / 'config.json').exists():
        raise suite_lib.SuiteError(
            f"run '{run['name']}' needs the workdir of '{ref}', which is gone; "
            f'delete its line from {results_path} to retrain it'
        )
  out_dir.mkdir(parents=True, exist_ok=True)
  meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True) + '\n')

  referenced = {ref for run in runs for ref in suite_lib.refs(run)}
  scope = (
      f'shard {index}/{count}: {len(own)} of the suite\'s {len(suite["runs"])} runs and '
      f'{len(runs) - len(own)} they read, '
      if shard is not None
      else ''
  )
  log(
      f'[bench] {scope}{len(runs)} runs, {len(runs) - len(remaining)} already done, '
      f'{len(remaining)} to run -> {results_path}'
  )
  t_start = time.perf_counter()
  for i, run in enumerate(remaining):
    name, config = run['name'], configs[run['name']]
    elapsed = time.perf_counter() - t_start
    eta = f', ETA {fmt_seconds(elapsed / i * (len(remaining) - i))}' if i else ''
    length = f'{config.num_steps} steps' if config.num_steps else f'{config.num_epochs:g} epochs'
    log(
        f'[{i + 1}/{len(remaining)}] {name}: {config.model.name}, {length} of '
        f'{config.batch_size}{eta}'
    )
    workdir = runs_dir / name
    if workdir.exists():
      shutil.rmtree(workdir)  # a half-finished run from a crash restarts cleanly
    t0 = time.perf_counter()
    summary = _train_run(config, workdir)
    if (workdir / 'metrics.jsonl').exists():
      summary['val_curve'] = convergence.val_curve(read_metrics(workdir))
    done[name] = _record(run, config, summary, time.perf_counter() - t0)
    if name not in own:  # trained for a run of this shard; another shard owns its record
      done[name][shard_lib.DEPENDENCY] = True
    results.append(results_path, done[name])
    if name not in referenced:
      shutil.rmtree(workdir, ignore_errors=True)
  return [done[run['name']] for run in runs]


def _shard_words(shard: dict | None) -> str:
  return f"shard {shard['index']}/{shard['count']}" if shard else 'all the runs'


def run_config(
    run: dict[str, Any], runs_dir: epath.Path, common: tuple[str, ...] = ()
) -> ml_collections.ConfigDict:
  """The run's config: its file and arguments, the suite's common overrides, then its own;
  then its step budget, if it has one (matrix runs), fitted to its training-set size."""
  resolve = functools.partial(suite_lib.resolve, runs_dir=runs_dir)
  overrides = [f'--config.{resolve(o)}' for o in (*common, *run.get('overrides', ()))]
  config = config_lib.load_config(resolve(run['config']), overrides)
  if 'budget' in run:
    n_train, n_devices = _train_size(config), jax.device_count()
    if n_train < n_devices:
      raise suite_lib.SuiteError(
          f"run '{run['name']}': {n_train} training examples cannot fill {n_devices} devices; "
          f'drop that size from the suite'
      )
    matrix.fit_budget(config, run['budget'], n_train, n_devices)
  return config


def _train_size(config: ml_collections.ConfigDict) -> int:
  if config.dataset.stream:  # counted from the prepared split, never loaded
    return len(data.datasets.data_source(config.dataset, config.dataset.train_split))
  return len(data.load_split(config.dataset, config.dataset.train_split)['label'])


def _train_run(config: ml_collections.ConfigDict, workdir: epath.Path) -> dict[str, Any]:
  """Trains one run (the suite's only call into training); returns its summary.json."""
  if config.adapt.fast_probe:
    fast_probe.run(config, str(workdir), quiet=True)
  else:
    train_lib.train(config, str(workdir), quiet=True)
  return json.loads((workdir / 'summary.json').read_text())


def _record(run: dict, config: ml_collections.ConfigDict, summary: dict, wall: float) -> dict:
  """One line of results.jsonl: the run's name, tags, results, cost and resolved config."""
  return {
      'cell': run['name'],
      'tags': dict(run.get('tags', {})),
      'pretrained': bool(config.init.checkpoint),
      'test_accuracy': summary.get('test/accuracy'),
      # Class-balanced scores, for unbalanced tasks (a suite's `macro_metric` reports one).
      'test_macro_accuracy': summary.get('test/macro_accuracy'),
      'test_macro_f1': summary.get('test/macro_f1'),
      'val_accuracy': summary.get('val/accuracy'),
      # A fast probe is solved to tolerance: nothing to rise. None: too few evals to tell.
      'val_curve': summary.get('val_curve', []),
      'still_rising': (
          False
          if config.adapt.fast_probe
          else convergence.still_rising(summary.get('val_curve', []), summary['steps'])
      ),
      **{k: summary[k] for k in summary if k.startswith(('probe/l2', 'probe/scale'))},
      'wall_seconds': wall,
      'config': json.loads(json.dumps(config.to_dict(), default=str)),
      **{k: summary[k] for k in SUMMARY_KEYS},
  }


def fmt_seconds(seconds: float) -> str:
  return f'{seconds / 60:.0f} min' if seconds >= 90 else f'{seconds:.0f} s'
