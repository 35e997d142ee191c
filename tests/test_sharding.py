"""One train step on 8 simulated CPU devices matches the same step on 1 device."""

import jax
import numpy as np
import pytest

from jaxadapt import config as config_lib, data, models, optim, param_tree, sharding
from jaxadapt import step as step_lib


def _step_on(devices, config, batch):
  mesh = sharding.make_mesh(config.mesh, devices)
  model = models.build_model('cnn', 10, widths=(4, 8), dense=16, dropout=0.1)
  params = model.init(jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))['params']
  flat = param_tree.flatten(params)
  trainable = optim.trainable_mask(config.adapt.trainable, list(flat))
  groups = optim.param_groups(config.optim, flat, trainable)
  tx = optim.make_optimizer(config.optim, groups, 10)
  rep = sharding.replicated(mesh)
  state = jax.device_put(step_lib.init_state(params, tx), rep)
  fn = step_lib.make_train_step(
      step_lib.make_forward(model),
      tx,
      trainable,
      data.make_preprocess('scale|pad_crop(2)|flip'),
      seed=0,
  )
  step = jax.jit(fn, in_shardings=(rep, sharding.batch_sharding(mesh)), out_shardings=(rep, rep))
  for _ in range(2):
    state, metrics = step(state, sharding.global_batch(batch, mesh))
  return jax.device_get(state.params), jax.device_get(metrics)


def test_eight_devices_match_one():
  assert jax.device_count() == 8, 'tests/conftest.py should give 8 CPU devices'
  config = config_lib.load_config('configs/fashion_mnist/scratch.py')
  rng = np.random.default_rng(0)
  batch = {
      'image': rng.integers(0, 255, (32, 28, 28, 1), dtype=np.uint8),
      'label': rng.integers(0, 10, (32,), dtype=np.int32),
  }
  p1, m1 = _step_on(jax.devices()[:1], config, batch)
  p8, m8 = _step_on(jax.devices(), config, batch)
  np.testing.assert_allclose(m1['loss'], m8['loss'], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_mesh_errors():
  config = config_lib.load_config('configs/fashion_mnist/scratch.py', ['--config.mesh.fsdp=3'])
  with pytest.raises(sharding.MeshError, match='cannot be split'):
    sharding.make_mesh(config.mesh)


def _fsdp_run(devices, data, fsdp, batch):
  from jaxadapt import experiment

  config = config_lib.load_config(
      'configs/fashion_mnist/scratch.py',
      [
          f'--config.mesh.data={data}',
          f'--config.mesh.fsdp={fsdp}',
          '--config.model.kwargs.widths=(8, 16)',
          '--config.model.kwargs.dense=64',
      ],
  )
  mesh = sharding.make_mesh(config.mesh, devices)
  info = {'num_classes': 10, 'image_shape': (28, 28, 1)}
  exp = experiment.build(config, mesh, info, total_steps=10)
  init = lambda p: step_lib.init_state(p, exp.tx)
  state_sh = exp.shardings(jax.eval_shape(init, exp.params), mesh)
  state = jax.jit(init, out_shardings=state_sh)(exp.params)
  step = jax.jit(
      step_lib.make_train_step(exp.forward, exp.tx, exp.trainable, exp.preprocess_train, seed=0),
      in_shardings=(state_sh, sharding.batch_sharding(mesh)),
      out_shardings=(state_sh, sharding.replicated(mesh)),
  )
  for _ in range(2):
    state, metrics = step(state, sharding.global_batch(batch, mesh))
  return state, metrics


def test_fsdp_and_data_parallel_match_one_device_and_fsdp_really_shards():
  rng = np.random.default_rng(1)
  batch = {
      'image': rng.integers(0, 255, (32, 28, 28, 1), dtype=np.uint8),
      'label': rng.integers(0, 10, (32,), dtype=np.int32),
  }
  one, m1 = _fsdp_run(jax.devices()[:1], 1, 1, batch)
  dp, m_dp = _fsdp_run(jax.devices(), 8, 1, batch)
  fsdp, m_fsdp = _fsdp_run(jax.devices(), 2, 4, batch)
  for m in (m_dp, m_fsdp):
    np.testing.assert_allclose(m1['loss'], m['loss'], rtol=1e-5)
  # Adam steps are ~lr in size whatever the gradient's magnitude, so reduction-order noise
  # in near-zero gradients shows up at ~1e-5; 5e-5 is still 40x below one step (lr=2e-3).
  for other in (dp, fsdp):
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(other.params)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=5e-5)
  # The big dense kernel (784 x 64) is split over 'fsdp' on its largest dimension, and
  # so are Adam's moments for it; a bias stays replicated.
  kernel = fsdp.params['dense']['kernel']
  assert kernel.sharding.spec == jax.sharding.PartitionSpec('fsdp', None)
  assert kernel.addressable_shards[0].data.shape == (784 // 4, 64)
  moments = [x for x in jax.tree.leaves(fsdp.opt_state) if x.shape == (784, 64)]
  assert len(moments) == 2 and all(m.sharding.spec == kernel.sharding.spec for m in moments)
  assert fsdp.params['dense']['bias'].sharding.spec == jax.sharding.PartitionSpec()


def test_param_rules_explicit_spec_and_errors():
  mesh = sharding.make_mesh(
      config_lib.load_config(
          'configs/fashion_mnist/scratch.py', ['--config.mesh.data=2', '--config.mesh.fsdp=4']
      ).mesh
  )
  shapes = {'dense/kernel': (3136, 256), 'head/kernel': (256, 10)}
  specs = sharding.param_specs(shapes, [('dense/.*', (None, 'fsdp')), ('.*', 'replicate')], mesh)
  assert specs['dense/kernel'] == jax.sharding.PartitionSpec(None, 'fsdp')
  assert specs['head/kernel'] == jax.sharding.PartitionSpec()
  with pytest.raises(sharding.MeshError, match="bad value 'shard'"):
    sharding.param_specs(shapes, [('.*', 'shard')], mesh)
