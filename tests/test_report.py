"""The bench report: loading, aggregation, `data needed`, markdown, plots."""

import json

import pytest

from jaxadapt.bench import report
from jaxadapt.errors import UserError

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
      'task': task,
      'method': method,
      'examples_per_class': size,
      'seed': seed,
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
          'cell': 'upstream/pretrain/0/0',
          'task': 'upstream',
          'method': 'pretrain',
          'examples_per_class': 0,
          'seed': 0,
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
      f.write(json.dumps(r) + '\n\n')  # blank lines are allowed
  return tmp_path


def _row(rows, task, method, size):
  (row,) = [
      r for r in rows if (r['task'], r['method'], r['examples_per_class']) == (task, method, size)
  ]
  return row


def test_load_skips_blank_lines(results_dir):
  assert len(report.load_results(results_dir / 'results.jsonl')) == len(_records())


def test_malformed_line_names_line_and_file(tmp_path):
  path = tmp_path / 'results.jsonl'
  good = json.dumps(_records()[1])
  path.write_text(f'{good}\n\n{good}\n{{"task": "related", oops\n')
  with pytest.raises(UserError, match=r'results\.jsonl:4:'):
    report.load_results(path)
  path.write_text(f'{good}\n[1, 2]\n')
  with pytest.raises(UserError, match=r':2:'):
    report.load_results(path)


def test_aggregate_means_and_population_std():
  rows = report.aggregate(_records())
  scratch = _row(rows, 'related', 'scratch', 1)
  assert scratch['test_accuracy_mean'] == pytest.approx(0.35)
  assert scratch['test_accuracy_std'] == pytest.approx(0.05)  # ddof=0
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
  rows = report.aggregate(_records() + [_record('related', 'lora', 1, 0, 0.10)])
  assert all(r['task'] != 'upstream' for r in rows)
  assert _row(rows, 'related', 'lora', 1)['test_accuracy_mean'] == pytest.approx(0.47)


def test_data_needed():
  text = report.terminal_table(_records())
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
  assert '| linear_probe | pre-trained | 1 |' in report.markdown(_records(), threshold=0.7)


def test_markdown_rows_and_header():
  text = report.markdown(_records())
  assert (
      '| method | model used | data needed | compute | time | trainable | optimizer state '
      '| 1 | 10 | all |'
  ) in text
  assert (
      '| lora | pre-trained | 1 | 250 GFLOP | 12.4 s | 3.1% | 96.4 KiB '
      '| 83.0 ± 1.0 | 86.0 ± 0.0 | 89.0 ± 1.0 |'
  ) in text
  assert (
      '| scratch | new | not reached | 1.0 TFLOP | 12.4 s | 100.0% | 3.1 MiB '
      '| 35.0 ± 5.0 | 55.0 ± 5.0 | 80.0 ± 0.0 |'
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
  text, paths = report.write_report(results_dir)
  assert sorted(p.rsplit('/', 1)[-1] for p in paths) == [
      'accuracy_vs_data.png',
      'accuracy_vs_flops.png',
  ]
  pngs = {}
  for p in paths:
    with open(p, 'rb') as f:
      pngs[p] = f.read()
    assert pngs[p].startswith(b'\x89PNG') and len(pngs[p]) > 1000
  assert (results_dir / 'report.md').read_text() == text
  assert '![accuracy vs data](accuracy_vs_data.png)' in text
  first = (results_dir / 'report.md').read_bytes()
  text2, paths2 = report.write_report(results_dir)
  assert text2 == text and (results_dir / 'report.md').read_bytes() == first
  for p in paths2:
    with open(p, 'rb') as f:
      assert f.read() == pngs[p]


def test_terminal_table_shape():
  lines = report.terminal_table(_records()).splitlines()
  assert lines[0].split() == ['task', 'method', 'data', 'needed', 'acc@1', 'acc@10', 'acc@all']
  assert set(lines[1]) == {'-'} and len(lines) == 2 + 7
  assert '35.0±5.0' in lines[2]
