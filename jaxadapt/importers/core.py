"""What every importer shares: reading tensors, the transform vocabulary, planning and
checking an import, and the plan's table.

An importer turns a source's names and shapes into a `Plan`: the jaxadapt model (name
and keyword arguments, read from what the source records), one `Row` per jaxadapt
parameter (source tensors, transform), and the source tensors it leaves out on purpose
(with the reason). `check` refuses a plan that leaves any other source tensor unused or
whose transformed shapes differ from the model's; `materialise` then applies the
transforms, each one vectorised numpy on a whole tensor.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Callable, Mapping

import numpy as np
from etils import epath

from jaxadapt.errors import UserError


class CheckpointError(UserError):
  """A checkpoint that cannot be imported exactly; the message names the tensor and why."""


class ExportError(UserError):
  """A model that cannot be written in the asked format; the message says why."""


# ------------------------------------------------------------------------ reading


class Tensors:
  """Names, shapes and lazy reads of a checkpoint's tensors, whatever the file format."""

  def __init__(self, shapes: dict[str, tuple[int, ...]], read: Callable[[str], np.ndarray]):
    self.shapes = shapes
    self._read = read

  def __getitem__(self, name: str) -> np.ndarray:
    return np.asarray(self._read(name))

  def renamed(self, rename: Callable[[str], str]) -> Tensors:
    """The same tensors under new names (e.g. without a `params/` prefix)."""
    back = {rename(k): k for k in self.shapes}
    return Tensors({rename(k): v for k, v in self.shapes.items()}, lambda n: self._read(back[n]))


def read_safetensors(path: epath.Path) -> Tensors:
  """One `.safetensors` file, or a sharded checkpoint's `*.safetensors.index.json`.

  bf16 and fp16 tensors come back as ml_dtypes / numpy arrays; the caller casts.
  """
  from safetensors import safe_open

  if path.name.endswith('.index.json'):
    weight_map = json.loads(path.read_text())['weight_map']
    files = {name: path.parent / shard for name, shard in weight_map.items()}
  else:
    with safe_open(str(path), 'numpy') as f:
      files = {name: path for name in f.keys()}
  shapes = {}
  for shard in sorted(set(files.values())):
    if not shard.exists():
      raise CheckpointError(f'shard {shard} named by {path} does not exist')
    with safe_open(str(shard), 'numpy') as f:
      shapes.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})

  def read(name: str) -> np.ndarray:
    with safe_open(str(files[name]), 'numpy') as f:
      return f.get_tensor(name)

  return Tensors(shapes, read)


def read_npz(path: epath.Path) -> Tensors:
  with path.open('rb') as f, np.load(f) as z:
    arrays = {k: z[k] for k in z.files}
  return Tensors({k: v.shape for k, v in arrays.items()}, arrays.__getitem__)


def npz_keys(path: epath.Path) -> list[str]:
  with path.open('rb') as f, np.load(f) as z:
    return list(z.files)


def read_tensors(path: epath.Path) -> Tensors:
  if path.suffix == '.npz':
    return read_npz(path)
  if path.name.endswith(('.safetensors', '.safetensors.index.json')):
    return read_safetensors(path)
  raise CheckpointError(
      f'cannot read {path}: importers read .safetensors (or a sharded '
      f'*.safetensors.index.json) and .npz; convert a torch .pth/.bin with '
      f'safetensors.torch.save_file(torch.load(path), "model.safetensors")'
  )


# ---------------------------------------------------------------- transforms
# A transform is a '|'-separated list of steps applied left to right; each step is a
# whole-tensor numpy operation with a matching rule for shapes (used to check a plan
# before any tensor is read).


def _pad_cls(x: np.ndarray) -> np.ndarray:
  return np.concatenate([np.zeros_like(x[:, :1]), x], axis=1)


_STEPS: dict[str, tuple[Callable, Callable]] = {
    # name: (array fn(x, arg), shape fn(shape, arg))
    'copy': (lambda x, a: x, lambda s, a: s),
    # torch Linear weight (out, in) -> flax Dense kernel (in, out)
    'transpose': (lambda x, a: x.T, lambda s, a: s[::-1]),
    # torch Conv weight (out, in, h, w) -> flax Conv kernel (h, w, in, out)
    'oihw>hwio': (
        lambda x, a: x.transpose(2, 3, 1, 0),
        lambda s, a: (s[2], s[3], s[1], s[0]),
    ),
    # part a of a fused [q; k; v] along the first axis
    'qkv': (
        lambda x, a: x.reshape(3, x.shape[0] // 3, *x.shape[1:])[a],
        lambda s, a: (s[0] // 3, *s[1:]),
    ),
    # block a of scan-stacked (depth, ...) parameters
    'unstack': (lambda x, a: x[a], lambda s, a: s[1:]),
    # flax attention kernels [D, heads, head_dim] (bias [heads, head_dim]) -> 2D (1D)
    'heads_in': (
        lambda x, a: x.reshape(x.shape[0], -1) if x.ndim == 3 else x.reshape(-1),
        lambda s, a: (s[0], s[1] * s[2]) if len(s) == 3 else (s[0] * s[1],),
    ),
    # flax attention output kernel [heads, head_dim, D] -> [heads * head_dim, D]
    'heads_out': (lambda x, a: x.reshape(-1, x.shape[-1]), lambda s, a: (s[0] * s[1], s[2])),
    # a 1x1 conv head (1, 1, C, K) -> Dense kernel (C, K)
    'squeeze': (lambda x, a: x.reshape(x.shape[-2:]), lambda s, a: s[-2:]),
    # position embedding without a cls row (big_vision) -> with a zero cls row
    'cls_row': (lambda x, a: _pad_cls(x), lambda s, a: (s[0], s[1] + 1, s[2])),
}


def _steps(transform: str) -> list[tuple[str, int | None]]:
  out = []
  for step in transform.split('|'):
    m = re.fullmatch(r'([\w>]+)(?:\((\d+)\))?', step)
    if not m or m.group(1) not in _STEPS:
      raise AssertionError(f'unknown transform step {step!r}')  # a bug in an importer
    out.append((m.group(1), None if m.group(2) is None else int(m.group(2))))
  return out


def apply_transform(x: np.ndarray, transform: str) -> np.ndarray:
  for name, arg in _steps(transform):
    x = _STEPS[name][0](x, arg)
  return x


def transform_shape(shape: tuple[int, ...], transform: str) -> tuple[int, ...]:
  for name, arg in _steps(transform):
    shape = tuple(_STEPS[name][1](tuple(shape), arg))
  return shape


_INVERSE = {'copy': 'copy', 'transpose': 'transpose'}


def invert(x: np.ndarray, transform: str) -> np.ndarray:
  """The source tensor from a jaxadapt one, for single-source transforms (export)."""
  for name, _ in reversed(_steps(transform)):
    if name == 'oihw>hwio':
      x = x.transpose(3, 2, 0, 1)
    elif name == 'squeeze':  # a Dense kernel (C, K) back to a 1x1 conv (1, 1, C, K)
      x = x.reshape(1, 1, *x.shape)
    elif name in _INVERSE:
      x = _STEPS[name][0](x, None)
    else:
      raise AssertionError(f'no inverse for {name}')  # exporters only use invertible rows
  return x


def invert_rows(rows: list[Row], flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """{source name: tensor} from jaxadapt parameters by inverting a plan's rows (export).

  Rows that split a fused [q; k; v] source ('qkv(k)|...') are inverted part by part and
  concatenated back in order; every other row inverts on its own.
  """
  out, fused = {}, {}
  for r in rows:
    first, _, rest = r.transform.partition('|')
    ((name, part),) = _steps(first)
    if name == 'qkv':
      fused.setdefault(r.source, {})[part] = invert(flat[r.target], rest or 'copy')
    else:
      out[r.source] = invert(flat[r.target], r.transform)
  for source, parts in fused.items():
    if sorted(parts) != [0, 1, 2]:
      raise AssertionError(f'{source}: fused rows for parts {sorted(parts)}')  # importer bug
    out[source] = np.concatenate([parts[0], parts[1], parts[2]], axis=0)
  return {k: np.ascontiguousarray(v) for k, v in out.items()}


# ---------------------------------------------------------------------- plans


@dataclasses.dataclass(frozen=True)
class Row:
  """One jaxadapt parameter: made from `source` by `transform`."""

  target: str
  source: str
  transform: str = 'copy'


@dataclasses.dataclass
class Plan:
  """How one checkpoint becomes jaxadapt parameters, before any tensor is read."""

  format: str  # 'hf' | 'timm' | 'big_vision' | 'bit'
  family: str  # e.g. 'ViTForImageClassification', 'timm resnet', 'BiT ResNetV2'
  model: str  # jaxadapt model name
  kwargs: dict[str, Any]
  num_classes: int | None  # None: the checkpoint has no classification head
  input_shape: tuple[int, ...]  # one example, for building the model
  rows: list[Row]
  skipped: dict[str, str]  # source tensor -> why it is left out on purpose
  tensors: Tensors
  path: str = ''
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. tokenizer, image size
  missing: list[str] = dataclasses.field(default_factory=list)  # model params no row fills

  def model_config(self) -> dict[str, Any]:
    return {'name': self.model, 'kwargs': dict(self.kwargs)}


def check(plan: Plan, model_shapes: Mapping[str, tuple[int, ...]]) -> Plan:
  """Refuses unused source tensors, missing sources and shape mismatches; fills `missing`."""
  source = plan.tensors.shapes
  used = {r.source for r in plan.rows} | set(plan.skipped)
  unused = sorted(set(source) - used)
  if unused:
    shown = ', '.join(f'{n} {list(source[n])}' for n in unused[:6])
    more = f' and {len(unused) - 6} more' if len(unused) > 6 else ''
    raise CheckpointError(
        f"{len(unused)} tensors of {plan.path} have no place in jaxadapt's {plan.model} "
        f'({plan.family}): {shown}{more}; this variant of the architecture is not supported '
        f'(loading without them would give wrong outputs)'
    )
  for row in plan.rows:
    if row.source not in source:
      close = ', '.join(_close(row.source, source))
      raise CheckpointError(
          f"{plan.path} has no tensor '{row.source}' (for {row.target}); closest: {close}"
      )
    if row.target not in model_shapes:
      raise AssertionError(f'importer row for unknown parameter {row.target}')  # our bug
    got = transform_shape(source[row.source], row.transform)
    want = tuple(model_shapes[row.target])
    if got != want:
      raise CheckpointError(
          f"'{row.source}' {list(source[row.source])} becomes {list(got)} by "
          f"'{row.transform}' but jaxadapt's {row.target} is {list(want)}"
      )
  plan.missing = sorted(set(model_shapes) - {r.target for r in plan.rows})
  return plan


def materialise(plan: Plan) -> dict[str, np.ndarray]:
  """{jaxadapt path: float32 array} for every row; each source tensor is read once."""
  cache: dict[str, np.ndarray] = {}
  out = {}
  for row in plan.rows:
    if row.source not in cache:
      cache[row.source] = plan.tensors[row.source].astype(np.float32)
    out[row.target] = np.ascontiguousarray(apply_transform(cache[row.source], row.transform))
  return out


def table(plan: Plan) -> str:
  """The plan as text: source name and shape, jaxadapt path and shape, transform."""
  shapes = plan.tensors.shapes
  fmt = lambda s: 'x'.join(map(str, s)) or 'scalar'
  rows = [('source', 'shape', 'jaxadapt', 'shape', 'transform')]
  for r in plan.rows:
    rows.append(
        (
            r.source,
            fmt(shapes[r.source]),
            r.target,
            fmt(transform_shape(shapes[r.source], r.transform)),
            r.transform,
        )
    )
  widths = [max(len(r[i]) for r in rows) for i in range(5)]
  line = lambda r: '  '.join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
  lines = [line(rows[0]), line(tuple('-' * w for w in widths)), *map(line, rows[1:])]
  lines.append('')
  lines.append(f'unused (on purpose): {len(plan.skipped)}')
  lines += [f'  {n} {fmt(shapes[n])}: {why}' for n, why in sorted(plan.skipped.items())]
  lines.append(f'missing (fresh init): {len(plan.missing)}')
  lines += [f'  {n}' for n in plan.missing]
  return '\n'.join(lines)


# -------------------------------------------------------------------- helpers


def _close(name: str, names) -> list[str]:
  import difflib

  return difflib.get_close_matches(name, list(names), n=3, cutoff=0.0)


def count(names, pattern: str) -> int:
  """Number of distinct integers captured by `pattern`'s first group (e.g. block indices)."""
  regex = re.compile(pattern)
  found = {int(m.group(1)) for n in names if (m := regex.fullmatch(n))}
  if found and found != set(range(min(found), min(found) + len(found))):
    raise CheckpointError(f'block indices are not contiguous: {sorted(found)}')
  return len(found)


def option(options: Mapping[str, str], key: str, default, kind=int):
  if key not in options:
    return default
  try:
    return kind(options[key])
  except ValueError:
    raise CheckpointError(f'checkpoint option {key}={options[key]!r} is not a {kind.__name__}')
