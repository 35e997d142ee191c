"""Orbax checkpoints of the train state: periodic saves, automatic resume, verified restores.

Orbax writes each step into a temporary directory and renames it when
complete, so a save killed half-way is never mistaken for a checkpoint; the
manager only lists finished steps. Saves and restores are collective across
processes.

A finished step can still be damaged later (a data file deleted or truncated,
`_METADATA` garbled, the step directory emptied). Restores therefore try the
newest step first and fall back to the next one with one warning naming the bad
step; the trainer moves bad steps aside so that saving that step again works.
A step whose arrays do not fit the model (the config changed the model or the
optimizer) is not damage: that is an error, never a fallback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, Iterator

import jax
import orbax.checkpoint as ocp
from etils import epath
from jaxadapt import ema
from jaxadapt.errors import UserError

CORRUPT_DIR = 'corrupt_checkpoints'
DIVERGED_DIR = 'diverged_checkpoints'


class CheckpointError(UserError):
  """A checkpoint that is missing or unreadable."""


class CheckpointMismatchError(UserError):
  """The workdir's checkpoint holds another model or optimizer state than the config builds."""


class Checkpointer:
  """The workdir's `checkpoints/` directory: save every N steps, keep the last K."""

  def __init__(self, workdir: epath.PathLike, every: int, keep: int):
    self.directory = epath.Path(workdir) / 'checkpoints'
    self.every = every
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def due(self, step: int, force: bool = False) -> bool:
    """Whether `maybe_save(step, ..., force)` would write a checkpoint."""
    if not force and (self.every <= 0 or step % self.every):
      return False
    return step not in self.manager.all_steps()

  def maybe_save(self, step: int, state: Any, force: bool = False) -> bool:
    """Saves if `step` is on the save interval (or `force`); returns whether it did."""
    if not self.due(step, force):
      return False
    return self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, like: Any, step: int | None = None) -> Any:
    """Restores `step` (default latest) into the structure, shapes and shardings of `like`."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def restore_newest(self, like: Any, mismatch_hint: str = '') -> tuple[Any, int | None]:
    """(state, step) from the newest readable checkpoint, or (`like`, None) if there is none.

    Unreadable newer steps are moved to `<workdir>/corrupt_checkpoints/` with one warning
    each. A step that does not fit `like` raises CheckpointMismatchError (with
    `mismatch_hint` appended); no readable step at all raises CheckpointError.
    """
    want = _shapes(like)
    bad = []
    for step in sorted(self.manager.all_steps(), reverse=True):
      step_dir = self.directory / str(step)
      try:
        have = _saved_shapes(step_dir / 'default')
      except Exception as e:  # pylint: disable=broad-except (orbax raises many kinds)
        bad.append((step, e))
        continue
      differences = _differences(have, want)
      if differences:
        raise CheckpointMismatchError(
            f'cannot resume from checkpoint {step_dir}: it holds a different model or '
            f"optimizer state ({'; '.join(differences)}){mismatch_hint}"
        )
      try:
        with _quiet_absl():
          state = self.restore(like, step)
      except Exception as e:  # pylint: disable=broad-except
        bad.append((step, e))
        continue
      self._set_aside(bad, f'resuming from step {step}')
      return state, step
    if bad:
      raise CheckpointError(
          f'no readable checkpoint in {self.directory}: {_describe(bad)}; delete '
          f'{self.directory} to start the run over'
      )
    return like, None

  def discard_from(self, step: int) -> tuple[list[int], int | None]:
    """Moves every checkpoint of `step` or later to `<workdir>/diverged_checkpoints/`.

    Returns (moved steps, the latest step left). For a run that diverged at step s the
    state saved after step s - 1 is the one that produced the non-finite values.
    """
    self.manager.wait_until_finished()
    moved = [s for s in sorted(self.manager.all_steps()) if s >= step]
    self._move_aside(moved, DIVERGED_DIR)
    return moved, self.manager.latest_step()

  def _set_aside(self, bad: list[tuple[int, Exception]], outcome: str) -> None:
    """Moves unreadable steps out of the manager's sight, so those steps can be saved again."""
    targets = self._move_aside([step for step, _ in bad], CORRUPT_DIR)
    for (step, error), target in zip(bad, targets):
      warn(
          f'checkpoint step {step} is unreadable ({_first_line(error)}); {outcome} '
          f'(the bad step is now {target})'
      )

  def _move_aside(self, steps: list[int], folder: str) -> list[epath.Path]:
    """Renames step directories into `<workdir>/<folder>/` (process 0); returns the targets."""
    if not steps:
      return []
    aside = self.directory.parent / folder
    targets = []
    for step in steps:
      target, n = aside / str(step), 1
      while target.exists():
        target, n = aside / f'{step}.{n}', n + 1
      targets.append(target)
    if jax.process_index() == 0:
      aside.mkdir(parents=True, exist_ok=True)
      for step, target in zip(steps, targets):
        (self.directory / str(step)).rename(target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices(f'jaxadapt_checkpoints_moved_to_{folder}')
    self.manager.reload()
    return targets

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def absolute(path: epath.PathLike) -> epath.Path:
  """Orbax wants absolute paths; cloud paths (gs://...) already are."""
  return epath.Path(path if '://' in str(path) else os.path.abspath(path))


def restore_params(path: epath.PathLike, step: int | None = None) -> Any:
  """Reads only the `params` subtree of a saved train state, as host numpy arrays.

  `path` is a workdir (its newest readable checkpoint is used: an unreadable newer
  one is skipped with a warning naming it) or a checkpoints directory, or one step's
  directory inside it. A run trained with `optim.ema` gives its averaged trainable
  parameters (what its evaluation measured) for the step its averages were saved at.
  """
  path = absolute(path)
  if (path / 'checkpoints').exists():
    path = path / 'checkpoints'
  if not path.exists():
    raise CheckpointError(f'checkpoint not found: {path}')
  if (path / 'default').exists():  # a single step's directory: no other step to fall back to
    try:
      return _read_params(path / 'default')
    except Exception as e:  # pylint: disable=broad-except (orbax raises many kinds)
      raise CheckpointError(f'checkpoint {path} is unreadable: {_first_line(e)}') from None
  with ocp.CheckpointManager(path) as manager:
    steps = sorted(manager.all_steps(), reverse=True) if step is None else [step]
  if not steps:
    raise CheckpointError(f'no finished checkpoint in {path}')
  bad = []
  for s in steps:
    try:
      params = _read_params(path / str(s) / 'default')
    except Exception as e:  # pylint: disable=broad-except
      bad.append((s, e))
      continue
    for b, error in bad:
      warn(f'checkpoint step {b} in {path} is unreadable ({_first_line(error)}); using step {s}')
    return ema.with_averages(params, path.parent, s)  # an optim.ema run: its averaged weights
  raise CheckpointError(f'no readable checkpoint in {path}: {_describe(bad)}')


def _read_params(item: epath.Path) -> Any:
  # Restore onto this process's first device, whatever topology wrote the checkpoint:
  # a run trained on 8 devices must load on a laptop.
  checkpointer = ocp.StandardCheckpointer()
  with _quiet_absl():  # "no metadata file" noise
    meta = _tree_metadata(checkpointer, item)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), dict(meta)
    )
    return checkpointer.restore(item, target)['params']


def _tree_metadata(checkpointer, item: epath.Path) -> Any:
  if not item.exists():
    raise FileNotFoundError(f'{item} is missing')
  meta = checkpointer.metadata(item)
  meta = getattr(meta, 'item_metadata', meta)
  tree = meta.tree if hasattr(meta, 'tree') else meta
  if not tree:
    raise ValueError(f'{item} holds no arrays')
  return tree


def _saved_shapes(item: epath.Path) -> dict[str, tuple[int, ...]]:
  with _quiet_absl():
    return _shapes(_tree_metadata(ocp.StandardCheckpointer(), item))


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """{'params/dense/kernel': shape} of any pytree (dataclasses and namedtuples as dicts)."""

  def name(key) -> str:
    for attr in ('name', 'key', 'idx'):
      if hasattr(key, attr):
        return str(getattr(key, attr))
    return str(key)

  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {'/'.join(name(k) for k in path): tuple(leaf.shape) for path, leaf in flat}


def _differences(have: dict, want: dict, limit: int = 4) -> list[str]:
  out = [f'{k}: {have[k]} saved, {want[k]} now' for k in want if k in have and have[k] != want[k]]
  out += [f'{k} not saved' for k in want if k not in have]
  out += [f'{k} saved but not in the model' for k in have if k not in want]
  return out[:limit] + ([f'{len(out) - limit} more'] if len(out) > limit else [])


def _describe(bad: list[tuple[int, Exception]]) -> str:
  return '; '.join(f'step {s} ({_first_line(e)})' for s, e in bad)


def _first_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  if not text:
    return type(error).__name__
  text = text[0].split(' See full TensorStore details')[0]  # the rest is a repr of its spec
  return f'{type(error).__name__}: {text[:160]}'


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
  absl_logger = logging.getLogger('absl')
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    absl_logger.setLevel(level)


def warn(message: str) -> None:
  """One warning line on stderr (process 0), shown even with --quiet."""
  if jax.process_index() == 0:
    print(f'warning: {message}', file=sys.stderr, flush=True)
