"""Export and re-load for DoRA, IA3 and prompt tuning, as test_lora.py checks LoRA's.

Reuses the smoke ViT runs test_methods.py trains (shared per session, so no extra training).
"""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from jaxadapt import checkpoint, cli, config as config_lib, data, models, presets, pretrained
from jaxadapt import param_tree

from shared_runs import build_experiment, config_spec, host_flat, trained_run, upstream_file

METHODS = ('dora', 'ia3', 'prompt')
OWN = {'dora': 'dora/', 'ia3': 'ia3/', 'prompt': 'prompt'}


def method_run(tmp_path_factory, method):
  # The same spec and run name as test_methods.py: the run is trained once per session.
  up = upstream_file(tmp_path_factory, 'vit')
  spec = config_spec(method, f'model=vit,smoke,checkpoint={up}')
  return spec, trained_run(tmp_path_factory, f'{method}_vit', spec)


def export(capsys, wd, out, mode):
  code = cli.main(['export', '--workdir', str(wd), '--out', str(out), '--mode', mode])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


@pytest.mark.parametrize('method', METHODS)
def test_adapter_export_reloads_the_trained_model_bitwise(
    tmp_path_factory, tmp_path, method, capsys
):
  """Catches an export that drops the method's leaves (prompts are not under a 'lora/' prefix)
  or an init.adapters load that leaves them at their initial values."""
  spec, wd = method_run(tmp_path_factory, method)
  trained = host_flat(checkpoint.restore_params(wd))
  table = json.loads((wd / 'params.json').read_text())

  out = tmp_path / 'adapters.safetensors'
  code, _, err = export(capsys, wd, out, 'adapters')
  assert code == 0, err
  tensors = load_file(str(out))
  assert set(tensors) == {p for p, row in table.items() if row['trainable']}
  assert any(k.startswith(OWN[method]) for k in tensors)
  for k, v in tensors.items():
    assert np.array_equal(v, trained[k]), k

  config = config_lib.load_config(spec, [f'--config.init.adapters={out}'])
  restored = host_flat(build_experiment(config).params)
  assert set(restored) == set(trained)
  for k in trained:
    assert np.array_equal(restored[k], trained[k]), k


@pytest.mark.parametrize('method', ['dora', 'ia3'])
def test_merged_export_is_a_plain_model_with_the_adapted_outputs(
    tmp_path_factory, tmp_path, method, capsys
):
  """Catches a merge that ignores the learned magnitude (DoRA) or the scaling vectors (IA3):
  the plain model would then give the base model's outputs."""
  spec, wd = method_run(tmp_path_factory, method)
  config = config_lib.load_config(spec)
  exp = build_experiment(config)
  trained = checkpoint.restore_params(wd)

  out = tmp_path / 'merged.safetensors'
  code, _, err = export(capsys, wd, out, 'merged')
  assert code == 0, err
  tensors = load_file(str(out))
  assert not any(k.startswith(OWN[method]) for k in tensors)

  kwargs = {**presets.MODELS['vit']['kwargs'], **models.get_spec('vit').smoke}
  plain_model = models.build_model(presets.MODELS['vit']['name'], 5, **kwargs)
  fresh = jax.eval_shape(plain_model.init, jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))
  assert set(tensors) == set(param_tree.flatten(fresh['params']))
  plain, report = pretrained.load_into(
      jax.tree.map(lambda s: jax.numpy.zeros(s.shape, s.dtype), fresh['params']), str(out)
  )
  assert report['unused'] == []

  test = data.load_split(config.dataset, 'test[:32]')
  images = np.asarray(test['image'], np.float32) / 255.0
  adapted = np.asarray(jax.jit(exp.forward)(trained, images))
  base_only = {k: v for k, v in trained.items() if not k.startswith(OWN[method].rstrip('/'))}
  got = np.asarray(jax.jit(plain_model.apply)({'params': plain}, images))
  np.testing.assert_allclose(got, adapted, rtol=1e-4, atol=1e-4)
  # The method changed the function, so matching the adapted outputs means something.
  base = np.asarray(jax.jit(plain_model.apply)({'params': base_only}, images))
  assert np.abs(base - adapted).max() > 1e-4


def test_prompts_refuse_a_merged_export_and_write_nothing(tmp_path_factory, tmp_path, capsys):
  _, wd = method_run(tmp_path_factory, 'prompt')
  out = tmp_path / 'merged.safetensors'
  code, _, err = export(capsys, wd, out, 'merged')
  assert code == 2 and len(err.strip().splitlines()) == 1, err
  assert 'prompt' in err and '--mode' in err, err
  assert not out.exists()
