"""The adaptation report: aggregation, method order, `data needed`, markdown, plots."""

import json
import pathlib

import pytest

from jaxadapt.bench import reports
from jaxadapt.bench.reports import adaptation as report
from jaxadapt.errors import UserError

GOLDEN = pathlib.Path(__file__).parent / 'golden'
# The suite's method order (suite.json `methods`): the order rows and legends follow.
METHODS = ('scratch', 'linear_probe', 'full_ft', 'lora', 'distill')

# acc[task][method][examples_per_class] = (seed 0, seed 1) test accuracies.
ACC = {
    'related': {
        'scratch': {1: (0.30, 0.40), 10: (0.50, 0.60), 0: (0.80, 0.80)},
        'linear_probe': {1: (0.60, 0.70), 10: (0.74, 0.76), 0: (0.78, 0.80)},
        'full_ft': {1: (0.50, 0.50), 10: (0.80, 0.84), 0: (0.90, 0.92)},  # best: 0.91
        'lora': {1: (0.82, 0.84), 10: (0.86, 0.86), 0: (0.88, 0.90)},
    },
    'unrelated': {
        'scratch': {1: (0.20, 0.20), 10: (0.60, 0.60), 0: (0.95, 0.97)},  # best: 0.96
        'full_ft': {1: (0.50, 0.50), 10: (0.90, 0.88), 0: (0.95, 0.95)},
        'distill': {10: (0.70, 0.70), 0: (0.86, 0.86)},  # 0.86 < 0.9 * 0.96
    },
}
TRAINABLE = {
    'scratch': 400000,
    'linear_probe': 650,
    'full_ft': 400000,
    'lora': 12345,
    'distill': 50000,
}


def _record(task, method, size, seed, acc):
  steps = 100 if size == 1 else 1000
  step_flops = 2.5e8 if method == 'lora' else 1e9
  return {
      'cell': f'{task}/{method}/{size}/{seed}',
      'tags': {'task': task, 'method': method, 'size': size, 'seed': seed},
      'test_accuracy': acc,
      'val_accuracy': acc,
      'trainable_params': TRAINABLE[method],
      'total_params': 400000,
      'opt_state_bytes': 2 * 4 * TRAINABLE[method],
      'step_flops': step_flops,
      'steps': steps,
      'train_flops': step_flops * steps,
      'wall_seconds': 12.3 if seed == 0 else 12.5,
      'examples_seen': 128 * steps,
      'pretrained': method in ('linear_probe', 'full_ft', 'lora'),
      'model': 'cnn',
      'train_examples': 5 * (size or 6000),
      'config': {'seed': seed},
  }


def _records():
  out = [
      {
          'cell': 'upstream',
          'tags': {'task': 'upstream', 'method': 'pretrain'},
          'config': {'seed': 0},
          'test_accuracy': 0.934,
          'wall_seconds': 41.25,
          'model': 'cnn',
          'pretrained': False,
          'train_flops': 1e13,
          'trainable_params': 1,
          'total_params': 1,
      }
  ]
  for task, methods in ACC.items():
    for method, sizes in methods.items():
      for size, accs in sizes.items():
        out += [_record(task, method, size, seed, a) for seed, a in enumerate(accs)]
  return out


@pytest.fixture
def results_dir(tmp_path):
  with open(tmp_path / 'results.jsonl', 'w') as f:
    for r in _records():
      f.write(json.dumps(r) + '\n')
  (tmp_path / 'suite.json').write_text(json.dumps({'report': 'adaptation', 'methods': METHODS}))
  return tmp_path


def _row(rows, task, method, size):
  (row,) = [
      r for r in rows if (r['task'], r['method'], r['examples_per_class']) == (task, method, size)
  ]
  return row


def test_aggregate_means_and_sample_std():
  rows = report.aggregate(_records(), METHODS)
  scratch = _row(rows, 'related', 'scratch', 1)
  assert scratch['test_accuracy_mean'] == pytest.approx(0.35)
  assert scratch['test_accuracy_std'] == pytest.approx(0.05 * 2**0.5)  # ddof=1
  assert scratch['n_seeds'] == 2
  lora = _row(rows, 'related', 'lora', 0)
  assert lora['train_flops'] == pytest.approx(2.5e11)
  assert lora['wall_seconds'] == pytest.approx(12.4)
  assert lora['trainable_fraction'] == pytest.approx(12345 / 400000)
  assert lora['opt_state_bytes'] == pytest.approx(8 * 12345)
  assert lora['examples_seen'] == pytest.approx(128000)
  single = report.aggregate([_record('related', 'lora', 10, 3, 0.7)])
  assert single[0]['test_accuracy_std'] == 0.0 and single[0]['n_seeds'] == 1
  # Rows are sorted: task, then the fixed method order, then size with "all" last.
  keys = [(r['task'], r['method'], r['examples_per_class']) for r in rows]
  assert keys[:4] == [
      ('related', 'scratch', 1),
      ('related', 'scratch', 10),
      ('related', 'scratch', 0),
      ('related', 'linear_probe', 1),
  ]


def test_upstream_excluded_and_rerun_cell_keeps_last():
  rows = report.aggregate(_records() + [_record('related', 'lora', 1, 0, 0.10)], METHODS)
  assert all(r['task'] != 'upstream' for r in rows)
  assert _row(rows, 'related', 'lora', 1)['test_accuracy_mean'] == pytest.approx(0.47)


def test_data_needed():
  text = report.terminal_table(_records(), METHODS)
  needed = {
      tuple(line.split()[:2]): line.split()[2] + (' reached' if 'not reached' in line else '')
      for line in text.splitlines()[2:]
  }
  assert needed == {
      ('related', 'scratch'): 'not reached',
      ('related', 'linear_probe'): 'not reached',
      ('related', 'full_ft'): '10',
      ('related', 'lora'): '1',
      ('unrelated', 'scratch'): 'all',
      ('unrelated', 'full_ft'): '10',
      ('unrelated', 'distill'): 'not reached',
  }
  # A lower threshold lets the linear probe qualify at one example per class (0.65 >= 0.7 * 0.91).
  assert '| linear_probe | pre-trained | 1 |' in report.markdown(_records(), METHODS, threshold=0.7)


def test_markdown_rows_and_header():
  text = report.markdown(_records(), METHODS)
  assert (
      '| method | model used | data needed | compute | time | trainable | optimizer state '
      '| 1 | 10 | all |'
  ) in text
  assert (
      '| lora | pre-trained | 1 | 250 GFLOP | 12.4 s | 3.1% | 96.4 KiB '
      '| 83.0 ± 1.4 | 86.0 ± 0.0 | 89.0 ± 1.4 |'
  ) in text
  assert (
      '| scratch | new | not reached | 1.0 TFLOP | 12.4 s | 100.0% | 3.1 MiB '
      '| 35.0 ± 7.1 | 55.0 ± 7.1 | 80.0 ± 0.0 |'
  ) in text
  assert '| linear_probe | pre-trained | not reached | 1.0 TFLOP | 12.4 s | 0.16% |' in text
  assert '| distill | new | not reached | 1.0 TFLOP | 12.4 s | 12.5% | 390.6 KiB | - |' in text
  assert '40 runs, 2 seeds (0, 1).' in text
  assert 'test accuracy 93.4%, 41.2 s wall time' in text
  assert text.index('## Task: related') < text.index('## Task: unrelated')
  assert 'pretrain |' not in text and '## Task: upstream' not in text
  lines = text.splitlines()
  start = lines.index('## Task: related')
  methods = [l.split('|')[1].strip() for l in lines[start:] if l.startswith('| ')][1:5]
  assert methods == ['scratch', 'linear_probe', 'full_ft', 'lora']


def test_formatters():
  assert report._fmt_flops(3.1e12) == '3.1 TFLOP'
  assert report._fmt_flops(2.5e11) == '250 GFLOP'
  assert report._fmt_bytes(1.5 * 2**20) == '1.5 MiB'
  assert report._fmt_percent(0.012) == '1.2%'
  assert report._fmt_seconds(12.34) == '12.3 s'


def test_write_report_deterministic_with_plots(results_dir):
  first = reports.write_report(results_dir)
  assert sorted(p.rsplit('/', 1)[-1] for p in first.plots) == [
      'accuracy_vs_data.png',
      'accuracy_vs_flops.png',
      'verdict.png',
  ]
  pngs = {}
  for p in first.plots:
    with open(p, 'rb') as f:
      pngs[p] = f.read()
    assert pngs[p].startswith(b'\x89PNG') and len(pngs[p]) > 1000
  assert (results_dir / 'report.md').read_text() == first.markdown
  assert '![accuracy vs data](accuracy_vs_data.png)' in first.markdown
  again = reports.write_report(results_dir)
  assert again.markdown == first.markdown
  for p in again.plots:
    with open(p, 'rb') as f:
      assert f.read() == pngs[p]


def test_report_and_terminal_table_are_the_golden_ones(results_dir):
  # Written from these records by the code before the report registry (tests/golden/README.md).
  report_ = reports.write_report(results_dir)
  assert report_.markdown == (GOLDEN / 'adaptation_report.md').read_text()
  assert report_.summary == (GOLDEN / 'adaptation_terminal.txt').read_text()


def test_methods_follow_the_suite_order_and_unlisted_ones_come_last():
  order = ('lora', 'scratch')  # a suite listing lora first
  rows = report.aggregate(_records(), order)
  related = list(dict.fromkeys(r['method'] for r in rows if r['task'] == 'related'))
  assert related == ['lora', 'scratch', 'full_ft', 'linear_probe']  # then by name


def test_run_without_the_tags_it_needs_names_the_run():
  bad = dict(_record('related', 'lora', 1, 0, 0.5), cell='mystery', tags={'task': 'related'})
  with pytest.raises(UserError, match="run 'mystery' lacks tag method, tag size, tag seed"):
    report.aggregate([bad])
  untagged = {k: v for k, v in bad.items() if k != 'tags'}  # a record written before tags
  with pytest.raises(UserError, match="run 'mystery' lacks tag task, tag method"):
    report.aggregate([untagged])


def test_terminal_table_shape():
  lines = report.terminal_table(_records(), METHODS).splitlines()
  assert lines[0].split() == ['task', 'method', 'data', 'needed', 'acc@1', 'acc@10', 'acc@all']
  assert set(lines[1]) == {'-'} and len(lines) == 2 + 7
  assert '35.0±7.1' in lines[2]


def test_one_seed_cells_show_no_std_and_unconverged_cells_are_marked():
  rising = dict(_record('related', 'lora', 10, 0, 0.7), still_rising=True)
  flat = dict(_record('related', 'scratch', 10, 0, 0.5), still_rising=False)
  text = report.markdown([rising, flat], METHODS)
  assert '| 70.0 ↑ |' in text and '| 50.0 |' in text
  assert '±' not in text.split('\n## Task')[1]  # one seed: no "± 0.0" that reads as no spread
  two = [rising, dict(_record('related', 'lora', 10, 1, 0.8), still_rising=False)]
  assert '| 75.0 ± 7.1 ↑ |' in report.markdown(two, METHODS)


def test_macro_metric_table_and_notes_replace_the_missing_upstream_line():
  """Bugs caught: a text suite's class-balanced metric never reaching the report; its
  macro F1 averaged over the wrong runs; 'no upstream record' shown for an imported model."""
  records = [r for r in _records() if r['cell'] != 'upstream']
  for r in records:  # macro F1 = accuracy - 0.1, so the expected cells follow from ACC
    r['test_macro_f1'] = r['test_accuracy'] - 0.1
  text = report.markdown(records, METHODS, notes=('Pretrained: X.',), macro_metric='macro_f1')
  assert 'Pretrained: X.' in text and 'Upstream pre-training' not in text
  related = text[text.index('\n## Task: related') : text.index('\n## Task: unrelated')]
  assert 'Test macro F1 (%)' in related
  assert '| method | 1 | 10 | all |' in related
  assert '| lora | 73.0 ± 1.4 | 76.0 ± 0.0 | 79.0 ± 1.4 |' in related
  # Records written before macro scores were recorded: '-', not a crash or a 0.
  old = [dict(r, test_macro_f1=None) for r in records]
  assert '| lora | - | - | - |' in report.markdown(old, METHODS, macro_metric='macro_f1')
  # Without macro_metric the report is unchanged (the image suites' golden reports).
  assert 'macro' not in report.markdown(records, METHODS)
  with pytest.raises(UserError, match="unknown macro_metric 'f1'"):
    report.markdown(records, METHODS, macro_metric='f1')
