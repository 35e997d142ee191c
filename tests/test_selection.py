"""Selection on validation (jaxadapt/bench/selection.py) and grid expansion (matrix.py)."""

from jaxadapt.bench import matrix, selection
from jaxadapt.bench.reports import adaptation


def _run(method, lr, seed, val, test):
  return {
      'cell': f'related/{method}/10/{seed}/optim.lr={lr}',
      'tags': {
          'task': 'related',
          'method': method,
          'size': 10,
          'seed': seed,
          'grid': {'optim.lr': lr},
      },
      'val_accuracy': val,
      'test_accuracy': test,
  }


def _flat(records):
  return [dict(r, **r['tags'], examples_per_class=r['tags']['size']) for r in records]


def test_selection_uses_mean_val_accuracy_never_test():
  # lr 1e-2 has the best test accuracy but the worse validation: a selection on test (the
  # bug this catches) would pick it.
  records = [
      _run('lora', 1e-3, 0, 0.80, 0.70),
      _run('lora', 1e-3, 1, 0.70, 0.70),
      _run('lora', 1e-2, 0, 0.74, 0.95),
      _run('lora', 1e-2, 1, 0.74, 0.95),
  ]
  kept, (choice,) = selection.select(_flat(records))
  assert choice['chosen'] == {'optim.lr': 1e-3}
  assert [r['cell'] for r in kept] == [records[0]['cell'], records[1]['cell']]
  assert choice['scores'] == {'{"optim.lr": 0.001}': 0.75, '{"optim.lr": 0.01}': 0.74}
  text = adaptation.markdown(records, ('lora',))
  assert (
      '| related | lora | 10 | optim.lr=0.001 | optim.lr=0.001: 75.0; optim.lr=0.01: 74.0 |' in text
  )
  assert '| 70.0 ± 0.0 |' in text  # the chosen point's test accuracy, not 95


def test_no_grid_says_one_point():
  records = [
      dict(
          _run('lora', 1e-3, 0, 0.8, 0.7),
          tags={'task': 'related', 'method': 'lora', 'size': 10, 'seed': 0},
      )
  ]
  assert 'one-point grid' in adaptation.markdown(records)


def test_grid_expands_into_named_tagged_runs():
  m = dict(
      tasks=[dict(name='t')],
      methods=[
          dict(
              name='d',
              config='c.py',
              grid={'optim.lr': [1e-3, 3e-3], 'distill.temperature': [1, 4]},
          )
      ],
      sizes=[10],
      seeds=[0],
      batch_size=64,
      steps=dict(epochs=1, min=1, max=2),
  )
  runs = matrix.expand(m)
  assert [r['name'] for r in runs] == [
      't/d/10/0/optim.lr=0.001+distill.temperature=1',
      't/d/10/0/optim.lr=0.001+distill.temperature=4',
      't/d/10/0/optim.lr=0.003+distill.temperature=1',
      't/d/10/0/optim.lr=0.003+distill.temperature=4',
  ]
  assert runs[1]['tags']['grid'] == {'optim.lr': 1e-3, 'distill.temperature': 4}
  assert runs[1]['overrides'][:2] == ('optim.lr=0.001', 'distill.temperature=4')
