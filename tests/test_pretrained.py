"""Pretrained initialisation: what loads, what stays fresh, renames, formats, resizes, errors."""

import atexit
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from jaxadapt import checkpoint, cli, models, param_tree, presets, pretrained

from shared_runs import trained_run

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs/fashion_mnist'


def use_compilation_cache():
  """As in conftest.py: identical programs across CLI runs compile once per session."""
  if jax.config.jax_compilation_cache_dir is None:
    cache = tempfile.mkdtemp(prefix='jaxadapt-test-xla-')
    atexit.register(shutil.rmtree, cache, True)
    jax.config.update('jax_compilation_cache_dir', cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


use_compilation_cache()


def smoke_model(name, num_classes=5, **extra):
  kwargs = {**presets.MODELS[name]['kwargs'], **models.get_spec(name).smoke, **extra}
  return models.build_model(presets.MODELS[name]['name'], num_classes, **kwargs)


def random_params(model, seed, size=28):
  """Random values of the model's parameter shapes, as a nested dict of jax arrays."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 1)))['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 1, s.shape).astype(s.dtype)), shapes)


def host_flat(params):
  return {k: np.asarray(v) for k, v in param_tree.flatten(params).items()}


@pytest.fixture(scope='module')
def upstream(tmp_path_factory):
  return trained_run(tmp_path_factory, 'upstream_cnn', str(CONFIGS / 'pretrain.py') + ':smoke')


@pytest.fixture(scope='module')
def cnn():
  model = smoke_model('cnn')
  return model, random_params(model, seed=0)


# ------------------------------------------------------------- workdir checkpoints


def test_dont_load_keeps_the_fresh_head(upstream, cnn):
  _, fresh = cnn
  source = host_flat(checkpoint.restore_params(upstream))
  fresh_flat = host_flat(fresh)
  params, report = pretrained.load_into(fresh, str(upstream), dont_load=('head/.*',))
  got = host_flat(params)
  assert set(got) == set(fresh_flat)
  head = {'head/kernel', 'head/bias'}
  for k, v in got.items():
    want = fresh_flat[k] if k in head else source[k]
    assert v.dtype == want.dtype and np.array_equal(v, want), k
  assert sorted(report['kept']) == sorted(head)
  assert set(report['loaded']) == set(fresh_flat) - head
  assert sorted(report['unused']) == sorted(head)  # the checkpoint's head is not used
  # The loaded leaves keep the fresh tree's placement.
  assert all(
      a.sharding == b.sharding for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(fresh))
  )

  # Without dont_load the upstream head comes along (same 5-class shape).
  params, report = pretrained.load_into(fresh, str(upstream))
  assert np.array_equal(host_flat(params)['head/kernel'], source['head/kernel'])
  assert report['kept'] == [] and report['unused'] == []


def test_workdir_checkpoint_loads_on_another_device_count(upstream, tmp_path):
  out = tmp_path / 'flat.npz'
  script = (
      'import sys, numpy as np; from jaxadapt import pretrained; '
      'np.savez(sys.argv[2], **pretrained.read_flat(sys.argv[1]))'
  )
  env = {
      **os.environ,
      'JAX_PLATFORMS': 'cpu',
      'XLA_FLAGS': '--xla_force_host_platform_device_count=1',
  }
  result = subprocess.run(
      [sys.executable, '-c', script, str(upstream), str(out)],
      env=env,
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert result.returncode == 0, result.stderr[-1500:]
  source = host_flat(checkpoint.restore_params(upstream))
  with np.load(out) as z:
    assert set(z.files) == set(source)
    for k, v in source.items():
      assert np.array_equal(z[k], v), k


# ----------------------------------------------------------------------- errors


def save_npz(path, flat):
  np.savez(path, **flat)
  return str(path)


def test_shape_mismatch_names_the_parameter(tmp_path, cnn):
  _, fresh = cnn
  flat = host_flat(fresh)
  flat['dense/kernel'] = np.zeros((392, 17), np.float32)
  path = save_npz(tmp_path / 'ckpt.npz', flat)
  with pytest.raises(
      pretrained.PretrainedError,
      match=r"'dense/kernel' has shape \(392, 17\) in the checkpoint but "
      r'\(392, 16\) in the model; add it to init.dont_load',
  ):
    pretrained.load_into(fresh, path)
  # Following the advice works.
  params, report = pretrained.load_into(fresh, path, dont_load=('dense/kernel',))
  assert report['kept'] == ['dense/kernel']
  assert np.array_equal(np.asarray(params['dense']['kernel']), np.asarray(fresh['dense']['kernel']))
  assert np.array_equal(np.asarray(params['dense']['bias']), flat['dense/bias'])


def test_missing_parameter_names_it(tmp_path, cnn):
  _, fresh = cnn
  flat = host_flat(fresh)
  del flat['dense/bias']
  path = save_npz(tmp_path / 'ckpt.npz', flat)
  with pytest.raises(
      pretrained.PretrainedError, match=r"parameter 'dense/bias' is not in checkpoint .*ckpt.npz"
  ):
    pretrained.load_into(fresh, path)


def test_missing_checkpoint_path(tmp_path, cnn, capsys):
  _, fresh = cnn
  for missing in (tmp_path / 'nope.npz', tmp_path / 'no_such_workdir'):
    with pytest.raises(pretrained.PretrainedError, match=str(missing)):
      pretrained.load_into(fresh, str(missing))
  # Through the CLI: one line naming the path, and no workdir left behind.
  missing = tmp_path / 'no_such_run'
  wd = tmp_path / 'wd'
  code = cli.main(
      [
          'train',
          '--quiet',
          '--config',
          str(ROOT / 'configs/methods/linear_probe.py') + f':smoke,checkpoint={missing}',
          '--workdir',
          str(wd),
      ]
  )
  err = capsys.readouterr().err
  assert code == 2 and str(missing) in err, err
  assert not wd.exists()


# ---------------------------------------------------------------- file formats


def test_npz_with_name_map(tmp_path, cnn):
  _, fresh = cnn
  source = {k: v + 1.0 for k, v in host_flat(fresh).items()}
  path = save_npz(
      tmp_path / 'ckpt.npz',
      {**{f'model/{k}': v for k, v in source.items()}, 'optimizer/step': np.array(7)},
  )
  with pytest.raises(pretrained.PretrainedError, match='is not in checkpoint'):
    pretrained.load_into(fresh, path)  # without the rename nothing matches
  params, report = pretrained.load_into(fresh, path, name_map=(('model/(.*)', r'\1'),))
  got = host_flat(params)
  assert set(got) == set(source)
  for k, v in source.items():
    assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k
  assert report['unused'] == ['optimizer/step']


def test_name_map_first_match_wins():
  renamed = pretrained.rename(
      {'a/x': 1, 'b/x': 2}, [('a/(.*)', r'first/\1'), ('.*/x', 'second'), ('a/x', 'never')]
  )
  assert renamed == {'first/x': 1, 'second': 2}


def test_safetensors_round_trip(tmp_path, cnn):
  _, fresh = cnn
  source = {k: (v * 2.0).astype(np.float16) for k, v in host_flat(fresh).items()}
  path = tmp_path / 'ckpt.safetensors'
  save_file(source, str(path))
  params, report = pretrained.load_into(fresh, str(path))
  got = host_flat(params)
  assert report['unused'] == [] and len(report['loaded']) == len(source)
  for k, v in source.items():
    # Cast to the model's dtype on load.
    assert got[k].dtype == np.float32
    assert np.array_equal(got[k], v.astype(np.float32)), k


# ------------------------------------------------------------------ ViT resize


@pytest.mark.parametrize('pool, extra', [('cls', 1), ('gap', 0)])
def test_vit_pos_embedding_is_resized_to_the_new_grid(tmp_path, pool, extra):
  # A ViT's position embedding is sized by the input it is initialised on.
  small = smoke_model('vit', pool=pool)  # 28x28, patch 4: 7x7 grid
  large = smoke_model('vit', pool=pool)  # 32x32, patch 4: 8x8 grid
  source = host_flat(random_params(small, seed=1))
  target = random_params(large, seed=2, size=32)
  width = source['pos_embedding'].shape[-1]
  assert source['pos_embedding'].shape == (1, extra + 49, width)
  assert target['pos_embedding'].shape == (1, extra + 64, width)

  rng = np.random.default_rng(0)
  channel = rng.normal(size=width).astype(np.float32)
  constant = source['pos_embedding'].copy()
  constant[0, extra:] = channel  # the same vector at every grid position
  ramp = source['pos_embedding'].copy()
  ramp[0, extra:] = np.arange(49, dtype=np.float32)[:, None] * channel

  for posemb in (constant, ramp):
    path = save_npz(tmp_path / 'vit.npz', {**source, 'pos_embedding': posemb})
    params, report = pretrained.load_into(target, path)
    got = np.asarray(params['pos_embedding'])
    assert got.shape == (1, extra + 64, width) and got.dtype == np.float32
    assert 'pos_embedding' in report['loaded']
    assert np.array_equal(got[0, :extra], posemb[0, :extra])  # cls row untouched
    if posemb is constant:
      np.testing.assert_allclose(
          got[0, extra:], np.broadcast_to(channel, (64, width)), rtol=1e-6, atol=1e-6
      )
    else:
      # Interpolation stays within the source's range per channel and keeps the corners'
      # order: top-left is the smallest multiple of `channel`, bottom-right the largest.
      lo, hi = posemb[0, extra:].min(0), posemb[0, extra:].max(0)
      assert np.all(got[0, extra:] >= lo - 1e-4) and np.all(got[0, extra:] <= hi + 1e-4)
      coef = got[0, extra:] @ channel / (channel @ channel)
      assert coef.argmin() == 0 and coef.argmax() == 63
      assert len(np.unique(np.round(coef, 4))) > 8  # not constant
    # Every other leaf loads unchanged, and the model runs on the new input size.
    got_flat = host_flat(params)
    for k, v in source.items():
      if k != 'pos_embedding':
        assert np.array_equal(got_flat[k], v), k
    logits = large.apply({'params': params}, jnp.zeros((2, 32, 32, 1)))
    assert logits.shape == (2, 5)


def test_pos_embedding_that_is_not_a_square_grid_is_an_error():
  with pytest.raises(pretrained.PretrainedError, match='not square'):
    pretrained.resize_posemb(np.zeros((1, 50, 4), np.float32), (1, 70, 4))
