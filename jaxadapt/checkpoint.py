"""Orbax checkpoints of the train state: periodic saves, automatic resume.

Orbax writes each step into a temporary directory and renames it when
complete, so a save killed half-way is never mistaken for a checkpoint; the
manager only lists finished steps. Saves and restores are collective across
processes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from jaxadapt.errors import UserError


class CheckpointError(UserError):
  """A checkpoint that is missing or unreadable."""


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

  def maybe_save(self, step: int, state: Any, force: bool = False) -> bool:
    """Saves if `step` is on the save interval (or `force`); returns whether it did."""
    if not force and (self.every <= 0 or step % self.every):
      return False
    if step in self.manager.all_steps():
      return False
    return self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def restore(self, like: Any, step: int | None = None) -> Any:
    """Restores `step` (default latest) into the structure, shapes and shardings of `like`."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def absolute(path: epath.PathLike) -> epath.Path:
  """Orbax wants absolute paths; cloud paths (gs://...) already are."""
  return epath.Path(path if '://' in str(path) else os.path.abspath(path))


def restore_params(path: epath.PathLike, step: int | None = None) -> Any:
  """Reads only the `params` subtree of a saved train state, as host numpy arrays.

  `path` is a workdir (its latest checkpoint is used) or a checkpoints
  directory, or one step's directory inside it.
  """
  path = absolute(path)
  if (path / 'checkpoints').exists():
    path = path / 'checkpoints'
  if not path.exists():
    raise CheckpointError(f'checkpoint not found: {path}')
  item = None
  if (path / 'default').exists():  # a single step's directory
    item = path / 'default'
  else:
    with ocp.CheckpointManager(path) as manager:
      step = manager.latest_step() if step is None else step
      if step is None:
        raise CheckpointError(f'no finished checkpoint in {path}')
      item = path / str(step) / 'default'
  # Restore onto this process's first device, whatever topology wrote the checkpoint:
  # a run trained on 8 devices must load on a laptop.
  checkpointer = ocp.StandardCheckpointer()
  absl_logger = logging.getLogger('absl')
  level, _ = absl_logger.level, absl_logger.setLevel(logging.ERROR)  # "no metadata file" noise
  try:
    meta = checkpointer.metadata(item)
  finally:
    absl_logger.setLevel(level)
  meta = getattr(meta, 'item_metadata', meta)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
      dict(meta.tree if hasattr(meta, 'tree') else meta),
  )
  return checkpointer.restore(item, target)['params']
