"""One train step on 8 simulated CPU devices matches the same step on 1 device."""

import jax
import numpy as np
import pytest

from jaxadapt import config as config_lib, data, models, optim, partition, sharding
from jaxadapt import step as step_lib


def _step_on(devices, config, batch):
  mesh = sharding.make_mesh(config.mesh, devices)
  model = models.build_model('cnn', 10, widths=(4, 8), dense=16, dropout=0.1)
  params = model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))['params']
  flat = partition.flatten(params)
  trainable = optim.trainable_mask(config, list(flat))
  groups = optim.param_groups(config, flat, trainable)
  tx = optim.make_optimizer(config, groups, 10)
  rep = sharding.replicated(mesh)
  state = jax.device_put(step_lib.init_state(params, tx), rep)
  fn = step_lib.make_train_step(step_lib.make_forward(model), tx, trainable, data.make_preprocess(
      'scale|pad_crop(2)|flip'), seed=0)
  step = jax.jit(fn, in_shardings=(rep, sharding.batch_sharding(mesh)), out_shardings=(rep, rep))
  for _ in range(2):
    state, metrics = step(state, sharding.global_batch(batch, mesh))
  return jax.device_get(state.params), jax.device_get(metrics)


def test_eight_devices_match_one():
  assert jax.device_count() == 8, 'tests/conftest.py should give 8 CPU devices'
  config = config_lib.load_config('configs/fashion_mnist/scratch.py')
  rng = np.random.default_rng(0)
  batch = {'image': rng.integers(0, 255, (32, 28, 28, 1), dtype=np.uint8),
           'label': rng.integers(0, 10, (32,), dtype=np.int32)}
  p1, m1 = _step_on(jax.devices()[:1], config, batch)
  p8, m8 = _step_on(jax.devices(), config, batch)
  np.testing.assert_allclose(m1['loss'], m8['loss'], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_mesh_errors():
  config = config_lib.load_config('configs/fashion_mnist/scratch.py', ['--config.mesh.fsdp=3'])
  with pytest.raises(ValueError, match='cannot be split'):
    sharding.make_mesh(config.mesh)
