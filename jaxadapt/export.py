"""Export a trained workdir's parameters as flat `.npz` / `.safetensors` files.

Modes: `full` (every leaf as trained, adapters included), `merged` (LoRA
folded into the base kernels: a plain model that needs no jaxadapt LoRA code),
`adapters` (only the trainable leaves: LoRA adapters, the head, biases, ...;
load them on top of the base checkpoint with `init.adapters`).
"""

from __future__ import annotations

import json

import numpy as np
from etils import epath

from jaxadapt import checkpoint, lora, param_tree
from jaxadapt.errors import UserError


class ExportError(UserError):
  """An export request that cannot be met."""


MODES = ('full', 'merged', 'adapters')


def export(workdir: str, out: str, mode: str = 'merged') -> dict[str, np.ndarray]:
  """Writes the chosen leaves of the workdir's latest checkpoint to `out`; returns them."""
  if mode not in MODES:
    raise ExportError(f"unknown export mode '{mode}'; choose one of: {', '.join(MODES)}")
  wd = epath.Path(workdir)
  config_path = wd / 'config.json'
  if not config_path.exists():
    raise ExportError(f'{workdir} has no config.json: is it a jaxadapt workdir?')
  config = json.loads(config_path.read_text())
  params = checkpoint.restore_params(wd)
  if mode == 'merged':
    params = lora.merge(params, config.get('adapt', {}).get('lora', {}).get('alpha', 1.0))
  flat = {k: np.asarray(v) for k, v in param_tree.flatten(params).items()}
  if mode == 'adapters':
    trainable = _trainable_paths(wd)
    flat = {k: v for k, v in flat.items() if k in trainable}
  save_flat(flat, out)
  return flat


def save_flat(flat: dict[str, np.ndarray], out: str) -> None:
  path = epath.Path(out)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / (path.name + '.tmp')
  if path.suffix == '.npz':
    with tmp.open('wb') as f:
      np.savez(f, **flat)
  elif path.suffix == '.safetensors':
    from safetensors.numpy import save

    tmp.write_bytes(save({k: np.ascontiguousarray(v) for k, v in flat.items()}))
  else:
    raise ExportError(f"export file must end in .npz or .safetensors, got '{out}'")
  tmp.replace(path)


def _trainable_paths(wd: epath.Path) -> set[str]:
  """The trainable paths the trainer recorded in the workdir's params.json."""
  table = json.loads((wd / 'params.json').read_text())
  return {path for path, row in table.items() if row['trainable']}
