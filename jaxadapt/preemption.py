"""Stop on SIGTERM / Ctrl-C at a step every process agrees on, so the last save is collective.

One process: a signal sets a flag; the loop saves a checkpoint at the end of the current
step and exits. Several processes: each would see the signal at its own step and the
collective save would deadlock, so JAX's preemption service decides instead. After
`jax.distributed.initialize`, JAX's notifier owns SIGTERM: a notice on any process reaches
the coordination service, and `reached_preemption_sync_point(step)` turns true on every
process at the same step. Ctrl-C is forwarded to that notifier as a SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys

import jax


def _preemption_service_running() -> bool:
  """`jax.distributed.initialize` starts the service unless it is configured off."""
  return jax.distributed.is_initialized() and jax.config.jax_enable_preemption_service


class StopRequest:
  """`requested(step)` is True at the step where the run should save and stop.

  Call it at every step on every process (the multi-process agreement needs that).
  """

  def __init__(self):
    self._flag = False
    self._old = {}
    self._agreed = jax.process_count() > 1 and _preemption_service_running()
    if jax.process_count() > 1 and not self._agreed:
      print(
          'warning: JAX preemption service is off (jax_enable_preemption_service): a signal '
          'to one process stops only that one',
          file=sys.stderr,
          flush=True,
      )
    # Under the preemption service SIGTERM stays with JAX's notifier; Ctrl-C is forwarded to it.
    signals = (signal.SIGINT,) if self._agreed else (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: leave signals alone.
        pass

  def _handle(self, signum, frame):
    if self._flag and signum == signal.SIGINT:
      raise KeyboardInterrupt  # A second Ctrl-C means stop now.
    self._flag = True
    if self._agreed:
      os.kill(os.getpid(), signal.SIGTERM)  # tell JAX's notifier: all processes agree on a step

  def requested(self, step: int) -> bool:
    if self._agreed:
      from jax.experimental import multihost_utils

      return multihost_utils.reached_preemption_sync_point(step)
    return self._flag

  def restore(self) -> None:
    for sig, handler in self._old.items():
      signal.signal(sig, handler)
