"""results.jsonl: reading, a line cut by a crash, appending after one, one record per run."""

import json

import pytest

from jaxadapt.bench import results


def _line(cell, acc=0.5):
  return json.dumps({'cell': cell, 'test_accuracy': acc}) + '\n'


def test_read_skips_blank_lines_and_a_missing_file(tmp_path):
  path = tmp_path / 'results.jsonl'
  assert results.read(path) == []
  path.write_text(_line('a') + '\n' + _line('b') + '\n')
  assert [r['cell'] for r in results.read(path)] == ['a', 'b']


def test_a_last_line_cut_by_a_crash_is_skipped_and_dropped_on_append(tmp_path):
  path = tmp_path / 'results.jsonl'
  path.write_text(_line('a') + _line('b')[:15])  # the crash cut b's write short
  assert [r['cell'] for r in results.read(path)] == ['a']
  results.append(path, {'cell': 'b', 'test_accuracy': 0.7})
  assert path.read_text() == _line('a') + json.dumps({'cell': 'b', 'test_accuracy': 0.7}) + '\n'
  assert [r['cell'] for r in results.read(path)] == ['a', 'b']
  path.write_text('{"cell": "x"')  # the only line, cut: the file starts over
  results.append(path, {'cell': 'y'})
  assert [r['cell'] for r in results.read(path)] == ['y']


def test_malformed_lines_name_file_and_line(tmp_path):
  path = tmp_path / 'results.jsonl'
  path.write_text(f'{_line("a")}\n{_line("b")}{{"cell": "c", oops\n')  # complete, so not a crash
  with pytest.raises(results.ResultsError, match=r'results\.jsonl:4: malformed JSON'):
    results.read(path)
  path.write_text(f'{_line("a")}[1, 2]\n')
  with pytest.raises(results.ResultsError, match=r':2: expected a JSON object, got list'):
    results.read(path)
  path.write_text('{"test_accuracy": 0.5}\n')
  with pytest.raises(results.ResultsError, match=r":1: record lacks 'cell'"):
    results.read(path)


def test_latest_keeps_the_last_record_of_each_run_in_last_seen_order():
  records = [{'cell': 'a', 'v': 1}, {'cell': 'b', 'v': 2}, {'cell': 'a', 'v': 3}]
  assert results.latest(records) == [{'cell': 'b', 'v': 2}, {'cell': 'a', 'v': 3}]
