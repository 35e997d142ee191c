"""Quantised frozen base (QLoRA): int8 / NF4 blocks of 64 with absmax scales, dequantised in
the step; bytes, numerics, a train step, checkpoint and merged export."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import qwix

from jaxadapt import cli, config as config_lib, cost, experiment, methods, param_tree, quant
from jaxadapt import sharding, step as step_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'
INFO = {'num_classes': 10, 'image_shape': (28, 28, 1)}


@pytest.mark.parametrize('kind', ['int8', 'nf4'])
def test_round_trip_is_qwix_blockwise_quantisation(kind):
  rng = np.random.default_rng(0)
  kernel = jnp.asarray(rng.normal(size=(3, 3, 5, 7)).astype(np.float32))  # 315: padded to 320
  q = quant.quantize(kernel, kind)
  assert q.shape == kernel.shape and q.size == 315 and q.dtype == jnp.float32
  got = quant.dequantize(q)
  assert got.shape == kernel.shape and got.dtype == jnp.float32
  # Exactly qwix's own quantise -> dequantise of the same blocks (NF4 packing is lossless).
  blocks = jnp.pad(kernel.reshape(-1), (0, 5)).reshape(5, 64)
  ref = qwix.dequantize(
      qwix.quantize(blocks, quant.QTYPES[kind], channelwise_axes=(0,), tiled_axes={1: 64})
  )
  np.testing.assert_array_equal(np.asarray(got).reshape(-1), np.asarray(ref).reshape(-1)[:315])
  # Per-block absmax scales: the error is a fraction of each block's largest value.
  err = np.abs(np.asarray(got - kernel)).reshape(-1)
  absmax = np.repeat(np.abs(np.asarray(blocks)).max(1), 64)[:315]
  assert (err <= absmax * (0.5 / 127 + 1e-6 if kind == 'int8' else 0.17)).all()
  assert err.max() > 0


def build(storage, method='lora', width=128):
  config = config_lib.load_config(
      str(ROOT / 'configs/fashion_mnist/scratch.py') + ':model=vit',
      [f'--config.model.kwargs.width={width}', f'--config.adapt.frozen_dtype={storage}'],
  )
  config.unlock()
  methods.apply(config, method)
  config.init.dont_load = ()
  return experiment.build(config, sharding.make_mesh(config.mesh, jax.devices()[:1]), INFO, 10)


def frozen_bytes(exp):
  return cost.tree_bytes(
      {p: v for p, v in param_tree.flatten(exp.params).items() if not exp.trainable[p]}
  )


def test_frozen_bytes_meet_the_qlora_targets():
  f32 = frozen_bytes(build('float32'))
  assert frozen_bytes(build('int8')) <= 0.3 * f32
  assert frozen_bytes(build('nf4')) <= 0.16 * f32


def test_a_step_on_an_nf4_base_uses_the_dequantised_kernels_and_keeps_them_frozen():
  exp = build('nf4', width=32)
  flat = param_tree.flatten(exp.params)
  quantised = [p for p, v in flat.items() if quant.is_quantized(v)]
  assert quantised and all(p.endswith('kernel') and not exp.trainable[p] for p in quantised)
  assert not any(quant.is_quantized(v) for p, v in flat.items() if exp.trainable[p])
  # The forward is the float model with every quantised kernel replaced by its dequantised
  # values, exactly.
  rng = np.random.default_rng(1)
  images = jnp.asarray(rng.normal(size=(4, 28, 28, 1)).astype(np.float32))
  params = param_tree.unflatten(
      {
          p: jnp.asarray(rng.normal(0, 0.3, v.shape), jnp.float32) if p.startswith('head') else v
          for p, v in flat.items()
      }
  )
  dense = quant.dequantize_tree(params)
  assert not any(quant.is_quantized(v) for v in param_tree.flatten(dense).values())
  np.testing.assert_array_equal(exp.forward(params, images), exp.forward(dense, images))

  batch = {
      'image': jnp.asarray(rng.integers(0, 255, (8, 28, 28, 1), dtype=np.uint8)),
      'label': jnp.asarray(rng.integers(0, 10, (8,), dtype=np.int32)),
  }
  state = step_lib.init_state(exp.params, exp.tx)
  step = jax.jit(
      step_lib.make_train_step(exp.forward, exp.tx, exp.trainable, exp.preprocess_train, 0)
  )
  new, metrics = step(state, batch)
  assert np.isfinite(float(metrics['loss']))
  before, after = param_tree.flatten(state.params), param_tree.flatten(new.params)
  for p in quantised:
    assert quant.is_quantized(after[p])
    np.testing.assert_array_equal(after[p].data, before[p].data)
    np.testing.assert_array_equal(after[p].scale, before[p].scale)
  assert not np.array_equal(after['head/kernel'], before['head/kernel'])


def test_qlora_workdir_checkpoints_and_exports_a_float_model(tmp_path, capsys):
  wd, out = tmp_path / 'run', tmp_path / 'merged.npz'
  probe = "--config.adapt.trainable=(('head/.*', 'train'), ('.*', 'frozen'))"
  args = ['--config', SMOKE, '--workdir', str(wd), probe, '--config.adapt.frozen_dtype=int8']
  assert cli.main(['train', '--quiet', *args]) == 0, capsys.readouterr().err
  assert cli.main(['export', '--workdir', str(wd), '--out', str(out)]) == 0
  exported = dict(np.load(out))
  config = config_lib.load_config(SMOKE, [probe, '--config.adapt.frozen_dtype=int8'])
  exp = experiment.build(config, sharding.make_mesh(config.mesh), INFO, 10)
  for p, v in param_tree.flatten(exp.params).items():
    want = quant.dequantize(v) if quant.is_quantized(v) else None
    assert exported[p].shape == tuple(v.shape) and exported[p].dtype == np.float32, p
    if want is not None:  # frozen: the checkpoint holds the build's quantised values
      np.testing.assert_array_equal(exported[p], np.asarray(want))
