"""The linear probe's fast path (jaxadapt/fast_probe.py, probe.py) through the CLI: ridge and softmax heads
on cached backbone features, the backbone left bitwise as pretrained."""

import pathlib

import jax
import numpy as np
import pytest

from jaxadapt import checkpoint, cli, config as config_lib, data, param_tree
from jaxadapt.metrics import read_metrics

from shared_runs import build_experiment, host_flat, upstream_cnn, upstream_flat

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINEAR_PROBE = str(ROOT / 'configs/methods/linear_probe.py')


@pytest.mark.parametrize('fast', ['ridge', 'softmax'])
def test_fast_probe_writes_metrics_and_keeps_backbone(tmp_path_factory, tmp_path, fast):
  up = upstream_cnn(tmp_path_factory)
  wd = tmp_path / fast
  code = cli.main(
      [
          'train',
          '--quiet',
          '--config',
          f'{LINEAR_PROBE}:smoke,fast={fast},checkpoint={up}',
          '--workdir',
          str(wd),
      ]
  )
  assert code == 0
  records = read_metrics(wd)
  acc = [r['test/accuracy'] for r in records if 'test/accuracy' in r]
  assert len(acc) == 1 and 0.0 <= acc[0] <= 1.0
  assert any('val/accuracy' in r for r in records)

  params = host_flat(checkpoint.restore_params(wd))
  pretrained = upstream_flat(up)
  for p, v in params.items():
    if not p.startswith('head/'):
      assert v.dtype == pretrained[p].dtype and np.array_equal(v, pretrained[p]), p
  assert params['head/kernel'].shape == (16, 5) and params['head/kernel'].any()
  assert not np.array_equal(params['head/kernel'], pretrained['head/kernel'])

  # The stored accuracy is the accuracy of the stored head on the test split.
  config = config_lib.load_config(f'{LINEAR_PROBE}:smoke,checkpoint={up}')
  exp = build_experiment(config)
  test = data.load_split(config.dataset, config.dataset.test_split)
  images = exp.preprocess_eval(test['image'], jax.random.key(0), False)
  logits = np.asarray(exp.forward(param_tree.unflatten(params), images))
  # (one example of slack: numpy and XLA may break a near-tie differently)
  assert np.mean(logits.argmax(-1) == test['label']) == pytest.approx(acc[0], abs=1.5 / 256)
