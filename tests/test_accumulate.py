"""Gradient accumulation: k micro-batches give the k-times-larger batch's update, cost the
same FLOPs per micro-batch (frozen parameters still get no backward), and bad values are
one-line errors."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadapt import cli, config as config_lib, cost, experiment, methods, sharding
from jaxadapt import step as step_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'
INFO = {'num_classes': 10, 'image_shape': (28, 28, 1)}


def batch(n, seed=0):
  rng = np.random.default_rng(seed)
  return {
      'image': jnp.asarray(rng.integers(0, 255, (n, 28, 28, 1), dtype=np.uint8)),
      'label': jnp.asarray(rng.integers(0, 10, (n,), dtype=np.int32)),
  }


def build(method, accumulate, batch_size, *overrides):
  config = config_lib.load_config(
      SMOKE,
      [
          '--config.model.kwargs.widths=(8, 16)',
          '--config.model.kwargs.dense=64',
          '--config.model.kwargs.dropout=0.0',
          f'--config.batch_size={batch_size}',
          f'--config.optim.accumulate={accumulate}',
          *overrides,
      ],
  )
  config.unlock()
  methods.apply(config, method)
  config.init.dont_load = ()
  exp = experiment.build(config, sharding.make_mesh(config.mesh, jax.devices()[:1]), INFO, 10)
  step = step_lib.make_train_step(
      exp.forward, exp.tx, exp.trainable, exp.preprocess_train, 0, accumulate=accumulate
  )
  return exp, step


def test_accumulated_micro_batches_equal_the_whole_batch():
  # SGD: an update is proportional to the gradient, so the comparison is not blurred by
  # Adam's normalisation of near-zero gradients. 'flip' augmentation runs on the whole batch.
  sgd = ['--config.optim.name=sgd', '--config.optim.lr=0.1', '--config.optim.warmup_steps=1']
  results = {}
  for k in (1, 4):
    exp, step = build('full_ft', k, 32, *sgd)
    state = step_lib.init_state(exp.params, exp.tx)
    step = jax.jit(step)
    metrics = []
    for i in range(3):
      state, m = step(state, batch(32, seed=i))
      metrics.append(m)
    results[k] = state, metrics
  (one, m1), (four, m4) = results[1], results[4]
  for a, b in zip(m1, m4):
    np.testing.assert_allclose(b['loss'], a['loss'], rtol=1e-5)
    np.testing.assert_allclose(b['grad_norm'], a['grad_norm'], rtol=1e-4)
    assert a['accuracy'] == b['accuracy']
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
  assert any(
      not np.array_equal(np.asarray(a), np.asarray(b))
      for a, b in zip(
          jax.tree.leaves(one.params), jax.tree.leaves(build('full_ft', 1, 32)[0].params)
      )
  )


@pytest.mark.parametrize('method', ['linear_probe', 'lora'])
def test_flops_per_micro_batch_unchanged_and_frozen_still_skip_backward(method):
  def flops(accumulate, batch_size):
    exp, step = build(method, accumulate, batch_size)
    state = step_lib.init_state(exp.params, exp.tx)
    return exp, cost.compiled_cost(step, state, batch(batch_size))['flops']

  exp, micro = flops(1, 16)
  _, accumulated = flops(4, 64)  # XLA counts the scan body once: one micro-batch of 16
  assert 0.98 * micro <= accumulated <= 1.05 * micro, accumulated / micro
  if method == 'linear_probe':
    forward = lambda p, x: exp.forward(p, exp.preprocess_eval(x, None, False))
    fwd = cost.compiled_cost(forward, exp.params, batch(16)['image'])['flops']
    d, c = exp.params['head']['kernel'].shape
    assert accumulated <= 1.1 * (fwd + 2 * 16 * d * c + 16 * c)


@pytest.mark.parametrize(
    'accumulate, message',
    [
        (3, 'optim.accumulate=3 must be >= 1 and divide batch_size=64'),
        (0, 'optim.accumulate=0 must be >= 1'),
        (16, 'batch_size / optim.accumulate=4 is not divisible by the 8 devices'),
    ],
)
def test_bad_accumulate_is_one_line_before_the_workdir(tmp_path, capsys, accumulate, message):
  wd = tmp_path / 'run'
  args = ['--config.batch_size=64', f'--config.optim.accumulate={accumulate}']
  code = cli.main(['train', '--quiet', '--config', SMOKE, '--workdir', str(wd), *args])
  err = capsys.readouterr().err
  assert code == 2 and message in err, err
  assert len(err.strip().splitlines()) == 1 and not wd.exists()
