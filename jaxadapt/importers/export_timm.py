"""`jaxadapt export --format timm` (and `--format bit`): a trained ViT or ResNet in timm's
state-dict names and layouts, or a BiT ResNetV2 as BiT's `.npz`.

Like the Hugging Face exporter, the rows are the importer's own (timm.py, bit.py),
inverted: the exporter describes the model by the few source shapes the importer reads
its structure from, asks the importer for its plan, and inverts every row (torch Linear
(out, in), conv OIHW, the fused [q; k; v] re-concatenated). The written file is then
planned again by the importer, which must place every tensor and fill every jaxadapt
parameter, so an export always re-imports to the same parameters; a model option the
source format cannot record (eps, pooling, prompts) is refused, not dropped.

timm's `config.json` follows its hub layout (`architecture`, `num_classes`,
`model_args`, `pretrained_cfg`), so `timm.create_model('local-dir:<out>', pretrained=True)`
builds the same model and loads it strictly.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

import numpy as np
from etils import epath

from jaxadapt.importers import bit, core, timm
from jaxadapt.importers.core import ExportError

# timm architectures whose block type is known: name -> bottleneck.
RESNETS = {
    'resnet18': False,
    'resnet34': False,
    'resnet26': True,
    'resnet50': True,
    'resnet101': True,
    'resnet152': True,
}
# Options that change no parameter and no inference output.
TRAINING_ONLY = {'dropout'}


def _oihw(shape: tuple[int, ...]) -> tuple[int, ...]:
  return (shape[3], shape[2], shape[0], shape[1])


def full_kwargs(model: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
  """The model's options with its defaults filled in (lists as tuples, as JSON loses them)."""
  from jaxadapt import models

  module = models.get_spec(model).module
  out = {
      f.name: f.default
      for f in dataclasses.fields(module)
      if f.default is not dataclasses.MISSING and f.name not in ('parent', 'name')
  }
  out.update(kwargs)
  return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items()}


def _check_round_trip(fmt: str, model: str, want: dict, plan: core.Plan, normalise=None) -> None:
  """Refuses a model whose options the importer would read back differently."""
  got = {k: tuple(v) if isinstance(v, list) else v for k, v in plan.kwargs.items()}
  if normalise:
    want, got = normalise(want), normalise(got)
  for key, value in sorted(want.items()):
    if key in TRAINING_ONLY:
      continue
    default = full_kwargs(model, {}).get(key)
    read = got.get(key, default)
    if read != value:
      raise ExportError(
          f'export --format {fmt}: {model} option {key}={value!r} cannot be written in '
          f'that format (it would load back as {read!r}); supported: {key}={read!r}'
      )


def _replan(fmt: str, tensors: dict[str, np.ndarray], make_plan, flat: Mapping) -> None:
  """The importer's plan of what is about to be written: every tensor placed and shaped as
  the parameter it becomes (else a bug here), every jaxadapt parameter written."""
  shapes = {k: v.shape for k, v in tensors.items()}
  plan = core.check(make_plan(core.Tensors(shapes, None)), {k: v.shape for k, v in flat.items()})
  if plan.missing:
    raise ExportError(
        f'export --format {fmt}: {len(plan.missing)} parameters have no place in that '
        f'format: {", ".join(plan.missing[:4])}'
    )


# ------------------------------------------------------------------------ timm


def timm_export(
    model: str, kwargs: Mapping[str, Any], flat: Mapping[str, np.ndarray], run: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """({timm name: tensor}, timm hub config.json) for a vit or resnet_bn; nothing written.

  `run` may hold the run's `checkpoint` (a timm source's config.json supplies the
  architecture name and preprocessing) and its eval `preprocess` spec (mean, std, size).
  """
  want = full_kwargs(model, kwargs)
  source = _source_config(run.get('checkpoint'))
  if model == 'vit':
    make_plan, config = _vit(want, flat, source)
  elif model == 'resnet_bn':
    make_plan, config = _resnet(want, flat, source)
  else:
    raise ExportError(
        f"export --format timm supports vit and resnet_bn (timm's ViT and ResNet), not '{model}'"
    )
  plan = make_plan(None)
  _check_round_trip('timm', model, want, plan)
  tensors = core.invert_rows(plan.rows, flat)
  for name in [n for n in tensors if n.endswith('.running_mean')]:  # timm's BN step counters
    tensors[name.removesuffix('running_mean') + 'num_batches_tracked'] = np.array(0, np.int64)
  _replan('timm', tensors, make_plan, flat)
  _preprocessing(config, run.get('preprocess'), source)
  return tensors, config


def _vit(want: dict, flat: Mapping, source: dict):
  if want['pool'] != 'cls':
    raise ExportError(
        "export --format timm: timm's ViT pools with the class token here (pool='cls'); "
        f"pool={want['pool']!r} has no timm equivalent (timm's 'avg' adds an fc_norm)"
    )
  p, _, channels, width = flat['embedding/kernel'].shape
  tokens = flat['pos_embedding'].shape[1]
  grid = int(round((tokens - 1) ** 0.5))
  mlp = want['mlp_dim'] = want['mlp_dim'] or 4 * width
  ratio = mlp / width
  if int(width * ratio) != mlp:
    raise ExportError(f'export --format timm: mlp_dim {mlp} is not a timm mlp_ratio of {width}')
  model_args = dict(
      img_size=grid * p,
      patch_size=p,
      embed_dim=width,
      depth=want['depth'],
      num_heads=want['num_heads'],
      mlp_ratio=ratio,
      in_chans=channels,
  )
  if want['gelu'] == 'tanh':
    model_args['act_layer'] = 'gelu_tanh'
  shapes = {
      'patch_embed.proj.weight': (width, channels, p, p),
      'pos_embed': flat['pos_embedding'].shape,
      'cls_token': flat['cls'].shape,
      'blocks.0.mlp.fc1.weight': (mlp, width),
      **{f'blocks.{i}.norm1.weight': (width,) for i in range(want['depth'])},
  }
  num_classes = _head(shapes, flat, 'head')
  arch = source.get('architecture', '').partition('.')[0]
  if not arch.startswith('vit_'):
    arch = 'vit_base_patch16_224'  # always registered; model_args set every size
  config = _config(arch, num_classes, width, 'token', model_args, channels, grid * p)
  config['pretrained_cfg'].update(
      fixed_input_size=True, first_conv='patch_embed.proj', classifier='head'
  )
  plan_config = {'architecture': arch, 'model_args': model_args}
  return lambda t: timm._vit(t or core.Tensors(shapes, None), plan_config, {}), config


def _resnet(want: dict, flat: Mapping, source: dict):
  layers, bottleneck = want['layers'], want['bottleneck']
  if want['stem_width'] != 64:  # timm's stem_width sizes only its deep stems
    raise ExportError(
        f"export --format timm: timm's 7x7 ResNet stem has 64 channels; this resnet_bn has "
        f"stem_width={want['stem_width']} (supported: stem_width=64)"
    )
  shapes = {'conv1.weight': _oihw(flat['stem/conv/kernel'].shape)}
  for s, n in enumerate(layers, start=1):
    for b in range(n):
      src, t = f'layer{s}.{b}', f'stage{s}/block{b + 1}'
      for j in (1, 3) if bottleneck else (1,):
        shapes[f'{src}.conv{j}.weight'] = _oihw(flat[f'{t}/conv{j}/kernel'].shape)
      if f'{t}/proj/kernel' in flat:
        shapes[f'{src}.downsample.0.weight'] = _oihw(flat[f'{t}/proj/kernel'].shape)
  num_classes = _head(shapes, flat, 'fc')
  widths = tuple(want['widths'][: len(layers)])
  want['widths'] = widths  # extra widths past the last stage build nothing
  arch = source.get('architecture', '').partition('.')[0]
  if RESNETS.get(arch) != bottleneck:
    arch = 'resnet50' if bottleneck else 'resnet18'
  model_args = dict(
      layers=list(layers),
      channels=list(widths),
      in_chans=shapes['conv1.weight'][1],
  )
  features = widths[-1] * (4 if bottleneck else 1)
  size = _size(source) or 224  # a ResNet takes any size: timm's default when none is known
  config = _config(arch, num_classes, features, 'avg', model_args, model_args['in_chans'], size)
  config['pretrained_cfg'].update(fixed_input_size=False, first_conv='conv1', classifier='fc')
  return lambda t: timm._resnet(t or core.Tensors(shapes, None), {}), config


def _head(shapes: dict, flat: Mapping, name: str) -> int:
  if 'head/kernel' not in flat:
    return 0  # timm's num_classes=0: no classifier
  shapes[f'{name}.weight'] = flat['head/kernel'].shape[::-1]
  return int(flat['head/kernel'].shape[1])


def _config(arch, num_classes, features, pool, model_args, channels, size) -> dict[str, Any]:
  return {
      'architecture': arch,
      'num_classes': num_classes,
      'num_features': int(features),
      'global_pool': pool,
      'model_args': model_args,
      'pretrained_cfg': {
          'input_size': [int(channels), int(size), int(size)],
          'num_classes': num_classes,
      },
  }


def _source_config(checkpoint: str | None) -> dict:
  """The hub config.json beside the timm checkpoint the run started from, if still there."""
  if not checkpoint:
    return {}
  text = str(checkpoint).partition('?')[0]
  fmt, sep, rest = text.partition(':')
  path = epath.Path(rest if sep and fmt == 'timm' else text)
  if not (path.suffix == '.safetensors' and path.exists()):
    return {}
  return timm.hub_config(path)


def _size(source: dict) -> int | None:
  size = source.get('pretrained_cfg', {}).get('input_size')
  return int(size[-1]) if size else None


def _preprocessing(config: dict, spec: str | None, source: dict) -> None:
  """mean, std, input size and resizing from the run's eval preprocessing when it is the
  plain `scale|normalize|resize` kind timm describes; else from the timm source."""
  cfg, channels = config['pretrained_cfg'], config['pretrained_cfg']['input_size'][0]
  for key in ('mean', 'std', 'interpolation', 'crop_pct', 'crop_mode'):
    if key in source.get('pretrained_cfg', {}):
      cfg[key] = source['pretrained_cfg'][key]
  ops = [op for op in (spec or '').split('|') if op]
  if not ops or ops[0] != 'scale' or any(op.startswith(('permute', 'pad_crop')) for op in ops):
    return
  for op in ops:
    m = re.fullmatch(r'(\w+)(?:\((.*)\))?', op)
    args = [float(a) for a in m.group(2).split(',')] if m and m.group(2) else []
    if m and m.group(1) == 'normalize':
      half = len(args) // 2
      mean, std = args[:half], args[half:]
      cfg['mean'] = mean * channels if half == 1 else mean
      cfg['std'] = std * channels if half == 1 else std
    elif m and m.group(1) == 'resize' and not config['pretrained_cfg'].get('fixed_input_size'):
      cfg['input_size'][1:] = [int(args[0]), int(args[-1])]
  cfg.update(interpolation='bilinear', crop_pct=1.0, crop_mode='center')  # jax.image.resize


# ------------------------------------------------------------------------- BiT


def bit_export(model: str, kwargs: Mapping[str, Any], flat: Mapping[str, np.ndarray]):
  """{BiT npz name: tensor} for a `bit` model, and the import options it needs back."""
  if model != 'bit':
    raise ExportError(f"export --format bit supports bit (BiT ResNetV2), not '{model}'")
  want = full_kwargs(model, kwargs)
  shapes = {f'{bit.P}root_block/standardized_conv2d/kernel': flat['stem/conv/kernel'].shape}
  for s, n in enumerate(want['layers'], start=1):
    for b in range(1, n + 1):
      src, t = f'{bit.P}block{s}/unit{b:02d}/', f'stage{s}/block{b}'
      shapes[f'{src}a/standardized_conv2d/kernel'] = flat[f'{t}/conv1/kernel'].shape
      if f'{t}/proj/kernel' in flat:
        shapes[f'{src}a/proj/standardized_conv2d/kernel'] = flat[f'{t}/proj/kernel'].shape
  if 'head/kernel' in flat:
    shapes[f'{bit.P}head/conv2d/kernel'] = (1, 1, *flat['head/kernel'].shape)
  options = {'num_groups': str(want['num_groups'])}
  make_plan = lambda t: bit.plan(t or core.Tensors(shapes, None), options)
  plan = make_plan(None)

  def width(kw):  # the model depends on base_width * width_factor only
    kw = dict(kw)
    kw['width'] = kw.pop('base_width', 64) * kw.pop('width_factor', 1)
    return kw

  _check_round_trip('bit', model, want, plan, width)
  tensors = core.invert_rows(plan.rows, flat)
  _replan('bit', tensors, make_plan, flat)
  return tensors, options
