"""Seeds trained together under jax.vmap reproduce the seeds trained one after another."""

import json
import pathlib

import pytest

from jaxadapt import cli, metrics, train
from jaxadapt.bench import runner, seeds

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = str(ROOT / 'configs/suites/fashion_mnist.py') + ':tiny'
SUMMARY_KEYS = (
    'method',
    'model',
    'steps',
    'batch_size',
    'examples_seen',
    'train_examples',
    'step_flops',
    'train_flops',
    'opt_state_bytes',
    'total_params',
    'trainable_params',
    'val/accuracy',
    'val/loss',
    'test/accuracy',
    'test/loss',
)


def _configs(method, upstream='unused', seed_list=(0, 1)):
  suite = runner.load_suite(TINY)
  return [
      runner.cell_config(suite, 'related', method, 10, s, str(upstream), None) for s in seed_list
  ]


def _assert_matches_sequential(configs, tmp_path):
  together = seeds.train_seeds(configs)
  assert len(together) == len(configs)
  for i, (config, got) in enumerate(zip(configs, together)):
    workdir = tmp_path / f'seed{i}'
    train.train(config, str(workdir), quiet=True)
    want = json.loads((workdir / 'summary.json').read_text())
    assert set(SUMMARY_KEYS) <= set(got) and set(want) <= set(got)
    for k in (
        'method',
        'model',
        'steps',
        'batch_size',
        'examples_seen',
        'train_examples',
        'opt_state_bytes',
        'total_params',
        'trainable_params',
    ):
      assert got[k] == want[k], k
    for k in ('val/accuracy', 'test/accuracy'):
      assert got[k] == pytest.approx(want[k], abs=1e-4), k
    for k in ('val/loss', 'test/loss'):
      assert got[k] == pytest.approx(want[k], rel=1e-4), k
    last_train = [r for r in metrics.read_metrics(workdir) if 'train/loss' in r][-1]
    assert got['train/loss'] == pytest.approx(last_train['train/loss'], rel=1e-4)
    assert got['train/accuracy'] == pytest.approx(last_train['train/accuracy'], abs=1e-4)
    assert got['step_flops'] > 0 and got['train_flops'] == got['step_flops'] * got['steps']
  return together


def test_scratch_seeds_match_sequential_runs(tmp_path):
  together = _assert_matches_sequential(_configs('scratch'), tmp_path)
  # Different seeds: different init, subset and batch order, hence different runs.
  assert together[0]['train/loss'] != together[1]['train/loss']
  assert together[0]['test/loss'] != together[1]['test/loss']


def test_lora_from_checkpoint_matches_sequential_runs(tmp_path):
  upstream = tmp_path / 'upstream'
  assert (
      cli.main(
          [
              'train',
              '--quiet',
              '--config',
              str(ROOT / 'configs/fashion_mnist/pretrain.py') + ':smoke',
              '--config.model.kwargs.widths=(4, 8)',
              '--config.model.kwargs.dense=16',
              '--workdir',
              str(upstream),
          ]
      )
      == 0
  )
  configs = _configs('lora', upstream)
  assert configs[0].init.checkpoint == str(upstream) and configs[0].adapt.lora.rules
  together = _assert_matches_sequential(configs, tmp_path)
  assert together[0]['trainable_params'] < together[0]['total_params']


def test_unrolled_seeds_match_sequential_runs(tmp_path):
  configs = _configs('scratch')
  want = seeds.train_seeds(configs)
  got = seeds.train_seeds(configs, batching='unroll')
  for g, w in zip(got, want):
    for k in ('test/accuracy', 'val/accuracy', 'train/loss', 'test/loss'):
      assert g[k] == pytest.approx(w[k], rel=1e-4, abs=1e-4), k


def test_configs_differing_beyond_the_seed_are_refused():
  configs = _configs('scratch')
  configs[1].optim.lr = configs[0].optim.lr * 2
  with pytest.raises(ValueError, match='optim.lr'):
    seeds.train_seeds(configs)
  with pytest.raises(ValueError, match='at least one'):
    seeds.train_seeds([])


@pytest.mark.parametrize(
    'field,value,match',
    [
        ('distill.teachers', ('/nowhere',), 'distill'),
        ('adapt.fast_probe', 'ridge', 'fast_probe'),
    ],
)
def test_distillation_and_fast_probe_stay_sequential(field, value, match):
  configs = _configs('scratch')
  for c in configs:
    group, key = field.split('.')
    c[group][key] = value
  with pytest.raises(ValueError, match=match):
    seeds.train_seeds(configs)
