"""Pretrained initialisation: merge a checkpoint's parameters into a fresh init.

Sources: a jaxadapt workdir or Orbax checkpoint directory, a `.npz` of flat
`a/b/c` keys or a `.safetensors` file in jaxadapt's names and layouts, or another
library's checkpoint through an importer (`hf:`, `timm:`, `big_vision:`, `bit:`, or
detected from the files: jaxadapt/importers/), which maps names and layouts itself. `name_map` rules `(regex, replacement)` rename checkpoint keys into our
paths (first match wins, `re.sub` syntax; unmatched keys keep their name).
`dont_load` regexes keep the fresh init (e.g. a new head). Anything else that
is missing or has the wrong shape is an error naming the parameter, except
ViT position embeddings, which are resized to the new patch grid.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from etils import epath

from jaxadapt import checkpoint, importers, param_tree, path_rules
from jaxadapt.errors import UserError


class PretrainedError(UserError):
  """The checkpoint does not fit the model; the message names the parameter."""


def read_flat(path: str, what: str = 'init.checkpoint') -> dict[str, np.ndarray]:
  """Reads any supported checkpoint into {'a/b/c': numpy array}; `what` names the config key."""
  p = epath.Path(path)
  if not p.exists():
    if what == 'init.adapters':
      raise PretrainedError(
          f'init.adapters not found: {path}; write it with `jaxadapt export --workdir '
          f'<lora run> --out {path} --mode adapters` or fix the path'
      )
    raise PretrainedError(
        f'{what} not found: {path}; train the upstream model first '
        f'(e.g. jaxadapt train --config configs/fashion_mnist/pretrain.py '
        f'--workdir {path}) or point checkpoint= at a .npz/.safetensors file'
    )
  if p.suffix in ('.npz', '.safetensors'):
    try:
      return _read_tensor_file(p)
    except Exception as e:  # pylint: disable=broad-except (numpy/zipfile/safetensors differ)
      raise PretrainedError(
          f'{what}={path} is not a readable {p.suffix} file of named arrays '
          f'({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}); '
          f'write it with `jaxadapt export` or numpy.savez / safetensors.numpy.save_file'
      ) from None
  if not p.is_dir():
    raise PretrainedError(
        f'{what}={path} is not a checkpoint: use a jaxadapt workdir, an Orbax checkpoint '
        f'directory, a .npz or a .safetensors file'
    )
  params = checkpoint.restore_params(p)
  return {k: np.asarray(v) for k, v in param_tree.flatten(params).items()}


def _read_tensor_file(p: epath.Path) -> dict[str, np.ndarray]:
  if p.suffix == '.npz':
    with p.open('rb') as f, np.load(f, allow_pickle=False) as z:
      return {k: np.asarray(z[k]) for k in z.files}
  from safetensors.numpy import load

  return dict(load(p.read_bytes()))


def rename(flat: Mapping[str, np.ndarray], name_map: Sequence[tuple[str, str]]) -> dict:
  """Applies `(regex, replacement)` renames; the first rule that matches a key wins."""
  compiled = [(re.compile(pattern), repl) for pattern, repl in name_map]
  out = {}
  for key, value in flat.items():
    for regex, repl in compiled:
      if regex.fullmatch(key):
        key = regex.sub(repl, key)
        break
    out[key] = value
  return out


def load_into(
    fresh: Any, path: str, dont_load: Sequence[str] = (), name_map: Sequence[tuple[str, str]] = ()
) -> tuple[Any, dict[str, list[str]]]:
  """Returns (params, report): `fresh` with every loadable leaf replaced from `path`.

  The report lists 'loaded', 'kept' (dont_load) and 'unused' checkpoint keys, and
  'format' ('jaxadapt' or the importer's).
  """
  spec = importers.parse(path)
  plan = None
  if spec is None:
    source = rename(read_flat(path), name_map)
  else:
    if name_map:
      raise PretrainedError(
          f'init.name_map renames jaxadapt-layout files only; {path} is read by the '
          f"'{spec.format}' importer, which maps every name itself: remove init.name_map"
      )
    plan, source = importers.load(path)
  target = param_tree.flatten(fresh)
  skip = (
      path_rules.match(
          [(r, True) for r in dont_load],
          list(target),
          'init.dont_load',
          default=False,
          require_cover=False,
      )
      if dont_load
      else {}
  )
  out = {}
  report = {'loaded': [], 'kept': [], 'unused': [], 'format': spec.format if spec else 'jaxadapt'}
  for name, leaf in target.items():
    if skip.get(name):
      out[name] = leaf
      report['kept'].append(name)
      continue
    if name not in source:
      close = path_rules.nearby(name, list(source), n=3)
      if plan is not None:
        raise PretrainedError(
            f"parameter '{name}' is not in {path}, a {plan.model} checkpoint "
            f'({_kwargs_text(plan.kwargs)}): build that model by passing the checkpoint as '
            f"the config argument (e.g. file.py:checkpoint={path}), or add '{name}' to "
            f'init.dont_load'
        )
      raise PretrainedError(
          f"parameter '{name}' is not in checkpoint {path} "
          f"(closest keys: {', '.join(close)}); add it to init.dont_load "
          f'or map it with init.name_map'
      )
    value = source[name]
    if value.shape != leaf.shape:
      if name.endswith('pos_embedding') and value.ndim == 3 and leaf.ndim == 3:
        value = resize_posemb(value, leaf.shape)
      else:
        raise PretrainedError(
            f"parameter '{name}' has shape {tuple(value.shape)} in the "
            f'checkpoint but {tuple(leaf.shape)} in the model; '
            + (
                layout_hint(value.shape, leaf.shape)
                or 'add it to init.dont_load to re-initialise it'
            )
        )
    out[name] = jax.device_put(value.astype(leaf.dtype), leaf.sharding)
    report['loaded'].append(name)
  report['unused'] = sorted(set(source) - set(report['loaded']))
  return param_tree.unflatten(out), report


def layout_hint(got: tuple[int, ...], want: tuple[int, ...]) -> str:
  """Which transform a tensor in another library's layout needs, from its shape; '' if none."""
  got, want = tuple(got), tuple(want)
  if len(got) == 2 and got == want[::-1]:
    return (
        'it is a torch Linear weight (out, in) that needs a transpose to (in, out), and so '
        'does every Linear weight of this file, square ones included: load the checkpoint '
        'through its importer (hf:<dir> or timm:<file>), which transposes them all'
    )
  if len(got) == 4 and got == (want[3], want[2], want[0], want[1]):
    return (
        'it is a torch Conv weight (out, in, h, w) that needs OIHW -> HWIO: load the '
        'checkpoint through its importer (timm:<file> or hf:<dir>)'
    )
  if len(got) == 3 and len(want) == 2 and got[0] == want[0] and got[1] * got[2] == want[1]:
    return (
        'it is a flax attention kernel [D, heads, head_dim] that needs a reshape: load it '
        'with big_vision:<file.npz>'
    )
  return ''


def _kwargs_text(kwargs: Mapping[str, Any]) -> str:
  return ', '.join(f'{k}={v}' for k, v in kwargs.items())


def resize_posemb(posemb: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """Resizes (1, [cls +] gh*gw, D) position embeddings to a new square grid."""
  _, n_old, dim = posemb.shape
  _, n_new, _ = shape
  extra = 0
  for extra in (0, 1):  # 1 when a cls token's embedding comes first
    g_old, g_new = np.sqrt(n_old - extra), np.sqrt(n_new - extra)
    if g_old.is_integer() and g_new.is_integer():
      break
  else:
    raise PretrainedError(
        f'pos_embedding of {n_old} tokens cannot be resized to {n_new}: ' f'grids are not square'
    )
  g_old, g_new = int(g_old), int(g_new)
  grid = posemb[0, extra:].reshape(g_old, g_old, dim)
  grid = np.asarray(jax.image.resize(grid, (g_new, g_new, dim), 'bilinear'))
  return np.concatenate([posemb[0, :extra], grid.reshape(-1, dim)])[None].astype(posemb.dtype)


def overlay(params: Any, path: str) -> Any:
  """Replaces leaves of `params` by every tensor in `path` (an adapter-only export).

  Unlike `load_into`, every tensor in the file must land somewhere: an adapter
  that matches no parameter means the wrong base model or LoRA rules.
  """
  source = read_flat(path, 'init.adapters')
  target = param_tree.flatten(params)
  for name, value in source.items():
    if name not in target:
      raise PretrainedError(
          f"adapter tensor '{name}' in {path} matches no parameter "
          f"(closest: {', '.join(path_rules.nearby(name, list(target), n=3))}); "
          f'check adapt.lora.rules and the base model'
      )
    if value.shape != target[name].shape:
      raise PretrainedError(
          f"adapter tensor '{name}' has shape {tuple(value.shape)} in {path} "
          f'but {tuple(target[name].shape)} in the model'
      )
    target[name] = jax.device_put(value.astype(target[name].dtype), target[name].sharding)
  return param_tree.unflatten(target)
