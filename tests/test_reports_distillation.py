"""The distillation report: gap closed, test errors, paired seeds, figure."""

import json
import pathlib

from jaxadapt.bench import reports


def _rec(cell, acc, **tags):
  return {
      'cell': cell,
      'test_accuracy': acc,
      'wall_seconds': 60.0,
      'total_params': 1000,
      'tags': tags,
  }


def test_gap_closed_errors_and_seeds_that_beat_the_student_alone(tmp_path):
  records = [
      _rec('t', 0.99, role='teacher'),
      _rec('a0', 0.90, role='alone', seed=0),
      _rec('a1', 0.92, role='alone', seed=1),
      _rec('d0', 0.96, role='distilled', temperature=4.0, seed=0),
      _rec('d1', 0.96, role='distilled', temperature=4.0, seed=1),
      _rec('d2', 0.91, role='distilled', temperature=1.0, seed=0),
  ]
  (tmp_path / 'suite.json').write_text(
      json.dumps({'report': 'distillation', 'test_examples': 1000, 'title': 'D'})
  )
  (tmp_path / 'results.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  report = reports.write_report(tmp_path)
  text = report.markdown
  assert text.startswith('# D\n\n6 runs, 6.0 min of training')
  # alone = 0.91, teacher = 0.99: T=4 closes (0.96 - 0.91) / 0.08 = 62.5% of the gap.
  assert '| distilled, T=4 | 1,000 | 96.0 ± 0.0 | 40 | 62% | 2 of 2 |' in text
  assert '| student alone | 1,000 | 91.0 ± 1.4 | 90 | 0% | |' in text
  assert '| distilled, T=1 | 1,000 | 91.0 | 90 | 0% | 1 of 1 |' in text  # 0.91 > seed 0's 0.90
  assert 'test errors (of 1,000)' in text
  assert text.endswith('\n![distillation_vs_temperature](distillation_vs_temperature.png)\n')
  assert report.summary == text  # the terminal shows the whole report
  assert pathlib.Path(report.plots[0]).stat().st_size > 5000
