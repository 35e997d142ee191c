"""`results.jsonl`: one JSON record per finished bench cell, safe against crashes mid-write.

`append` writes a whole line with one `write` on an O_APPEND descriptor and fsyncs it,
after cutting off a torn tail (a line without its newline, left by a crash mid-write),
so a record never ends up glued to a torn one. `read` drops a torn last line (its cell
simply runs again) and refuses a malformed line anywhere else, naming it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from jaxadapt.errors import UserError


class ResultsError(UserError):
  """A results file with a malformed record."""


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
  """The records of `path` in file order ([] if it does not exist); a torn last line is dropped."""
  if not os.path.exists(path):
    return []
  with open(path, 'rb') as f:
    text = f.read().decode('utf-8', errors='replace')
  lines = text.split('\n')
  complete = lines[:-1]  # the part after the last newline is '' or a torn record: dropped
  records = []
  for lineno, line in enumerate(complete, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      record = None
    if not isinstance(record, dict):
      raise ResultsError(
          f'{path}:{lineno}: not a JSON record (a line torn by a crash before records were '
          f'written safely?); delete that line and rerun: its cell runs again'
      )
    records.append(record)
  return records


def append(path: str | os.PathLike, record: dict[str, Any]) -> None:
  """Appends one record as one line, durably; a torn tail from a crash is cut off first."""
  line = (json.dumps(record, sort_keys=True) + '\n').encode('utf-8')
  _truncate_torn_tail(path)
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    written = os.write(fd, line)
    if written != len(line):  # a short write (disk full): do not leave half a record behind
      os.ftruncate(fd, os.fstat(fd).st_size - written)
      raise OSError(f'short write to {path}: {written} of {len(line)} bytes')
    os.fsync(fd)
  finally:
    os.close(fd)


def _truncate_torn_tail(path: str | os.PathLike) -> None:
  if not os.path.exists(path):
    return
  with open(path, 'rb+') as f:
    size = f.seek(0, os.SEEK_END)
    if size == 0:
      return
    f.seek(size - 1)
    if f.read(1) == b'\n':
      return
    # Find the end of the last complete line, reading backwards in blocks.
    end, block = size, 1 << 16
    while end > 0:
      start = max(0, end - block)
      f.seek(start)
      chunk = f.read(end - start)
      cut = chunk.rfind(b'\n')
      if cut >= 0:
        f.truncate(start + cut + 1)
        return
      end = start
    f.truncate(0)
