"""Importers against the reference implementations: max |logit difference| <= 1e-4 in float32.

timm, BiT and big_vision: golden files from tests/golden/make_golden.py (timm needs a CUDA
torch here). Hugging Face ViT and BERT: transformers live, on random-init models whose
every tensor (biases and norm scales included) is randomised, so a swapped, untransposed
or skipped tensor changes the outputs.
"""

import json
import pathlib

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jaxadapt import importers, models, param_tree, pretrained
from jaxadapt.importers import CheckpointError

GOLDEN = pathlib.Path(__file__).resolve().parent / 'golden'
TOL = 1e-4


def run(plan, params, inputs, features_only=False):
  model = models.build_model(plan.model, plan.num_classes or 1, **plan.kwargs)
  out = model.apply({'params': param_tree.unflatten(params)}, inputs, features_only=features_only)
  return np.asarray(out)


def max_diff(checkpoint, io):
  plan, params = importers.load(checkpoint)
  return float(np.abs(run(plan, params, io['inputs']) - io['logits']).max()), plan


@pytest.mark.parametrize(
    'case, checkpoint, model',
    [
        ('timm_vit', 'timm:{}/model.safetensors', 'vit'),
        ('timm_resnet50', 'timm:{}/model.safetensors', 'resnet_bn'),
        ('timm_resnet18', '{}/model.safetensors', 'resnet_bn'),  # detected as timm
        ('bit', 'bit:{}/bit.npz?num_groups=8', 'bit'),
        ('big_vision', '{}/vit.npz', 'vit'),  # detected as big_vision
    ],
)
def test_golden_parity(case, checkpoint, model):
  io = np.load(GOLDEN / case / 'io.npz')
  diff, plan = max_diff(checkpoint.format(GOLDEN / case), io)
  assert plan.model == model
  assert diff <= TOL, diff


def test_timm_resnet_keeps_batchnorm_statistics_and_torch_padding():
  """The issue's silent wrong load: BN statistics dropped (logits off by up to 25.8)."""
  io = np.load(GOLDEN / 'timm_resnet50' / 'io.npz')
  plan, params = importers.load(f'timm:{GOLDEN}/timm_resnet50/model.safetensors')
  n_stats = sum(p.endswith(('/mean', '/var')) for p in params)
  assert n_stats == 2 * sum(1 for n in plan.tensors.shapes if n.endswith('running_mean'))
  for path in [p for p in params if p.endswith(('/mean', '/var'))]:
    params[path] = np.ones_like(params[path]) if path.endswith('var') else 0 * params[path]
  assert np.abs(run(plan, params, io['inputs']) - io['logits']).max() > 1.0
  assert set(plan.skipped) == {n for n in plan.tensors.shapes if 'num_batches_tracked' in n}


def big_vision_npz(tmp_path, transform):
  with np.load(GOLDEN / 'big_vision' / 'vit.npz') as z:
    w = {k.removeprefix('params/'): z[k] for k in z.files}
  path = tmp_path / 'vit.npz'
  np.savez(path, **transform(w))
  return path


def test_big_vision_scan_stacked_blocks(tmp_path):
  def stack(w):
    blocks = sorted({k.split('/')[1] for k in w if k.startswith('Transformer/encoderblock_')})
    out = {k: v for k, v in w.items() if not k.startswith('Transformer/encoderblock_')}
    for leaf in {k.split('/', 2)[2] for k in w if k.startswith('Transformer/encoderblock_0/')}:
      out[f'Transformer/encoderblock/{leaf}'] = np.stack(
          [w[f'Transformer/{b}/{leaf}'] for b in blocks]
      )
    return {f'params/{k}': v for k, v in out.items()}

  io = np.load(GOLDEN / 'big_vision' / 'io.npz')
  diff, plan = max_diff(f'big_vision:{big_vision_npz(tmp_path, stack)}', io)
  assert diff <= TOL and plan.family == 'ViT (scan)'
  assert any(r.transform.startswith('unstack(1)|') for r in plan.rows)


def test_vision_transformer_layout_with_cls_position_row(tmp_path):
  """vision_transformer (AugReg) names, and a position embedding that includes the cls row."""
  rename = {
      'MultiHeadDotProductAttention_0': 'MultiHeadDotProductAttention_1',
      'MlpBlock_0': 'MlpBlock_3',
      'LayerNorm_1': 'LayerNorm_2',
  }

  def augreg(w):
    out = {}
    for k, v in w.items():
      parts = k.split('/')
      out[
          '/'.join(
              rename.get(p, p) if k.startswith('Transformer/encoderblock') else p for p in parts
          )
      ] = v
    pos = out.pop('pos_embedding')
    out['Transformer/posembed_input/pos_embedding'] = np.concatenate([0 * pos[:, :1], pos], 1)
    return out

  io = np.load(GOLDEN / 'big_vision' / 'io.npz')
  diff, _ = max_diff(f'big_vision:{big_vision_npz(tmp_path, augreg)}', io)
  assert diff <= TOL


# ------------------------------------------------------- Hugging Face (live)

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')


def randomise(model, seed):
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, t in model.state_dict().items():
      if t.is_floating_point():
        scale_like = name.endswith('weight') and t.ndim == 1
        t.copy_((1.0 if scale_like else 0.0) + 0.2 * torch.randn(t.shape, generator=g))
  return model.eval()


@pytest.fixture(scope='module')
def hf_vit(tmp_path_factory):
  config = transformers.ViTConfig(
      hidden_size=48,
      num_hidden_layers=2,
      num_attention_heads=3,
      intermediate_size=80,
      image_size=32,
      patch_size=8,
      num_labels=4,
  )
  model = randomise(transformers.ViTForImageClassification(config), 0)
  directory = tmp_path_factory.mktemp('hf_vit')
  model.save_pretrained(directory)
  x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    logits = model(pixel_values=torch.from_numpy(x).permute(0, 3, 1, 2)).logits.numpy()
  return directory, model, {'inputs': x, 'logits': logits}


def test_hf_vit_parity(hf_vit):
  directory, _, io = hf_vit
  diff, plan = max_diff(f'hf:{directory}', io)
  assert diff <= TOL, diff
  assert plan.kwargs['norm_eps'] == 1e-12 and plan.kwargs['gelu'] == 'exact'
  assert plan.kwargs['num_heads'] == 3 and plan.num_classes == 4
  # Every Linear weight is transposed, square (48x48 attention) or not.
  linear = [
      r
      for r in plan.rows
      if r.source.endswith('dense.weight')
      or 'attention.attention' in r.source
      and r.source.endswith('weight')
      or r.source == 'classifier.weight'
  ]
  assert linear and all(r.transform == 'transpose' for r in linear)


def test_hf_sharded_and_bf16_checkpoints(hf_vit, tmp_path):
  directory, model, io = hf_vit
  sharded = tmp_path / 'sharded'
  model.save_pretrained(sharded, max_shard_size='20KB')
  assert (sharded / 'model.safetensors.index.json').exists()
  assert max_diff(str(sharded), io)[0] <= TOL  # a plain directory path is detected as hf
  import ml_dtypes

  for dtype, tol in ((ml_dtypes.bfloat16, 0.5), (np.float16, 0.05)):
    half = tmp_path / f'half_{np.dtype(dtype).name}'
    half.mkdir()
    (half / 'config.json').write_text((directory / 'config.json').read_text())
    weights = load_file(directory / 'model.safetensors')
    save_file({k: v.astype(dtype) for k, v in weights.items()}, half / 'model.safetensors')
    plan, params = importers.load(f'hf:{half}')
    rounded = tmp_path / f'rounded_{np.dtype(dtype).name}'  # the reference: same rounding
    rounded.mkdir()
    (rounded / 'config.json').write_text((directory / 'config.json').read_text())
    save_file(
        {k: v.astype(dtype).astype(np.float32) for k, v in weights.items()},
        rounded / 'model.safetensors',
    )
    ref = type(model).from_pretrained(rounded).eval()
    with torch.no_grad():
      want = ref(pixel_values=torch.from_numpy(io['inputs']).permute(0, 3, 1, 2)).logits.numpy()
    assert np.abs(run(plan, params, io['inputs']) - want).max() <= TOL
    assert all(v.dtype == np.float32 for v in params.values())


def test_hf_bert_parity_with_padding(tmp_path):
  config = transformers.BertConfig(
      vocab_size=60,
      hidden_size=32,
      num_hidden_layers=2,
      num_attention_heads=4,
      intermediate_size=48,
      max_position_embeddings=16,
      num_labels=3,
  )
  model = randomise(transformers.BertForSequenceClassification(config), 1)
  model.save_pretrained(tmp_path)
  ids = np.array([[2, 15, 9, 33, 3, 0, 0, 0], [2, 7, 8, 9, 10, 11, 12, 3]], np.int32)
  with torch.no_grad():
    want = model(
        input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(ids != 0).long()
    ).logits.numpy()
  plan, params = importers.load(f'hf:{tmp_path}')
  assert plan.model == 'bert' and plan.kwargs['pool'] == 'pooler'
  assert np.abs(run(plan, params, ids) - want).max() <= TOL


# ------------------------------------------------------------ no silent wrong loads


def test_square_torch_weights_under_jaxadapt_names_fail_loudly(hf_vit, tmp_path):
  """The issue's worst case: a name_map'd torch file whose square kernels load untransposed.

  Renamed to jaxadapt paths the file is not recognisable as torch, but its non-square
  Linear weights are: the error says the whole file needs the importer."""
  directory, _, _ = hf_vit
  plan, _ = importers.load(f'hf:{directory}')
  raw = load_file(directory / 'model.safetensors')
  renamed = {r.target: raw[r.source] for r in plan.rows}  # names mapped, layouts not
  path = tmp_path / 'renamed.safetensors'
  save_file(renamed, path)
  model = models.build_model('vit', 4, **plan.kwargs)
  fresh = model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))['params']
  with pytest.raises(pretrained.PretrainedError, match=r'torch (Conv|Linear) weight.*importer'):
    pretrained.load_into(fresh, str(path))


def test_name_map_with_an_importer_is_refused(hf_vit):
  directory, _, _ = hf_vit
  with pytest.raises(pretrained.PretrainedError, match='remove init.name_map'):
    pretrained.load_into({}, f'hf:{directory}', name_map=(('a', 'b'),))


def test_flax_attention_kernels_under_jaxadapt_names_say_reshape():
  assert 'big_vision' in pretrained.layout_hint((32, 2, 16), (32, 32))
  assert 'OIHW' in pretrained.layout_hint((32, 3, 8, 8), (8, 8, 3, 32))
  assert pretrained.layout_hint((5,), (6,)) == ''


def timm_resnet_with(tmp_path, edit):
  weights = load_file(GOLDEN / 'timm_resnet50' / 'model.safetensors')
  edit(weights)
  path = tmp_path / 'model.safetensors'
  save_file(weights, path)
  return f'timm:{path}'


def test_unknown_tensors_are_an_error_naming_them(tmp_path):
  def add_se(w):
    w['layer1.0.se.fc1.weight'] = np.ones((2, 16, 1, 1), np.float32)

  with pytest.raises(CheckpointError, match=r'1 tensors .* no place .*layer1\.0\.se\.fc1\.weight'):
    importers.load(timm_resnet_with(tmp_path, add_se))


def test_missing_statistics_are_an_error_naming_them(tmp_path):
  with pytest.raises(CheckpointError, match=r"no tensor 'bn1\.running_var'"):
    importers.load(timm_resnet_with(tmp_path, lambda w: w.pop('bn1.running_var')))


def test_unsupported_vit_variants_say_so(tmp_path):
  weights = load_file(GOLDEN / 'timm_vit' / 'model.safetensors')
  weights['blocks.0.ls1.gamma'] = np.ones(32, np.float32)
  save_file(weights, tmp_path / 'model.safetensors')
  with pytest.raises(CheckpointError, match='layer scale'):
    importers.load(f'timm:{tmp_path}/model.safetensors?num_heads=2')


def test_timm_heads_are_never_guessed(tmp_path):
  weights = load_file(GOLDEN / 'timm_vit' / 'model.safetensors')
  save_file(weights, tmp_path / 'model.safetensors')  # no config.json beside it
  with pytest.raises(CheckpointError, match=r'\?num_heads=N'):
    importers.load(f'timm:{tmp_path}/model.safetensors')
  plan, _ = importers.load(f'timm:{tmp_path}/model.safetensors?num_heads=2')
  assert plan.kwargs['num_heads'] == 2


def test_bad_prefix_and_missing_files():
  with pytest.raises(CheckpointError, match="unknown checkpoint format 'tim:'.*timm:"):
    importers.parse('tim:/x.safetensors')
  with pytest.raises(CheckpointError, match='timm: checkpoint not found'):
    importers.parse('timm:/nonexistent.safetensors')
  assert importers.parse('runs/pretrain') is None  # jaxadapt's own formats: unchanged


def test_inspect_table_lists_every_row_and_the_skips():
  plan = importers.inspect(f'timm:{GOLDEN}/timm_resnet18/model.safetensors')
  text = importers.core.table(plan)
  assert 'conv1.weight' in text and 'stem/conv/kernel' in text and 'oihw>hwio' in text
  counters = sum('num_batches_tracked' in n for n in plan.tensors.shapes)
  assert counters == 13 and f'unused (on purpose): {counters}' in text
  assert 'missing (fresh init): 0' in text


# -------------------------------------------------------------------- export


def test_export_hf_round_trips_into_transformers(hf_vit, tmp_path):
  from jaxadapt.importers import export

  directory, _, io = hf_vit
  plan, params = importers.load(f'hf:{directory}')
  params['head/bias'] = params['head/bias'] + 1.0  # as if fine-tuned
  export.export_params('vit', plan.kwargs, params, str(tmp_path), 'hf')
  back = transformers.ViTForImageClassification.from_pretrained(tmp_path).eval()
  with torch.no_grad():
    got = back(pixel_values=torch.from_numpy(io['inputs']).permute(0, 3, 1, 2)).logits.numpy()
  assert np.abs(got - (io['logits'] + 1.0)).max() <= TOL
  plan2, params2 = importers.load(f'hf:{tmp_path}')  # and back into jaxadapt, bitwise
  assert plan2.kwargs == plan.kwargs
  assert all(np.array_equal(params2[k], params[k]) for k in params)


def test_export_mean_pooled_bert_keeps_its_pooling(tmp_path):
  from jaxadapt.importers import export

  kwargs = dict(vocab_size=30, max_len=8, width=16, depth=1, num_heads=2, mlp_dim=24)
  model = models.build_model('bert', 3, **kwargs)
  params = model.init(jax.random.key(0), np.zeros((1, 8), np.int32))['params']
  flat = {k: np.asarray(v) + 0.1 for k, v in param_tree.flatten(params).items()}
  export.export_params('bert', {**kwargs, 'pool': 'mean'}, flat, str(tmp_path), 'hf')
  ref = transformers.BertModel.from_pretrained(tmp_path).eval()  # head ignored by BertModel
  ids = np.array([[2, 5, 6, 0], [2, 7, 8, 9]], np.int32)
  with torch.no_grad():
    h = ref(
        input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(ids != 0).long()
    )
  mask = (ids != 0)[..., None]
  want = (h.last_hidden_state.numpy() * mask).sum(1) / mask.sum(1)
  plan, back = importers.load(f'hf:{tmp_path}')
  assert plan.kwargs['pool'] == 'mean' and plan.num_classes == 3
  assert np.abs(run(plan, back, ids, features_only=True) - want).max() <= TOL


# ------------------------------------------------------------------ the CLI


def test_fine_tune_an_imported_checkpoint_by_changing_only_checkpoint(tmp_path):
  """full_ft of a timm ResNet-50: the model comes from the checkpoint, statistics stay frozen."""
  from jaxadapt import checkpoint, cli

  config = (
      f'configs/methods/full_ft.py:checkpoint=timm:{GOLDEN}/timm_resnet50/model.safetensors,smoke'
  )
  root = pathlib.Path(__file__).resolve().parents[1]
  assert (
      cli.main(['train', '--config', str(root / config), '--workdir', str(tmp_path), '--quiet'])
      == 0
  )
  saved = json.loads((tmp_path / 'config.json').read_text())
  assert saved['model']['name'] == 'resnet_bn' and saved['model']['kwargs']['layers'] == [
      2,
      1,
      1,
      1,
  ]
  table = json.loads((tmp_path / 'params.json').read_text())
  assert all(not row['trainable'] for p, row in table.items() if p.endswith(('/mean', '/var')))
  _, source = importers.load(f'timm:{GOLDEN}/timm_resnet50/model.safetensors')
  trained = param_tree.flatten(checkpoint.restore_params(tmp_path))
  assert np.array_equal(
      np.asarray(trained['stage2/block1/norm1/var']), source['stage2/block1/norm1/var']
  )
  assert not np.array_equal(np.asarray(trained['stem/conv/kernel']), source['stem/conv/kernel'])


def test_inspect_cli(capsys):
  from jaxadapt import cli

  assert cli.main(['inspect', f'big_vision:{GOLDEN}/big_vision/vit.npz']) == 0
  out = capsys.readouterr().out
  assert 'format: big_vision (ViT)' in out and 'heads_in' in out and 'cls_row' in out
  assert cli.main(['inspect', 'runs/no-such-workdir']) == 2
