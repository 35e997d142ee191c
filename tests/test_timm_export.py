"""`export --format timm` and `--format bit`: the importers' rows inverted.

timm itself is not installed here (tests/golden/check_timm_export.py loads the exports in
timm and compares logits); these tests hold the export to the golden timm and BiT state
dicts (names, shapes, dtypes, values) and to the importers (every export re-imports to
bitwise the same parameters and model options).
"""

import json
import pathlib

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from jaxadapt import adapters, checkpoint, cli, importers, models, param_tree
from jaxadapt.importers import export
from jaxadapt.importers.core import ExportError

from shared_runs import config_spec, host_flat, trained_run, upstream_file

GOLDEN = pathlib.Path(__file__).resolve().parent / 'golden'


def random_params(model, kwargs, shape, seed=0):
  """Every leaf random (no zero heads or unit scales), so a misplaced tensor shows."""
  net = models.build_model(model, 3, **kwargs)
  shapes = jax.eval_shape(net.init, jax.random.key(0), np.zeros((1, *shape), np.float32))
  rng = np.random.default_rng(seed)
  return {
      k: rng.normal(size=v.shape).astype(np.float32)
      for k, v in param_tree.flatten(shapes['params']).items()
  }


def assert_reimports_bitwise(out, params, kwargs, query=''):
  plan, back = importers.load(f'{out}{query}')
  assert set(back) == set(params)
  for k in params:
    assert back[k].shape == params[k].shape and np.array_equal(back[k], params[k]), k
  want = export.export_timm.full_kwargs(plan.model, kwargs)
  got = export.export_timm.full_kwargs(plan.model, plan.kwargs)
  assert {k: v for k, v in got.items() if k in kwargs} == {
      k: v for k, v in want.items() if k in kwargs
  }
  return plan


@pytest.mark.parametrize('case', ['timm_vit', 'timm_resnet18', 'timm_resnet50'])
def test_golden_timm_state_dict_comes_back_exactly(case, tmp_path):
  """Catches a wrong timm name, an untransposed Linear, OIHW written as HWIO, q/k/v fused in
  the wrong order, and missing BatchNorm step counters (timm's state dict has them)."""
  source = GOLDEN / case / 'model.safetensors'
  plan, params = importers.load(f'timm:{source}')
  run = {'checkpoint': f'timm:{source}'}  # a run that started from it: its architecture name
  export.export_params(plan.model, plan.kwargs, params, str(tmp_path), 'timm', run)
  golden, got = load_file(source), load_file(tmp_path / 'model.safetensors')
  assert sorted(got) == sorted(golden)
  for k in golden:
    assert got[k].dtype == golden[k].dtype and got[k].shape == golden[k].shape, k
    assert np.array_equal(got[k], golden[k]), k
  config = json.loads((tmp_path / 'config.json').read_text())
  want = json.loads((GOLDEN / case / 'config.json').read_text())
  assert config['architecture'] == want['architecture']
  assert config['num_classes'] == config['pretrained_cfg']['num_classes'] == 5
  for key in ('layers', 'channels', 'img_size', 'patch_size', 'embed_dim', 'depth', 'num_heads'):
    if key in want['model_args']:
      assert config['model_args'][key] == want['model_args'][key], key
  assert_reimports_bitwise(f'timm:{tmp_path}/model.safetensors', params, plan.kwargs)


@pytest.mark.parametrize(
    'model, kwargs, shape, arch',
    [
        ('vit', dict(patch_size=4, width=16, depth=2, num_heads=2), (8, 8, 3), 'vit_base'),
        (
            'resnet_bn',
            dict(layers=(1, 2), widths=(4, 8), stem_width=64, bottleneck=True),
            (32, 32, 3),
            'resnet50',
        ),
        (
            'resnet_bn',
            dict(layers=(2, 1), widths=(4, 8), stem_width=64, bottleneck=False),
            (32, 32, 1),
            'resnet18',
        ),
    ],
)
def test_random_init_model_round_trips_bitwise(model, kwargs, shape, arch, tmp_path):
  """A jaxadapt-native model (tanh GELU ViT, 1-channel ResNet): the export records what
  the importer needs (heads, act_layer) and every parameter comes back bitwise."""
  params = random_params(model, kwargs, shape)
  export.export_params(model, kwargs, params, str(tmp_path), 'timm')
  config = json.loads((tmp_path / 'config.json').read_text())
  assert config['architecture'].startswith(arch)
  assert config['pretrained_cfg']['input_size'][0] == shape[-1]
  if model == 'vit':
    assert config['model_args']['act_layer'] == 'gelu_tanh'  # jaxadapt's default GELU
    assert config['pretrained_cfg']['input_size'] == [3, 8, 8]
  plan = assert_reimports_bitwise(f'timm:{tmp_path}/model.safetensors', params, kwargs)
  assert plan.model == model


def test_lora_run_exports_merged_and_loads_back(tmp_path_factory, tmp_path, capsys):
  """The LoRA smoke run (shared with test_methods.py) through the CLI: what is written is
  the merged model (not the frozen base), with the run's normalisation as mean/std."""
  up = upstream_file(tmp_path_factory, 'vit')
  wd = trained_run(
      tmp_path_factory, 'lora_vit', config_spec('lora', f'model=vit,smoke,checkpoint={up}')
  )
  out = tmp_path / 'timm'
  code = cli.main(['export', '--workdir', str(wd), '--out', str(out), '--format', 'timm'])
  assert code == 0, capsys.readouterr().err
  restored = checkpoint.restore_params(wd)
  config = json.loads((wd / 'config.json').read_text())
  merged = host_flat(adapters.merge_all(restored, config['adapt']))
  base = host_flat(restored)
  changed = [k for k in merged if not np.array_equal(merged[k], base[k])]
  assert changed, 'LoRA changed nothing: the test would not see an unmerged export'
  assert_reimports_bitwise(f'timm:{out}/model.safetensors', merged, config['model']['kwargs'])
  cfg = json.loads((out / 'config.json').read_text())['pretrained_cfg']
  assert cfg['mean'] == [0.286] and cfg['std'] == [0.353] and cfg['input_size'] == [1, 28, 28]


def test_golden_bit_npz_comes_back_exactly(tmp_path):
  source = GOLDEN / 'bit' / 'bit.npz'
  plan, params = importers.load(f'bit:{source}?num_groups=8')
  export.export_params('bit', plan.kwargs, params, str(tmp_path), 'bit')
  with np.load(source) as g, np.load(tmp_path / 'bit.npz') as e:
    assert sorted(e.files) == sorted(g.files)
    for k in g.files:
      assert e[k].dtype == g[k].dtype and np.array_equal(e[k], g[k]), k
  assert_reimports_bitwise(f'bit:{tmp_path}/bit.npz', params, plan.kwargs, '?num_groups=8')


def test_random_init_bit_round_trips_bitwise(tmp_path):
  kwargs = dict(layers=(1, 2), width_factor=2, base_width=4, num_groups=2)
  params = random_params('bit', kwargs, (16, 16, 3))
  export.export_params('bit', kwargs, params, str(tmp_path), 'bit')
  plan, back = importers.load(f'bit:{tmp_path}/bit.npz?num_groups=2')
  assert all(np.array_equal(back[k], params[k]) for k in params) and set(back) == set(params)


@pytest.mark.parametrize(
    'fmt, model, kwargs, match',
    [
        ('timm', 'cnn', {}, r"--format timm supports vit and resnet_bn, not 'cnn'"),
        ('timm', 'bert', {}, r"--format timm supports vit and resnet_bn, not 'bert'"),
        ('bit', 'vit', {}, r"--format bit supports bit, not 'vit'"),
        ('onnx', 'vit', {}, r'onnx: unknown format; supported: hf \(vit, bert\), timm \(vit, re'),
        ('timm', 'vit', dict(norm_eps=1e-5), r'norm_eps=1e-05 .* supported: norm_eps=1e-06'),
        ('timm', 'vit', dict(pool='gap'), r"pool='gap' has no timm equivalent"),
        ('timm', 'vit', dict(num_prompts=2), r'num_prompts=2 cannot be written'),
        ('timm', 'resnet_bn', dict(stem_width=8), r'stem has 64 channels.*stem_width=8'),
        ('bit', 'bit', dict(ws_eps=1e-6), r'ws_eps=1e-06 cannot be written'),
    ],
)
def test_unsupported_models_and_formats_are_one_line_errors(fmt, model, kwargs, match, tmp_path):
  """Catches a silent export of something the format cannot hold, and a half-written
  directory: nothing is written on refusal."""
  smoke = {**models.get_spec(model).smoke, **kwargs}
  shape = (16, 16, 3) if model != 'bert' else (8,)
  if model == 'bert':
    params = {'head/kernel': np.zeros((4, 3), np.float32)}
  else:
    params = random_params(model, smoke, shape)
  out = tmp_path / 'out'
  with pytest.raises(ExportError, match=match) as e:
    export.export_params(model, smoke, params, str(out), fmt)
  assert '\n' not in str(e.value)
  assert not out.exists()


def test_timm_import_refuses_an_activation_it_cannot_run(tmp_path):
  """The importer now reads model_args.act_layer (gelu_tanh from an export); any other
  activation would load with exit 0 and wrong outputs."""
  import shutil

  shutil.copy(GOLDEN / 'timm_vit' / 'model.safetensors', tmp_path / 'model.safetensors')
  config = json.loads((GOLDEN / 'timm_vit' / 'config.json').read_text())
  config['model_args']['act_layer'] = 'quick_gelu'
  (tmp_path / 'config.json').write_text(json.dumps(config))
  with pytest.raises(importers.CheckpointError, match=r"act_layer='quick_gelu'.*'gelu_tanh'"):
    importers.load(f'timm:{tmp_path}/model.safetensors')
