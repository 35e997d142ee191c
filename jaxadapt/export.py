"""Export a trained workdir's parameters as flat `.npz` / `.safetensors` files.

Modes: `full` (every leaf as trained, adapters included), `merged` (LoRA, DoRA and IA3
folded into the base kernels: a plain model that needs no jaxadapt adapter code; refused
for prompt tuning),
`adapters` (only the trainable leaves: LoRA adapters, the head, biases, ...;
load them on top of the base checkpoint with `init.adapters`).
"""

from __future__ import annotations

import json

import numpy as np
from etils import epath

from jaxadapt import adapters, checkpoint, param_tree, quant
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
  trainable = _trainable_paths(wd) if mode == 'adapters' else None
  flat = restore_flat(wd, config, 'export --mode merged' if mode == 'merged' else None)
  if mode == 'adapters':
    flat = {k: v for k, v in flat.items() if k in trainable}
  save_flat(flat, out)
  return flat


def restore_flat(wd: epath.Path, config: dict, merge: str | None) -> dict[str, np.ndarray]:
  """The workdir's latest parameters as float32 host arrays (a QLoRA run's frozen kernels
  dequantised); with `merge` (the command, for the error) LoRA, DoRA and IA3 are folded in
  and prompts refused."""
  params = checkpoint.restore_params(wd)
  storage = config.get('adapt', {}).get('frozen_dtype', 'float32')
  if storage in quant.QTYPES:  # QLoRA run: frozen kernels back to float32 first
    shapes = {p: row['shape'] for p, row in json.loads((wd / 'params.json').read_text()).items()}
    params = param_tree.unflatten(
        quant.dequantize_restored(param_tree.flatten(params), shapes, storage)
    )
  if merge:
    adapters.check_mergeable(params, merge)
    params = adapters.merge_all(params, config.get('adapt', {}))
  return {k: np.asarray(v) for k, v in param_tree.flatten(params).items()}


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
  """The trainable paths the trainer recorded in params.json; an error if nothing was frozen.

  Adapters are what a parameter-efficient run (LoRA, BitFit, a probe) adds to its frozen
  base; a run that trained every parameter has none, and its "adapters" would be the
  whole model, which `--mode full` writes under its true name.
  """
  path = wd / 'params.json'
  if not path.exists():
    raise ExportError(f'{wd} has no params.json: is it a finished jaxadapt run?')
  table = json.loads(path.read_text())
  trainable = {p for p, row in table.items() if row['trainable']}
  if len(trainable) == len(table):
    raise ExportError(
        f'{wd} trained every parameter (no LoRA or other frozen base), so it has no adapters; '
        f'use --mode full (or merged) to export the whole model'
    )
  return trainable
