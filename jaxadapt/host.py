"""Host-process set-up for fast CPU training: a malloc that keeps the memory it frees.

Call `keep_freed_memory()` before the first big allocation (the CLI and tests/conftest.py do).
It changes how fast a run goes, never what it computes (measured: benchmarks/peer_cnn.py).
"""

from __future__ import annotations

import ctypes


def keep_freed_memory() -> bool:
  """Makes glibc's malloc reuse freed memory instead of returning it to the OS.

  XLA:CPU allocates every execution's temporary buffer afresh. glibc serves blocks above its
  mmap threshold (32 MiB at most) with mmap and unmaps them when freed, so each train step of
  the default CNN faulted in 55 MB of new zeroed pages: 13,000 page faults, a third of the
  step's CPU time. Without mmap and with a high trim threshold the same heap pages serve
  every step (PyTorch's CPU tuning guide swaps in jemalloc or tcmalloc for the same reason).
  Returns whether it applied: glibc only.
  """
  try:
    mallopt = ctypes.CDLL('libc.so.6').mallopt
  except (OSError, AttributeError):
    return False
  m_trim_threshold, m_mmap_max = -1, -4  # glibc's malloc.h
  return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))
