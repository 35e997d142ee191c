"""The run directory: check it is writable, record what the run is, warn on changed configs."""

from __future__ import annotations

import json

import jax
import ml_collections
from etils import epath

from jaxadapt import config as config_lib
from jaxadapt.errors import UserError


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


def record_run(workdir: epath.Path, config: ml_collections.ConfigDict, exp, log) -> None:
  """`config.json`, `params.txt` and `params.json` (process 0 only)."""
  if jax.process_index() != 0:
    return
  _warn_on_config_change(workdir, config, log)
  config_lib.save_config(config, workdir / 'config.json')
  (workdir / 'params.txt').write_text(exp.table + '\n')
  (workdir / 'params.json').write_text(json.dumps(exp.param_records(), indent=1))


def _warn_on_config_change(workdir: epath.Path, config, log) -> None:
  path = workdir / 'config.json'
  if not path.exists():
    return
  old = json.loads(path.read_text())
  new = json.loads(json.dumps(config.to_dict(), default=str))
  changed = config_lib.differing_keys(old, new)
  if changed:
    log(f"warning: config differs from the one in {path} at: {', '.join(changed)}")
