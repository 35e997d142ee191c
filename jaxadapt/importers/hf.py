"""Hugging Face checkpoints: a directory with `config.json` and `model.safetensors` (or a
sharded `model.safetensors.index.json`). Families: ViT (`ViTModel`,
`ViTForImageClassification`) and BERT (`BertModel`, `BertFor*`, sentence-transformers).

Everything architectural comes from config.json; torch Linear weights are transposed
and the patch conv goes OIHW -> HWIO, every one of them, square or not.
"""

from __future__ import annotations

import json

from etils import epath

from jaxadapt.importers.core import CheckpointError, Plan, Row, Tensors, read_tensors

GELU = {'gelu': 'exact', 'gelu_new': 'tanh', 'gelu_pytorch_tanh': 'tanh', 'gelu_fast': 'tanh'}


def weights_file(directory: epath.Path) -> epath.Path:
  for name in ('model.safetensors', 'model.safetensors.index.json'):
    if (directory / name).exists():
      return directory / name
  raise CheckpointError(
      f'{directory} has no model.safetensors or model.safetensors.index.json '
      f'(a pytorch_model.bin? save it again with save_pretrained(safe_serialization=True))'
  )


def plan(directory: epath.Path, options: dict) -> Plan:
  config_path = directory / 'config.json'
  if not config_path.exists():
    raise CheckpointError(f'hf: {directory} has no config.json (a Hugging Face model directory)')
  config = json.loads(config_path.read_text())
  tensors = read_tensors(weights_file(directory))
  kind = config.get('model_type')
  if kind == 'vit':
    return _vit(config, tensors)
  if kind == 'bert':
    return _bert(config, tensors, directory)
  raise CheckpointError(
      f"hf: model_type '{kind}' in {config_path} is not supported; supported: vit, bert"
  )


def _gelu(config: dict) -> str:
  act = config.get('hidden_act', 'gelu')
  if act not in GELU:
    raise CheckpointError(f"hf: hidden_act '{act}' is not supported; supported: {list(GELU)}")
  return GELU[act]


def _prefix(tensors: Tensors, prefix: str, probe: str) -> str:
  """'vit.' / 'bert.' for *For...* heads' checkpoints, '' for the bare model."""
  return prefix if f'{prefix}{probe}' in tensors.shapes else ''


def _linear(rows: list[Row], target: str, source: str) -> None:
  rows.append(Row(f'{target}/kernel', f'{source}.weight', 'transpose'))
  rows.append(Row(f'{target}/bias', f'{source}.bias'))


def _norm(rows: list[Row], target: str, source: str, tensors: Tensors) -> None:
  # Checkpoints converted from TensorFlow name LayerNorm parameters gamma/beta.
  scale, bias = ('gamma', 'beta') if f'{source}.gamma' in tensors.shapes else ('weight', 'bias')
  rows.append(Row(f'{target}/scale', f'{source}.{scale}'))
  rows.append(Row(f'{target}/bias', f'{source}.{bias}'))


def _head(rows: list[Row], tensors: Tensors) -> int | None:
  if 'classifier.weight' not in tensors.shapes:
    return None
  _linear(rows, 'head', 'classifier')
  return tensors.shapes['classifier.weight'][0]


def _vit(config: dict, tensors: Tensors) -> Plan:
  p = _prefix(tensors, 'vit.', 'embeddings.cls_token')
  depth = config['num_hidden_layers']
  rows = [
      Row('cls', f'{p}embeddings.cls_token'),
      Row('pos_embedding', f'{p}embeddings.position_embeddings'),
      Row('embedding/kernel', f'{p}embeddings.patch_embeddings.projection.weight', 'oihw>hwio'),
      Row('embedding/bias', f'{p}embeddings.patch_embeddings.projection.bias'),
  ]
  for i in range(depth):
    s, t = f'{p}encoder.layer.{i}', f'encoder/block{i + 1}'
    for name in ('query', 'key', 'value'):
      _linear(rows, f'{t}/attn/{name}', f'{s}.attention.attention.{name}')
    _linear(rows, f'{t}/attn/out', f'{s}.attention.output.dense')
    _linear(rows, f'{t}/mlp/fc1', f'{s}.intermediate.dense')
    _linear(rows, f'{t}/mlp/fc2', f'{s}.output.dense')
    _norm(rows, f'{t}/norm1', f'{s}.layernorm_before', tensors)
    _norm(rows, f'{t}/norm2', f'{s}.layernorm_after', tensors)
  _norm(rows, 'encoder/norm', f'{p}layernorm', tensors)
  num_classes = _head(rows, tensors)
  skipped = {
      n: 'ViTModel pooler: image classification reads the normed cls token, not the pooler'
      for n in tensors.shapes
      if n.startswith(f'{p}pooler.')
  }
  size, patch = config.get('image_size', 224), config.get('patch_size', 16)
  kwargs = dict(
      patch_size=patch,
      width=config['hidden_size'],
      depth=depth,
      num_heads=config['num_attention_heads'],
      mlp_dim=config['intermediate_size'],
      pool='cls',
      gelu=_gelu(config),
      norm_eps=config.get('layer_norm_eps', 1e-12),
  )
  return Plan(
      'hf',
      (config.get('architectures') or ['ViTModel'])[0],
      'vit',
      kwargs,
      num_classes,
      (size, size, config.get('num_channels', 3)),
      rows,
      skipped,
      tensors,
      extra={'image_size': size},
  )


def _bert_pool(directory: epath.Path, config: dict, has_classifier: bool) -> str:
  """How the checkpoint pools: sentence-transformers' pooling config, else BERT's own."""
  pooling = directory / '1_Pooling' / 'config.json'
  if pooling.exists():
    modes = json.loads(pooling.read_text())
    if modes.get('pooling_mode_mean_tokens'):
      return 'mean'
    if modes.get('pooling_mode_cls_token'):
      return 'cls'
    raise CheckpointError(f'hf: {pooling} asks for a pooling other than mean or cls tokens')
  arch = (config.get('architectures') or ['BertModel'])[0]
  return 'pooler' if has_classifier or arch == 'BertForSequenceClassification' else 'mean'


def _bert(config: dict, tensors: Tensors, directory: epath.Path) -> Plan:
  p = _prefix(tensors, 'bert.', 'embeddings.word_embeddings.weight')
  depth = config['num_hidden_layers']
  e = f'{p}embeddings'
  rows = [
      Row('embedding/word/embedding', f'{e}.word_embeddings.weight'),
      Row('embedding/position/embedding', f'{e}.position_embeddings.weight'),
      Row('embedding/token_type/embedding', f'{e}.token_type_embeddings.weight'),
  ]
  _norm(rows, 'embedding/norm', f'{e}.LayerNorm', tensors)
  for i in range(depth):
    s, t = f'{p}encoder.layer.{i}', f'encoder/block{i + 1}'
    for name in ('query', 'key', 'value'):
      _linear(rows, f'{t}/attn/{name}', f'{s}.attention.self.{name}')
    _linear(rows, f'{t}/attn/out', f'{s}.attention.output.dense')
    _norm(rows, f'{t}/norm1', f'{s}.attention.output.LayerNorm', tensors)
    _linear(rows, f'{t}/mlp/fc1', f'{s}.intermediate.dense')
    _linear(rows, f'{t}/mlp/fc2', f'{s}.output.dense')
    _norm(rows, f'{t}/norm2', f'{s}.output.LayerNorm', tensors)
  num_classes = _head(rows, tensors)
  pool = _bert_pool(directory, config, num_classes is not None)
  skipped = {}
  for n in tensors.shapes:
    if n.startswith(f'{p}pooler.'):
      if pool == 'pooler':
        rows.append(
            Row(
                'pooler/' + ('kernel' if n.endswith('weight') else 'bias'),
                n,
                'transpose' if n.endswith('weight') else 'copy',
            )
        )
      else:
        skipped[n] = f"BERT pooler (tanh Dense on CLS): this checkpoint pools by '{pool}'"
    elif n == f'{e}.position_ids':
      skipped[n] = 'a buffer of 0..max_len-1, recomputed by the model'
    elif n.startswith('cls.'):
      skipped[n] = 'pre-training head (masked LM / next sentence), not part of the encoder'
  if config.get('position_embedding_type', 'absolute') != 'absolute':
    raise CheckpointError('hf: only absolute position embeddings are supported for bert')
  kwargs = dict(
      vocab_size=config['vocab_size'],
      max_len=config['max_position_embeddings'],
      type_vocab_size=config.get('type_vocab_size', 2),
      width=config['hidden_size'],
      depth=depth,
      num_heads=config['num_attention_heads'],
      mlp_dim=config['intermediate_size'],
      pool=pool,
      gelu=_gelu(config),
      norm_eps=config.get('layer_norm_eps', 1e-12),
      pad_id=config.get('pad_token_id', 0) or 0,
  )
  extra = {}
  if (directory / 'tokenizer.json').exists():
    extra['tokenizer'] = str(directory / 'tokenizer.json')
  return Plan(
      'hf',
      (config.get('architectures') or ['BertModel'])[0],
      'bert',
      kwargs,
      num_classes,
      (8,),
      rows,
      skipped,
      tensors,
      extra=extra,
  )
