"""The table report: rows x columns of accuracy, ours beside the published values."""

import json

from jaxadapt.bench import reports


def _rec(cell, acc, **tags):
  return {'cell': cell, 'test_accuracy': acc, 'wall_seconds': 60.0, 'tags': tags}


def test_published_beside_ours_and_the_quick_note(tmp_path):
  records = [
      _rec('a', 0.30, model='linear', positions='fixed', seed=0),
      _rec('b', 0.34, model='linear', positions='fixed', seed=1),
      _rec('c', 0.90, model='cnn', positions='shuffled', seed=0),
      _rec('untagged', 0.5),
  ]
  meta = {
      'report': 'table',
      'quick': True,
      'table': {'rows': 'model', 'columns': 'positions'},
      'published': {'linear': {'fixed': 0.32}, 'cnn': {'shuffled': 0.56}},
  }
  (tmp_path / 'suite.json').write_text(json.dumps(meta))
  (tmp_path / 'results.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  text = reports.write_report(tmp_path).markdown
  assert text.startswith('# table\n\n_Quick variant: tiny models and steps;')
  assert '| model | fixed | shuffled | - |' in text
  assert '| linear | 32.0 ± 2.8 / 32 | - | - |' in text
  assert '| cnn | - | 90.0 / 56 | - |' in text
  assert '| - | - | - | 50.0 |' in text  # a run without the tags still shows
