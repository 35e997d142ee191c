"""The results file of a suite: `results.jsonl`, one JSON record per finished run.

A record is written in one `write` call ending in a newline, so a crash can only leave a
last line without its newline: readers skip that line and the next append drops it. Any
other malformed line is an error that names the file and line.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

from jaxadapt.errors import UserError


class ResultsError(UserError):
  """A results file that cannot be read; the message names the file and line."""


def read(path: str | os.PathLike) -> list[dict]:
  """The records of `path` in file order ([] if there is no such file)."""
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    text = f.read()
  lines = text.split('\n')
  records = []
  for lineno, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      if lineno == len(lines):  # no newline after it: a write cut by a crash; that run reruns
        continue
      raise ResultsError(f'{path}:{lineno}: malformed JSON ({e.msg})') from None
    if not isinstance(record, dict):
      raise ResultsError(f'{path}:{lineno}: expected a JSON object, got {type(record).__name__}')
    if 'cell' not in record:
      raise ResultsError(f"{path}:{lineno}: record lacks 'cell' (the name of its run)")
    records.append(record)
  return records


def append(path: str | os.PathLike, record: dict[str, Any]) -> None:
  """Appends one record as one line, first dropping a line cut short by a crash."""
  line = json.dumps(record, sort_keys=True) + '\n'
  if os.path.exists(path) and os.path.getsize(path):
    with open(path, 'rb+') as f:
      f.seek(-1, os.SEEK_END)
      if f.read(1) != b'\n':  # a partial last record: keep everything up to its start
        f.seek(0)
        kept = f.read().rpartition(b'\n')
        f.seek(0)
        f.truncate(len(kept[0]) + len(kept[1]))
  with open(path, 'a', encoding='utf-8') as f:
    f.write(line)


def latest(records: Iterable[dict]) -> list[dict]:
  """One record per run: a run recorded twice keeps its last record, in last-seen order."""
  by_cell: dict[Any, dict] = {}
  for r in records:
    by_cell.pop(r['cell'], None)  # re-insert so the order follows the last occurrence
    by_cell[r['cell']] = r
  return list(by_cell.values())
