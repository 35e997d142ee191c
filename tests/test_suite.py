"""Suite files: loading, --quick, matrix expansion, suite.json, and every check before a run."""

import pathlib
import re

import pytest

from jaxadapt.bench import suite

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUITES = ROOT / 'configs/suites'


def _suite(tmp_path, body: str, report: str = 'table') -> str:
  path = tmp_path / 'suite.py'
  path.write_text(
      'import ml_collections\n'
      'def get_suite(arg=None):\n'
      '  s = ml_collections.ConfigDict()\n'
      f'  s.report = {report!r}\n'
      + ''.join(f'  {line}\n' for line in body.splitlines())
      + '  return s\n'
  )
  return str(path)


MATRIX = (
    "s.matrix = dict(tasks=[dict(name='t')], methods=[dict(name='m', config='x.py')], "
    'sizes=(1,), seeds=(0,), batch_size=8, steps=dict(epochs=1.0, min=1, max=2))'
)


def test_fashion_mnist_matrix_expands_after_its_upstream_run_and_records_the_method_order():
  s = suite.load(f'{SUITES}/fashion_mnist.py')
  names = [r['name'] for r in s['runs']]
  # 9 cells (5 related sizes + 4 unrelated) x 3 seeds x 26 runs: 7 methods x 3 learning
  # rates, distill's 2 x 2 (T, alpha), the fast probe once.
  assert names[0] == 'upstream' and len(names) == 1 + 9 * 3 * 26
  assert 'unrelated/full_ft/1000/0/optim.lr=0.002' not in names  # digits stop at max_size=100
  meta = suite.meta(s, quick=False)
  assert meta['report'] == 'adaptation' and meta['quick'] is False
  assert meta['methods'][0] == 'scratch' and meta['methods'][-2:] == ['student_alone', 'distill']
  lrs = [n for n in names if n.startswith('related/lora/10/1/')]
  assert lrs == [f'related/lora/10/1/optim.lr={v}' for v in (0.003333, 0.01, 0.03)]
  # Every distill grid point learns from the same teacher: full_ft at its default rate.
  distill = [n for n in names if n.startswith('related/distill/10/1/')]
  assert len(distill) == 4
  for n in distill:
    assert suite.refs(s['runs'][names.index(n)]) == ['related/full_ft/10/1/optim.lr=0.002']
  assert suite.refs(s['runs'][names.index('related/scratch/10/1/optim.lr=0.002')]) == []
  assert suite.refs(s['runs'][names.index('related/lora/10/1/optim.lr=0.01')]) == ['upstream']
  assert 'related/linear_probe_fast/10/1' in names  # its penalty is chosen on val inside the run


def test_vit_peft_suite_runs_every_peft_method_on_its_own_upstream_vit(tmp_path):
  """Bugs caught: a PEFT method dropped from the ViT suite, a method adapting the CNN or
  another run's weights, shallow and deep prompts built alike, scratch given the weights."""
  from jaxadapt.bench import runlist

  s = suite.load(f'{SUITES}/fashion_mnist_vit.py')
  names = [r['name'] for r in s['runs']]
  methods = suite.meta(s, quick=False)['methods']
  assert methods == [
      'scratch',
      'linear_probe_fast',
      'full_ft',
      'lora',
      'dora',
      'bitfit',
      'ia3',
      'prompt',
      'prompt_deep',
  ]
  assert names[0] == 'upstream' and len(names) == 1 + len(methods) * 2 * 3  # sizes x seeds
  assert len(suite.load(f'{SUITES}/fashion_mnist_vit.py', quick=True)['runs']) == 1 + 9 * 2
  by_name = {r['name']: r for r in s['runs']}
  configs = {
      m: runlist.run_config(by_name[f'related/{m}/10/1'], tmp_path, s['common']) for m in methods
  }
  assert {c.model.name for c in configs.values()} == {'vit'}
  assert suite.refs(by_name['related/scratch/10/1']) == []
  assert not configs['scratch'].init.checkpoint
  for m in methods[1:]:
    assert suite.refs(by_name[f'related/{m}/10/1']) == ['upstream'], m
  kwargs = lambda m: configs[m].model.kwargs
  assert (kwargs('prompt').num_prompts, kwargs('prompt').prompt_depth) == (8, 1)
  assert (kwargs('prompt_deep').num_prompts, kwargs('prompt_deep').prompt_depth) == (8, 4)
  assert [configs[m].adapt.method for m in ('lora', 'dora', 'ia3', 'bitfit')] == [
      'lora',
      'dora',
      'ia3',
      'bitfit',
  ]


def test_quick_passes_quick_true_to_every_kind_of_suite():
  assert len(suite.load(f'{SUITES}/fashion_mnist.py', quick=True)['runs']) == 1 + 36
  assert len(suite.load(f'{SUITES}/fashion_mnist.py:tiny', quick=True)['runs']) == 1 + 12
  assert len(suite.load(f'{SUITES}/mnist1d.py', quick=True)['runs']) == 8
  cifar = suite.load(f'{SUITES}/cifar10.py', quick=True)  # expands offline; runs need CIFAR-10
  assert [r['name'] for r in cifar['runs']][:3] == [
      'upstream',
      'related/scratch/10/0',
      'related/linear_probe_fast/10/0',
  ]


def test_meta_keeps_what_the_report_shows(tmp_path):
  spec = _suite(
      tmp_path,
      "s.title = 'T'\ns.published = dict(a=1)\ns.table = dict(rows='r', columns='c')\n"
      "s.runs = [dict(name='a', config='x.py')]",
  )
  meta = suite.meta(suite.load(spec), quick=True)
  assert meta == {
      'report': 'table',
      'quick': True,
      'title': 'T',
      'published': {'a': 1},
      'table': {'rows': 'r', 'columns': 'c'},
  }


@pytest.mark.parametrize(
    'body, message',
    [
        (
            "s.runs = [dict(name='a', config='x.py'), dict(name='a', config='x.py')]",
            "two runs are named 'a'",
        ),
        (
            "s.runs = [dict(name='b', config='x.py:base={run:a}'), dict(name='a', config='x.py')]",
            "uses {run:a}, which is not an earlier run; list 'a' before 'b'",
        ),
        (
            "s.runs = [dict(name='b', config='x.py', overrides=('k={run:aa}',)), "
            "dict(name='a', config='x.py')]",
            "uses {run:aa}, but no run is named 'aa' (did you mean 'a'?)",
        ),
        ("s.runs = [dict(name='a b', config='x.py')]", "needs a 'name'"),
        ("s.runs = [dict(name='a')]", "run 'a' needs a 'config' file"),
        ('s.runs = []', 'lists no runs'),
        (MATRIX.replace('batch_size=8, ', ''), 'matrix lacks batch_size'),
        (MATRIX.replace("config='x.py'", "config='x.py:k={sise}'"), 'uses {sise}; a method may'),
        (MATRIX.replace("name='m', config='x.py'", "name='m/1', config='x.py'"), "got 'm/1'"),
        (
            MATRIX.replace("[dict(name='t')]", "[dict(name='t'), dict(name='t')]"),
            'two matrix tasks',
        ),
        (MATRIX.replace("config='x.py'", "conf='x.py'"), "method 'm' needs a 'config' file"),
        (MATRIX.replace('min=1, ', ''), 'matrix steps lacks min'),
    ],
)
def test_bad_suites_fail_at_load(tmp_path, body, message):
  with pytest.raises(suite.SuiteError, match=re.escape(message)):
    suite.load(_suite(tmp_path, body))


def test_bad_report_kind_file_and_arguments(tmp_path):
  with pytest.raises(suite.SuiteError, match="unknown report 'tabel'.*did you mean 'table'"):
    suite.load(_suite(tmp_path, "s.runs = [dict(name='a', config='x.py')]", report='tabel'))
  with pytest.raises(suite.SuiteError, match='suite file not found'):
    suite.load(str(tmp_path / 'nope.py'))
  with pytest.raises(suite.SuiteError, match='is a config file, not a suite: train it with'):
    suite.load(f'{SUITES}/transferability_run.py')
  with pytest.raises(suite.SuiteError, match="unknown config argument 'seed'"):
    suite.load(f'{SUITES}/mnist1d.py:seed=3')
  no_report = tmp_path / 'no_report.py'
  no_report.write_text('def get_suite(arg=None):\n  return {"runs": []}\n')
  with pytest.raises(suite.SuiteError, match='lacks report; a suite defines report'):
    suite.load(str(no_report))
