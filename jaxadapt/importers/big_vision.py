"""big_vision and vision_transformer (AugReg) ViT `.npz` checkpoints.

Layouts handled: a `params/` (or `opt/target/`) prefix; attention kernels
[D, heads, head_dim] and biases [heads, head_dim]; the output kernel [heads, head_dim, D];
big_vision's `pos_embedding` without a cls row (positions are added before the cls token,
so the cls row becomes zeros) or vision_transformer's `Transformer/posembed_input` with
it; blocks `encoderblock_{i}` or one `scan`-stacked `encoderblock` with a leading depth
axis; both generations' sub-module numbering. Kernels are already HWIO / (in, out).
GELU is flax's tanh form, LayerNorm eps 1e-6.
"""

from __future__ import annotations

import math

from jaxadapt.importers.core import CheckpointError, Plan, Row, Tensors, count

PREFIXES = ('params/', 'opt/target/')


def strip_prefix(tensors: Tensors) -> Tensors:
  for prefix in PREFIXES:
    if all(n.startswith(prefix) for n in tensors.shapes):
      return tensors.renamed(lambda n: n[len(prefix) :])
  return tensors


def plan(tensors: Tensors) -> Plan:
  tensors = strip_prefix(tensors)
  shapes = tensors.shapes
  if 'embedding/kernel' not in shapes:
    raise CheckpointError('big_vision: no embedding/kernel: not a ViT .npz')
  for bad in ('pre_logits/kernel', 'MAPHead_0/probe'):
    if bad in shapes:
      raise CheckpointError(
          f'big_vision: {bad} found: ViTs with a representation layer or attention-pooling '
          f'(MAP) head are not supported'
      )
  scan = 'Transformer/encoderblock/LayerNorm_0/scale' in shapes
  if scan:
    depth = shapes['Transformer/encoderblock/LayerNorm_0/scale'][0]
    block = lambda i: ('Transformer/encoderblock/', f'unstack({i})|')
  else:
    depth = count(shapes, r'Transformer/encoderblock_(\d+)/LayerNorm_0/scale')
    block = lambda i: (f'Transformer/encoderblock_{i}/', '')
  first = block(0)[0]
  # big_vision: MultiHeadDotProductAttention_0, MlpBlock_0, LayerNorm_1;
  # vision_transformer (AugReg): _1, MlpBlock_3, LayerNorm_2.
  if f'{first}MultiHeadDotProductAttention_0/query/kernel' in shapes:
    mha, mlp, ln2 = 'MultiHeadDotProductAttention_0', 'MlpBlock_0', 'LayerNorm_1'
  else:
    mha, mlp, ln2 = 'MultiHeadDotProductAttention_1', 'MlpBlock_3', 'LayerNorm_2'
  rows = [Row('embedding/kernel', 'embedding/kernel'), Row('embedding/bias', 'embedding/bias')]
  cls = 'cls' in shapes
  if cls:
    rows.append(Row('cls', 'cls'))
  if 'pos_embedding' in shapes:  # big_vision: no cls row
    rows.append(Row('pos_embedding', 'pos_embedding', 'cls_row' if cls else 'copy'))
    tokens = shapes['pos_embedding'][1]
  else:
    rows.append(Row('pos_embedding', 'Transformer/posembed_input/pos_embedding'))
    tokens = shapes['Transformer/posembed_input/pos_embedding'][1] - int(cls)
  for i in range(depth):
    s, pre = block(i)
    t = f'encoder/block{i + 1}'
    for name in ('query', 'key', 'value'):
      rows.append(Row(f'{t}/attn/{name}/kernel', f'{s}{mha}/{name}/kernel', pre + 'heads_in'))
      rows.append(Row(f'{t}/attn/{name}/bias', f'{s}{mha}/{name}/bias', pre + 'heads_in'))
    rows.append(Row(f'{t}/attn/out/kernel', f'{s}{mha}/out/kernel', pre + 'heads_out'))
    rows.append(Row(f'{t}/attn/out/bias', f'{s}{mha}/out/bias', (pre + 'copy')))
    for j, fc in ((0, 'fc1'), (1, 'fc2')):
      for leaf in ('kernel', 'bias'):
        rows.append(Row(f'{t}/mlp/{fc}/{leaf}', f'{s}{mlp}/Dense_{j}/{leaf}', pre + 'copy'))
    for n, ln in ((1, 'LayerNorm_0'), (2, ln2)):
      for leaf in ('scale', 'bias'):
        rows.append(Row(f'{t}/norm{n}/{leaf}', f'{s}{ln}/{leaf}', pre + 'copy'))
  for leaf in ('scale', 'bias'):
    rows.append(Row(f'encoder/norm/{leaf}', f'Transformer/encoder_norm/{leaf}'))
  num_classes = None
  if 'head/kernel' in shapes:
    rows += [Row('head/kernel', 'head/kernel'), Row('head/bias', 'head/bias')]
    num_classes = shapes['head/kernel'][1]
  patch, _, channels, width = shapes['embedding/kernel']
  d, heads, _ = shapes[f'{first}{mha}/query/kernel'][-3:]
  grid = math.isqrt(tokens)
  if grid * grid != tokens:
    raise CheckpointError(f'big_vision: {tokens} position embeddings are not a square grid')
  kwargs = dict(
      patch_size=patch,
      width=width,
      depth=depth,
      num_heads=heads,
      mlp_dim=shapes[f'{first}{mlp}/Dense_0/kernel'][-1],
      pool='cls' if cls else 'gap',
      gelu='tanh',
      norm_eps=1e-6,
  )
  return Plan(
      'big_vision',
      'ViT (scan)' if scan else 'ViT',
      'vit',
      kwargs,
      num_classes,
      (grid * patch, grid * patch, channels),
      rows,
      {},
      tensors,
      extra={'image_size': grid * patch},
  )
