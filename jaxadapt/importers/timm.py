"""timm (and torchvision) checkpoints: a state dict as `.safetensors`, optionally beside the
hub's `config.json` (`architecture`, `num_classes`, `model_args`). Families: ViT
(`vit_*`, class-token pooling) and ResNet (`resnet*`, torchvision names).

Shapes record everything but the ViT's number of heads: it comes from config.json
(`model_args.num_heads`, or the standard size in the architecture name), else from the
checkpoint option `?num_heads=N`; a guess would give wrong outputs, so there is none.
"""

from __future__ import annotations

import json
import math
import re

from etils import epath

from jaxadapt.importers.core import CheckpointError, Plan, Row, Tensors, count, option

# timm's standard ViT sizes: name -> heads.
VIT_HEADS = {'tiny': 3, 'small': 6, 'medium': 8, 'base': 12, 'large': 16, 'huge': 16}


def hub_config(path: epath.Path) -> dict:
  config = path.parent / 'config.json'
  return json.loads(config.read_text()) if config.exists() else {}


def is_vit(tensors: Tensors) -> bool:
  return 'patch_embed.proj.weight' in tensors.shapes


def is_resnet(tensors: Tensors) -> bool:
  return 'conv1.weight' in tensors.shapes and 'layer1.0.conv1.weight' in tensors.shapes


def plan(tensors: Tensors, path: epath.Path, options: dict) -> Plan:
  tensors = tensors.renamed(lambda n: n.removeprefix('module.'))  # DistributedDataParallel
  config = hub_config(path)
  if is_vit(tensors):
    return _vit(tensors, config, options)
  if is_resnet(tensors):
    return _resnet(tensors, config)
  raise CheckpointError(
      f'timm: {path} is neither a ViT (patch_embed.proj.weight) nor a ResNet '
      f'(conv1.weight, layer1.0.conv1.weight); supported timm families: vit, resnet'
  )


def _linear(rows: list[Row], target: str, source: str, transform: str = 'transpose') -> None:
  rows.append(Row(f'{target}/kernel', f'{source}.weight', transform))
  rows.append(Row(f'{target}/bias', f'{source}.bias'))


def _vit_heads(config: dict, options: dict, width: int) -> int:
  heads = option(options, 'num_heads', None) or config.get('model_args', {}).get('num_heads')
  if heads is None:
    m = re.match(r'vit_([a-z]+)_patch', config.get('architecture', ''))
    heads = VIT_HEADS.get(m.group(1)) if m else None
  if heads is None:
    raise CheckpointError(
        f'timm: the number of attention heads is not recorded in the checkpoint (width '
        f'{width}); put the hub config.json beside it or add ?num_heads=N to the checkpoint'
    )
  return int(heads)


# timm ViT activations jaxadapt implements exactly: act_layer -> the ViT's `gelu` option.
GELUS = {None: 'exact', 'gelu': 'exact', 'gelu_tanh': 'tanh'}


def _vit_gelu(config: dict) -> str:
  act = config.get('model_args', {}).get('act_layer')
  if act not in GELUS:
    raise CheckpointError(
        f"timm: model_args.act_layer={act!r} is not supported; supported: 'gelu', 'gelu_tanh'"
    )
  return GELUS[act]


def _vit(tensors: Tensors, config: dict, options: dict) -> Plan:
  shapes = tensors.shapes
  unsupported = [
      n
      for n in shapes
      if re.search(r'(^|\.)(fc_norm|ls1|ls2|reg_token|norm_pre|q_norm|k_norm|attn_pool)\b', n)
  ]
  if unsupported:
    raise CheckpointError(
        f'timm: this ViT variant is not supported ({unsupported[0]}: layer scale, registers, '
        f'fc_norm/average pooling, pre-norm or attention pooling); supported: class-token ViTs'
    )
  if 'cls_token' not in shapes:
    raise CheckpointError('timm: ViTs without a class token are not supported')
  width, channels, patch, _ = shapes['patch_embed.proj.weight']
  depth = count(shapes, r'blocks\.(\d+)\.norm1\.weight')
  tokens = shapes['pos_embed'][1]
  grid = math.isqrt(tokens - 1)
  if grid * grid != tokens - 1:
    raise CheckpointError(
        f'timm: pos_embed has {tokens} tokens, not a class token plus a square grid '
        f'(no_embed_class ViTs are not supported)'
    )
  rows = [
      Row('cls', 'cls_token'),
      Row('pos_embedding', 'pos_embed'),
      Row('embedding/kernel', 'patch_embed.proj.weight', 'oihw>hwio'),
      Row('embedding/bias', 'patch_embed.proj.bias'),
  ]
  for i in range(depth):
    s, t = f'blocks.{i}', f'encoder/block{i + 1}'
    for k, name in enumerate(('query', 'key', 'value')):  # fused [q; k; v] rows
      rows.append(Row(f'{t}/attn/{name}/kernel', f'{s}.attn.qkv.weight', f'qkv({k})|transpose'))
      rows.append(Row(f'{t}/attn/{name}/bias', f'{s}.attn.qkv.bias', f'qkv({k})'))
    _linear(rows, f'{t}/attn/out', f'{s}.attn.proj')
    _linear(rows, f'{t}/mlp/fc1', f'{s}.mlp.fc1')
    _linear(rows, f'{t}/mlp/fc2', f'{s}.mlp.fc2')
    for n in (1, 2):
      rows += [
          Row(f'{t}/norm{n}/scale', f'{s}.norm{n}.weight'),
          Row(f'{t}/norm{n}/bias', f'{s}.norm{n}.bias'),
      ]
  rows += [Row('encoder/norm/scale', 'norm.weight'), Row('encoder/norm/bias', 'norm.bias')]
  num_classes = None
  if 'head.weight' in shapes:
    _linear(rows, 'head', 'head')
    num_classes = shapes['head.weight'][0]
  kwargs = dict(
      patch_size=patch,
      width=width,
      depth=depth,
      num_heads=_vit_heads(config, options, width),
      mlp_dim=shapes['blocks.0.mlp.fc1.weight'][0],
      pool='cls',
      gelu=_vit_gelu(config),
      norm_eps=1e-6,
  )
  return Plan(
      'timm',
      config.get('architecture', 'timm vit'),
      'vit',
      kwargs,
      num_classes,
      (grid * patch, grid * patch, channels),
      rows,
      {},
      tensors,
      extra={'image_size': grid * patch},
  )


def _bn(rows: list[Row], skipped: dict, target: str, source: str) -> None:
  rows += [
      Row(f'{target}/scale', f'{source}.weight'),
      Row(f'{target}/bias', f'{source}.bias'),
      Row(f'{target}/mean', f'{source}.running_mean'),
      Row(f'{target}/var', f'{source}.running_var'),
  ]
  skipped[f'{source}.num_batches_tracked'] = 'BatchNorm step counter, unused with frozen statistics'


def _resnet(tensors: Tensors, config: dict) -> Plan:
  shapes = tensors.shapes
  stages = count(shapes, r'layer(\d+)\.0\.conv1\.weight')
  layers = tuple(count(shapes, rf'layer{s}\.(\d+)\.conv1\.weight') for s in range(1, stages + 1))
  bottleneck = 'layer1.0.conv3.weight' in shapes
  widths = tuple(shapes[f'layer{s}.0.conv1.weight'][0] for s in range(1, stages + 1))
  if bottleneck:
    for s, w in enumerate(widths, start=1):
      if shapes[f'layer{s}.0.conv3.weight'][0] != 4 * w:
        raise CheckpointError(
            f'timm: layer{s} is a wide or grouped bottleneck (ResNeXt / Wide ResNet): not supported'
        )
  rows, skipped = [Row('stem/conv/kernel', 'conv1.weight', 'oihw>hwio')], {}
  _bn(rows, skipped, 'stem/norm', 'bn1')
  convs = 3 if bottleneck else 2
  for s in range(1, stages + 1):
    for b in range(layers[s - 1]):
      src, t = f'layer{s}.{b}', f'stage{s}/block{b + 1}'
      for j in range(1, convs + 1):
        rows.append(Row(f'{t}/conv{j}/kernel', f'{src}.conv{j}.weight', 'oihw>hwio'))
        _bn(rows, skipped, f'{t}/norm{j}', f'{src}.bn{j}')
      if f'{src}.downsample.0.weight' in shapes:
        rows.append(Row(f'{t}/proj/kernel', f'{src}.downsample.0.weight', 'oihw>hwio'))
        _bn(rows, skipped, f'{t}/proj_norm', f'{src}.downsample.1')
  skipped = {k: v for k, v in skipped.items() if k in shapes}
  num_classes = None
  if 'fc.weight' in shapes:
    _linear(rows, 'head', 'fc')
    num_classes = shapes['fc.weight'][0]
  kwargs = dict(
      layers=layers,
      bottleneck=bottleneck,
      widths=widths,
      stem_width=shapes['conv1.weight'][0],
      bn_eps=1e-5,
  )
  return Plan(
      'timm',
      config.get('architecture', 'timm resnet'),
      'resnet_bn',
      kwargs,
      num_classes,
      (64, 64, shapes['conv1.weight'][1]),
      rows,
      skipped,
      tensors,
      extra={'image_size': 224},
  )
