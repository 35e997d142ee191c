"""One writer per workdir: a lock file holding the owner's pid and hostname.

Two runs writing one workdir interleave their metrics and fight over checkpoints, so
the process-0 writer of a run takes `<workdir>/.lock` before writing anything and
removes it when the run ends (normally, by an error, or by a signal). A lock left by
a run that was killed (`kill -9`, a crashed machine) names a pid: on the same host a
pid that no longer exists is a stale lock, taken over with a warning. A lock from
another host cannot be checked from here; the error says how to remove it. (A pid reused
by an unrelated process after a crash keeps the lock until that process ends: the error
names the pid.) Cloud workdirs (gs://) have no atomic file creation and are not locked.

In a multi-process run only process 0 takes the lock, and every process learns the
outcome, so all of them stop with the same one-line error.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import jax
from etils import epath

from jaxadapt.errors import UserError

LOCK_NAME = '.lock'


class WorkdirLockedError(UserError):
  """Another live run holds the workdir."""


class WorkdirLock:
  """`acquire()` once the workdir exists; `release()` always (a no-op if not held)."""

  def __init__(self, workdir: epath.PathLike):
    self.path = epath.Path(workdir) / LOCK_NAME
    self.held = False

  def acquire(self) -> None:
    error = ''
    if jax.process_index() == 0 and '://' not in str(self.path):  # no atomic create on gs://
      try:
        _take(self.path)
        self.held = True
      except WorkdirLockedError as e:
        error = str(e)
    if jax.process_count() > 1:  # every process stops, not only the one that saw the lock
      error = _from_process_0(error)
    if error:
      raise WorkdirLockedError(error)

  def release(self) -> None:
    if self.held:
      self.held = False
      try:
        if _read(self.path).get('pid') == os.getpid():
          self.path.unlink()
      except OSError:
        pass  # already gone: nothing to release

  def __enter__(self) -> 'WorkdirLock':
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _owner() -> dict:
  return {'pid': os.getpid(), 'host': socket.gethostname(), 'since': time.time()}


def _take(path: epath.Path) -> None:
  """Creates the lock atomically (hard link of a complete file), replacing a stale one."""
  tmp = path.parent / f'{LOCK_NAME}.{os.getpid()}.tmp'
  tmp.write_text(json.dumps(_owner()))
  try:
    for _ in range(2):  # the second try follows the removal of a stale lock
      try:
        os.link(
            os.fspath(tmp), os.fspath(path)
        )  # fails if the lock exists: no window where two runs both win
        return
      except FileExistsError:
        owner = _read(path)
        if not _is_stale(owner):
          raise WorkdirLockedError(_held_message(path, owner)) from None
        print(
            f'warning: removing the stale lock {path} of a run that is gone '
            f"(pid {owner.get('pid')} on {owner.get('host')})",
            file=sys.stderr,
            flush=True,
        )
        path.unlink(missing_ok=True)
    raise WorkdirLockedError(f'could not take the lock {path}: another run keeps taking it')
  finally:
    tmp.unlink(missing_ok=True)


def _read(path: epath.Path) -> dict:
  try:
    owner = json.loads(path.read_text())
  except (OSError, ValueError):
    return {}
  return owner if isinstance(owner, dict) else {}


def _is_stale(owner: dict) -> bool:
  """True if the owner is a process of this host that no longer exists."""
  if not owner:
    return True  # unreadable: not one of ours (a lock appears complete or not at all)
  pid = owner.get('pid')
  if owner.get('host') != socket.gethostname() or not isinstance(pid, int):
    return False  # another host's process cannot be checked from here
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except PermissionError:
    return False  # alive, owned by another user
  return False


def _held_message(path: epath.Path, owner: dict) -> str:
  since = owner.get('since')
  when = time.strftime(' since %Y-%m-%d %H:%M:%S', time.localtime(since)) if since else ''
  return (
      f"workdir {path.parent} is in use by another run (pid {owner.get('pid')} on "
      f"{owner.get('host')}{when}); wait for it to finish, use another --workdir, or if that "
      f'run is dead delete {path}'
  )


def _from_process_0(error: str) -> str:
  """Process 0's error message (or '') on every process."""
  from jax.experimental import multihost_utils
  import numpy as np

  data = np.zeros(1024, np.uint8)
  raw = error.encode()[:1024]
  data[: len(raw)] = np.frombuffer(raw, np.uint8)
  data = multihost_utils.broadcast_one_to_all(data)
  return bytes(np.asarray(data)).rstrip(b'\0').decode(errors='replace')
