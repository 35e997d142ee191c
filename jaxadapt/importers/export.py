"""`jaxadapt export --format hf|timm|bit`: a trained model back in the source library's
names and layout, with LoRA, DoRA and IA3 merged: `hf` loads in `transformers`
(`from_pretrained(out)`), `timm` in timm (`create_model('local-dir:out', pretrained=True)`,
export_timm.py), `bit` is BiT's `.npz`.

The rows are the importer's own (hf.py), inverted: one table serves both directions, so
an export always re-imports to the same parameters. ViT exports as
`ViTForImageClassification`; BERT as `BertForSequenceClassification` when it pools with
BERT's pooler, else as `BertModel` plus sentence-transformers' `1_Pooling/config.json`
(its head is written as `classifier.*`, which jaxadapt reads back and transformers ignores).
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np
from etils import epath

from jaxadapt import export as export_lib
from jaxadapt.importers import core, export_timm, hf
from jaxadapt.importers.core import ExportError

# format -> the jaxadapt models it can write
FORMATS = {'hf': ('vit', 'bert'), 'timm': ('vit', 'resnet_bn'), 'bit': ('bit',)}


def export(workdir: str, out: str, fmt: str) -> dict[str, np.ndarray]:
  """Writes the workdir's latest parameters (LoRA merged) to directory `out` in `fmt`."""
  _check_format(fmt)
  wd = epath.Path(workdir)
  if not (wd / 'config.json').exists():
    raise ExportError(f'{workdir} has no config.json: is it a jaxadapt workdir?')
  config = json.loads((wd / 'config.json').read_text())
  if config['model']['name'] not in FORMATS[fmt]:  # before restoring anything
    _unsupported(fmt, config['model']['name'])
  flat = export_lib.restore_flat(wd, config, f'export --format {fmt}')  # QLoRA dequantised
  run = {
      'checkpoint': config.get('init', {}).get('checkpoint'),
      'preprocess': config.get('preprocess', {}).get('eval'),
  }
  return export_params(config['model']['name'], config['model']['kwargs'], flat, out, fmt, run)


def _check_format(fmt: str) -> None:
  if fmt not in FORMATS:
    raise ExportError(
        f'export --format {fmt}: unknown format; supported: '
        + ', '.join(f"{f} ({', '.join(m)})" for f, m in FORMATS.items())
        + '; --mode merged writes jaxadapt names for any model'
    )


def _unsupported(fmt: str, model: str) -> None:
  raise ExportError(
      f"export --format {fmt} supports {' and '.join(FORMATS[fmt])}, not '{model}'; "
      f'--mode merged writes jaxadapt names for any model'
  )


def export_params(
    model: str,
    kwargs: Mapping[str, Any],
    flat: Mapping[str, np.ndarray],
    out: str,
    fmt: str,
    run: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
  """Writes `flat` (merged jaxadapt parameters of `model`) to directory `out` in `fmt`.

  `run` (optional): the run's `checkpoint` and eval `preprocess`, which timm's config.json
  records (architecture name, mean, std, input size).
  """
  _check_format(fmt)
  if model not in FORMATS[fmt]:
    _unsupported(fmt, model)
  if fmt == 'timm':
    tensors, config = export_timm.timm_export(model, kwargs, flat, run or {})
    _write(out, tensors, 'model.safetensors', config)
    return tensors
  if fmt == 'bit':
    tensors, _ = export_timm.bit_export(model, kwargs, flat)
    _write(out, tensors, 'bit.npz')
    return tensors
  directory = epath.Path(out)
  directory.mkdir(parents=True, exist_ok=True)
  if model == 'vit':
    config, names = _vit_config(kwargs, flat)
  else:
    config, names = _bert_config(kwargs, flat, directory)
  (directory / 'config.json').write_text(json.dumps(config, indent=1) + '\n')
  # The importer's rows need only these names (and the head's shape) to be written.
  head = (config['num_labels'], config['hidden_size'])
  names = core.Tensors({n: head if n == 'classifier.weight' else () for n in names}, None)
  plan = hf._vit(config, names) if model == 'vit' else hf._bert(config, names, directory)
  tensors = {
      r.source: np.ascontiguousarray(core.invert(flat[r.target], r.transform)) for r in plan.rows
  }
  from safetensors.numpy import save_file

  save_file(tensors, str(directory / 'model.safetensors'))
  return tensors


def _write(out: str, tensors: dict, name: str, config: dict | None = None) -> None:
  """The weights file (and config.json), each written whole under a temporary name."""
  directory = epath.Path(out)
  directory.mkdir(parents=True, exist_ok=True)
  tmp = directory / (name + '.tmp')
  if name.endswith('.npz'):
    with tmp.open('wb') as f:
      np.savez(f, **tensors)
  else:
    from safetensors.numpy import save

    tmp.write_bytes(save(tensors))
  tmp.replace(directory / name)
  if config is not None:
    (directory / 'config.json').write_text(json.dumps(config, indent=1) + '\n')


def _act(kwargs) -> str:
  return 'gelu' if kwargs.get('gelu', 'tanh') == 'exact' else 'gelu_pytorch_tanh'


def _vit_config(kwargs, flat) -> tuple[dict, list[str]]:
  if kwargs.get('pool', 'cls') != 'cls':
    raise ExportError("Hugging Face ViT reads the cls token: export needs pool='cls'")
  width = kwargs.get('width', 128)
  patch, _, channels, _ = flat['embedding/kernel'].shape
  grid = math.isqrt(flat['pos_embedding'].shape[1] - 1)
  config = {
      'architectures': ['ViTForImageClassification'],
      'model_type': 'vit',
      'hidden_size': width,
      'num_hidden_layers': kwargs.get('depth', 6),
      'num_attention_heads': kwargs.get('num_heads', 4),
      'intermediate_size': kwargs.get('mlp_dim') or 4 * width,
      'hidden_act': _act(kwargs),
      'layer_norm_eps': kwargs.get('norm_eps', 1e-6),
      'image_size': grid * patch,
      'patch_size': patch,
      'num_channels': channels,
      'qkv_bias': True,
      'num_labels': flat['head/kernel'].shape[-1],
  }
  return config, ['vit.embeddings.cls_token', 'classifier.weight']


def _bert_config(kwargs, flat, directory) -> tuple[dict, list[str]]:
  pool = kwargs.get('pool', 'mean')
  config = {
      'architectures': ['BertForSequenceClassification' if pool == 'pooler' else 'BertModel'],
      'model_type': 'bert',
      'vocab_size': kwargs.get('vocab_size', 30522),
      'max_position_embeddings': kwargs.get('max_len', 512),
      'type_vocab_size': kwargs.get('type_vocab_size', 2),
      'hidden_size': kwargs.get('width', 384),
      'num_hidden_layers': kwargs.get('depth', 6),
      'num_attention_heads': kwargs.get('num_heads', 12),
      'intermediate_size': kwargs.get('mlp_dim') or 4 * kwargs.get('width', 384),
      'hidden_act': _act({'gelu': kwargs.get('gelu', 'exact')}),
      'layer_norm_eps': kwargs.get('norm_eps', 1e-12),
      'pad_token_id': kwargs.get('pad_id', 0),
      'num_labels': flat['head/kernel'].shape[-1],
  }
  prefix = 'bert.' if pool == 'pooler' else ''
  names = [f'{prefix}embeddings.word_embeddings.weight', 'classifier.weight']
  if pool == 'pooler':
    names += ['bert.pooler.dense.weight', 'bert.pooler.dense.bias']
  else:
    (directory / '1_Pooling').mkdir(exist_ok=True)
    (directory / '1_Pooling' / 'config.json').write_text(
        json.dumps(
            {
                'word_embedding_dimension': config['hidden_size'],
                'pooling_mode_cls_token': pool == 'cls',
                'pooling_mode_mean_tokens': pool == 'mean',
            }
        )
        + '\n'
    )
  return config, names
