"""bf16 mixed precision: compute in bf16, trainable params and optimizer state in float32,
frozen params optionally stored in bf16; bad dtypes are one-line errors."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadapt import cli, config as config_lib, cost, experiment, param_tree, sharding
from jaxadapt import step as step_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'
INFO = {'num_classes': 10, 'image_shape': (28, 28, 1)}
RNG = np.random.default_rng(0)
BATCH = {
    'image': jnp.asarray(RNG.integers(0, 255, (16, 28, 28, 1), dtype=np.uint8)),
    'label': jnp.asarray(RNG.integers(0, 10, (16,), dtype=np.int32)),
}


def build(*overrides, method='full_ft'):
  config = config_lib.load_config(
      SMOKE, ['--config.model.kwargs.widths=(8, 16)', '--config.model.kwargs.dense=64', *overrides]
  )
  config.unlock()
  from jaxadapt import methods

  methods.apply(config, method)
  config.init.dont_load = ()
  mesh = sharding.make_mesh(config.mesh, jax.devices()[:1])
  return experiment.build(config, mesh, INFO, total_steps=10)


def one_step(exp):
  state = step_lib.init_state(exp.params, exp.tx)
  step = step_lib.make_train_step(exp.forward, exp.tx, exp.trainable, exp.preprocess_train, 0)
  compiled = jax.jit(step).lower(state, BATCH).compile()
  new_state, metrics = compiled(state, BATCH)
  return state, new_state, metrics, compiled


def test_bf16_compute_keeps_float32_params_and_optimizer_state():
  f32, bf16 = build(), build('--config.model.dtype=bfloat16')
  images = f32.preprocess_eval(BATCH['image'], None, False)
  # The forward really computes in bf16 (its convolutions and dots take bf16 operands)...
  hlo = jax.jit(bf16.forward).lower(bf16.params, images).as_text()
  assert 'bf16' in hlo and 'bf16' not in jax.jit(f32.forward).lower(f32.params, images).as_text()
  # ... returns float32 logits close to the float32 forward's (same parameters: same seed).
  out32, out16 = f32.forward(f32.params, images), bf16.forward(bf16.params, images)
  assert out16.dtype == jnp.float32
  params = param_tree.unflatten(
      {
          k: jnp.asarray(RNG.normal(0, 0.1, v.shape), jnp.float32)
          for k, v in param_tree.flatten(f32.params).items()
      }
  )
  out32, out16 = f32.forward(params, images), bf16.forward(params, images)
  assert np.abs(np.asarray(out32)).max() > 0.1
  np.testing.assert_allclose(out16, out32, rtol=0.05, atol=0.05 * np.abs(out32).max())
  assert not np.array_equal(np.asarray(out16), np.asarray(out32))

  # Trainable parameters, their updates and Adam's moments stay float32.
  _, state, metrics, _ = one_step(bf16)
  assert np.isfinite(float(metrics['loss']))
  dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state)) if x.ndim}
  assert dtypes == {jnp.dtype(jnp.float32)}


def test_frozen_params_stored_in_bf16_halve_their_bytes_and_stay_frozen():
  plain = build(method='lora')
  exp = build('--config.adapt.frozen_dtype=bfloat16', method='lora')
  flat = param_tree.flatten(exp.params)
  assert {str(v.dtype) for p, v in flat.items() if exp.trainable[p]} == {'float32'}
  assert {str(v.dtype) for p, v in flat.items() if not exp.trainable[p]} == {'bfloat16'}
  frozen_bytes = lambda e: sum(
      v.nbytes for p, v in param_tree.flatten(e.params).items() if not e.trainable[p]
  )
  assert frozen_bytes(exp) * 2 == frozen_bytes(plain)

  before, after, metrics, compiled = one_step(exp)
  _, _, _, compiled_plain = one_step(plain)
  assert np.isfinite(float(metrics['loss']))
  flat_before, flat_after = param_tree.flatten(before.params), param_tree.flatten(after.params)
  for p, v in flat_after.items():
    assert v.dtype == flat_before[p].dtype, p
    if not exp.trainable[p]:
      assert np.array_equal(np.asarray(v), np.asarray(flat_before[p])), p
  # (A zero head gives the adapters zero gradients on the first step; the head trains.)
  assert not np.array_equal(
      np.asarray(flat_after['head/kernel']), np.asarray(flat_before['head/kernel'])
  )
  # The compiled step holds the frozen base at half the bytes.
  assert cost.compiled_peak_bytes(compiled) < cost.compiled_peak_bytes(compiled_plain)


@pytest.mark.parametrize('key', ['model.dtype', 'adapt.frozen_dtype'])
def test_unknown_dtype_is_one_line_before_the_workdir(tmp_path, capsys, key):
  wd = tmp_path / 'run'
  code = cli.main(
      ['train', '--quiet', '--config', SMOKE, '--workdir', str(wd), f'--config.{key}=fp8']
  )
  err = capsys.readouterr().err
  assert code == 2 and f"unknown {key} 'fp8'; choose one of: float32, bfloat16" in err, err
  assert len(err.strip().splitlines()) == 1 and not wd.exists()
