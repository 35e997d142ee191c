"""Host set-up: a malloc that reuses the memory it frees."""

import subprocess
import sys


def test_keep_freed_memory_stops_page_faults_on_reallocation():
  # A 64 MB block allocated, written and freed 5 times, like XLA's per-step temporary buffer:
  # glibc's default maps fresh pages each time (16k page faults per round); kept memory does
  # not fault again after the first round.
  code = (
      'import ctypes, resource, sys\n'
      'from jaxadapt import host\n'
      'applied = host.keep_freed_memory() if sys.argv[1] == "keep" else None\n'
      'libc = ctypes.CDLL("libc.so.6")\n'
      'libc.malloc.restype = ctypes.c_void_p\n'
      'libc.free.argtypes = [ctypes.c_void_p]\n'
      'faults = []\n'
      'for _ in range(5):\n'
      '  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n'
      '  block = libc.malloc(64 << 20)\n'
      '  ctypes.memset(block, 1, 64 << 20)\n'
      '  libc.free(block)\n'
      '  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n'
      'print(applied, max(faults[1:]))\n'
  )
  run = lambda mode: subprocess.run(
      [sys.executable, '-c', code, mode], capture_output=True, text=True, check=True
  ).stdout.split()
  assert int(run('default')[1]) > 10_000
  applied, faults = run('keep')
  assert applied == 'True' and int(faults) < 100
