"""BiT (Big Transfer) ResNetV2 `.npz` checkpoints: `resnet/root_block/...`,
`resnet/block{s}/unit{NN}/{a,b,c}/{standardized_conv2d,group_norm}`, `resnet/group_norm`,
`resnet/head/conv2d`. Kernels are HWIO already; the 1x1 conv head becomes a Dense.

The GroupNorm group count is not recorded: BiT uses 32 (`?num_groups=N` otherwise).
"""

from __future__ import annotations

from jaxadapt.importers.core import CheckpointError, Plan, Row, Tensors, count, option

P = 'resnet/'


def plan(tensors: Tensors, options: dict) -> Plan:
  shapes = tensors.shapes
  root = f'{P}root_block/standardized_conv2d/kernel'
  if root not in shapes:
    raise CheckpointError(f'bit: no {root}: not a BiT ResNetV2 .npz')
  stages = count(shapes, rf'{P}block(\d+)/unit01/a/standardized_conv2d/kernel')
  layers = tuple(
      count(shapes, rf'{P}block{s}/unit(\d+)/a/standardized_conv2d/kernel')
      for s in range(1, stages + 1)
  )
  rows = [Row('stem/conv/kernel', root)]
  for s in range(1, stages + 1):
    for b in range(1, layers[s - 1] + 1):
      src, t = f'{P}block{s}/unit{b:02d}/', f'stage{s}/block{b}'
      for j, unit in enumerate('abc', start=1):
        rows.append(Row(f'{t}/conv{j}/kernel', f'{src}{unit}/standardized_conv2d/kernel'))
        rows.append(Row(f'{t}/norm{j}/scale', f'{src}{unit}/group_norm/gamma'))
        rows.append(Row(f'{t}/norm{j}/bias', f'{src}{unit}/group_norm/beta'))
      if f'{src}a/proj/standardized_conv2d/kernel' in shapes:
        rows.append(Row(f'{t}/proj/kernel', f'{src}a/proj/standardized_conv2d/kernel'))
  rows += [Row('norm/scale', f'{P}group_norm/gamma'), Row('norm/bias', f'{P}group_norm/beta')]
  num_classes = None
  if f'{P}head/conv2d/kernel' in shapes:
    rows += [
        Row('head/kernel', f'{P}head/conv2d/kernel', 'squeeze'),
        Row('head/bias', f'{P}head/conv2d/bias'),
    ]
    num_classes = shapes[f'{P}head/conv2d/kernel'][-1]
  stem = shapes[root][-1]
  factor = stem // 64 if stem % 64 == 0 else 1
  kwargs = dict(
      layers=layers,
      width_factor=factor,
      base_width=stem // factor,
      num_groups=option(options, 'num_groups', 32),
  )
  return Plan(
      'bit',
      f'BiT ResNetV2 x{factor}',
      'bit',
      kwargs,
      num_classes,
      (64, 64, shapes[root][2]),
      rows,
      {},
      tensors,
      extra={'image_size': 224},
  )
