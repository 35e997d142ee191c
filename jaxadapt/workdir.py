"""The run directory: check it is writable, record what the run is, report config changes."""

from __future__ import annotations

import json
import sys
from typing import Any

import jax
import ml_collections
from etils import epath

from jaxadapt import config as config_lib
from jaxadapt.errors import UserError

CHANGES_FILE = 'config_changes.jsonl'


class WorkdirError(UserError):
  """The workdir cannot be used; the message says why and what to do."""


def prepare(workdir: epath.Path) -> None:
  """Creates the workdir and proves this process can write to it."""
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / f'.write_test.{jax.process_index()}'  # one per process: shared workdirs
    probe.write_text('ok')
    probe.unlink()
  except OSError as e:
    raise WorkdirError(
        f'cannot write to workdir {workdir}: {e.strerror or e}; choose a writable --workdir'
    ) from None


def config_changes(workdir: epath.Path, config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """{'optim.lr': (recorded, new)} for every key where `config` differs from config.json."""
  path = workdir / 'config.json'
  if not path.exists():
    return {}
  try:
    old = json.loads(path.read_text())
  except ValueError:
    return {'(config.json unreadable)': (None, None)}
  new = json.loads(json.dumps(config.to_dict(), default=str))
  return {k: (_get(old, k), _get(new, k)) for k in config_lib.differing_keys(old, new)}


def mismatch_hint(workdir: epath.Path, changes: dict[str, tuple]) -> str:
  """The end of the error for a checkpoint the config cannot resume: which keys and the fix."""
  where = (
      f"; the config differs from {workdir / 'config.json'} at {', '.join(changes)}"
      if changes
      else ''
  )
  return f'{where}; use a new --workdir, or rerun with the config recorded in the workdir'


def record_run(
    workdir: epath.Path,
    config: ml_collections.ConfigDict,
    exp,
    resumed_from: int | None = None,
    changes: dict[str, tuple] | None = None,
) -> None:
  """`config.json`, `params.txt`, `params.json` (process 0), after a warning for changed keys.

  Resuming with other values (a new lr, more steps) is allowed: the warning says so on
  stderr and `config_changes.jsonl` records from which step the new values apply, so
  `config.json` (which holds the newest values) is never mistaken for the whole story.
  """
  if jax.process_index() != 0:
    return
  if changes:
    shown = ', '.join(f'{k} {_short(a)} -> {_short(b)}' for k, (a, b) in changes.items())
    if resumed_from:
      _warn(
          f'resuming {workdir} at step {resumed_from} with a config that differs from its '
          f'config.json: {shown}; the new values apply from step {resumed_from + 1} '
          f'(recorded in {CHANGES_FILE})'
      )
      record = {'step': resumed_from, 'changes': {k: list(v) for k, v in changes.items()}}
      with (workdir / CHANGES_FILE).open('a') as f:
        f.write(json.dumps(record, default=str) + '\n')
    else:
      _warn(f'{workdir} starts over with a config that differs from its config.json: {shown}')
  config_lib.save_config(config, workdir / 'config.json')
  (workdir / 'params.txt').write_text(exp.table + '\n')
  (workdir / 'params.json').write_text(json.dumps(exp.param_records(), indent=1))


def _get(tree: Any, dotted: str) -> Any:
  for key in dotted.split('.'):
    if not isinstance(tree, dict) or key not in tree:
      return None
    tree = tree[key]
  return tree


def _short(value: Any, limit: int = 60) -> str:
  text = json.dumps(value, default=str)
  return text if len(text) <= limit else text[: limit - 3] + '...'


def _warn(message: str) -> None:
  print(f'warning: {message}', file=sys.stderr, flush=True)
