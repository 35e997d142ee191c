"""`results.jsonl`: one JSON record per finished run, safe against crashes mid-write.

`append` writes a whole line with one `write` on an O_APPEND descriptor and fsyncs it,
after cutting off a torn tail (a line without its newline, left by a crash mid-write),
so a record never ends up glued to a torn one. `read` drops a torn last line (its run
simply runs again) and refuses a malformed line anywhere else, naming file and line.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

from jaxadapt.errors import UserError


class ResultsError(UserError):
  """A results file that cannot be read; the message names the file and line."""


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
  """The records of `path` in file order ([] if it does not exist); a torn last line is dropped."""
  if not os.path.exists(path):
    return []
  with open(path, 'rb') as f:
    text = f.read().decode('utf-8', errors='replace')
  complete = text.split('\n')[:-1]  # after the last newline: '' or a torn record, dropped
  records = []
  for lineno, line in enumerate(complete, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise ResultsError(
          f'{path}:{lineno}: malformed JSON ({e.msg}); delete that line and rerun: its run '
          f'runs again'
      ) from None
    if not isinstance(record, dict):
      raise ResultsError(f'{path}:{lineno}: expected a JSON object, got {type(record).__name__}')
    if 'cell' not in record:
      raise ResultsError(f"{path}:{lineno}: record lacks 'cell' (the name of its run)")
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


def latest(records: Iterable[dict]) -> list[dict]:
  """One record per run: a run recorded twice keeps its last record, in last-seen order."""
  by_cell: dict[Any, dict] = {}
  for r in records:
    by_cell.pop(r['cell'], None)  # re-insert so the order follows the last occurrence
    by_cell[r['cell']] = r
  return list(by_cell.values())


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
