"""results.jsonl survives a crash mid-write: a torn last line is dropped, never merged."""

import json
import os

import pytest

from jaxadapt.bench import results

A, B, C = {'cell': 'a', 'x': 1}, {'cell': 'b', 'x': 2.5}, {'cell': 'c', 'x': None}


def _torn(record) -> str:
  line = json.dumps(record, sort_keys=True)
  return line[: len(line) // 2]


def test_append_and_read_round_trip(tmp_path):
  path = tmp_path / 'results.jsonl'
  assert results.read(path) == []
  for r in (A, B):
    results.append(path, r)
  assert results.read(path) == [A, B]
  assert path.read_text().endswith('\n') and len(path.read_text().splitlines()) == 2


def test_a_torn_last_line_is_dropped(tmp_path):
  path = tmp_path / 'results.jsonl'
  path.write_text(json.dumps(A) + '\n' + _torn(B))
  assert results.read(path) == [A]
  # Even a complete-looking record without its newline was cut short: its cell runs again.
  path.write_text(json.dumps(A) + '\n' + json.dumps(B))
  assert results.read(path) == [A]


def test_append_after_a_crash_cuts_the_torn_tail_instead_of_merging(tmp_path):
  """Catches the next record glued onto a torn line (every later read then fails)."""
  path = tmp_path / 'results.jsonl'
  path.write_text(json.dumps(A) + '\n' + _torn(B))
  results.append(path, C)
  assert path.read_text() == json.dumps(A) + '\n' + json.dumps(C, sort_keys=True) + '\n'
  assert results.read(path) == [A, C]
  path.write_text(_torn(A))  # a tail with no newline at all
  results.append(path, B)
  assert results.read(path) == [B]


def test_append_is_one_write_then_fsync(tmp_path, monkeypatch):
  """A record reaches the file in one write call and is flushed to disk before returning."""
  calls = []
  real_write, real_fsync = os.write, os.fsync
  monkeypatch.setattr(
      os, 'write', lambda fd, data: calls.append(('write', data)) or real_write(fd, data)
  )
  monkeypatch.setattr(os, 'fsync', lambda fd: calls.append(('fsync',)) or real_fsync(fd))
  results.append(tmp_path / 'results.jsonl', A)
  assert calls == [('write', (json.dumps(A, sort_keys=True) + '\n').encode()), ('fsync',)]


def test_a_malformed_line_in_the_middle_is_named(tmp_path):
  path = tmp_path / 'results.jsonl'
  path.write_text(json.dumps(A) + '\n' + _torn(B) + json.dumps(C) + '\n' + json.dumps(A) + '\n')
  with pytest.raises(results.ResultsError, match=r'results\.jsonl:2: malformed JSON'):
    results.read(path)
