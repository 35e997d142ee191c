"""Parameter trees as flat `{'a/b/c': leaf}` dicts, and the per-parameter summary table."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from flax import traverse_util

# Top-level subtrees that hold adapters (lora.py, dora.py, ia3.py), never base weights.
ADAPTER_TREES = ('lora', 'dora', 'ia3')


def flatten(tree: Mapping) -> dict[str, Any]:
  """Nested param dict -> {'a/b/c': leaf}."""
  return traverse_util.flatten_dict(tree, sep='/')


def unflatten(flat: Mapping[str, Any]) -> dict:
  """{'a/b/c': leaf} -> nested dict."""
  return traverse_util.unflatten_dict(dict(flat), sep='/')


def param_count(leaf: Any) -> int:
  return int(np.prod(leaf.shape)) if hasattr(leaf, 'shape') else 1


def summary_table(
    flat_params: Mapping[str, Any],
    columns: Mapping[str, Mapping[str, Any]],
    trainable: Mapping[str, bool],
) -> str:
  """A fixed-width table: path, shape, one column per decision, trainable count."""
  header = ['path', 'shape', *columns, 'trainable']
  rows = []
  total = trained = 0
  for path, leaf in flat_params.items():
    n = param_count(leaf)
    total += n
    trained += n if trainable[path] else 0
    rows.append(
        [
            path,
            'x'.join(map(str, leaf.shape)) or 'scalar',
            *(_fmt(col[path]) for col in columns.values()),
            f'{n if trainable[path] else 0:,}',
        ]
    )
  rows.append(
      [
          'TOTAL',
          f'{total:,} params',
          *([''] * len(columns)),
          f'{trained:,} ({100.0 * trained / max(total, 1):.2f}%)',
      ]
  )
  widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
  line = lambda r: '  '.join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip()
  return '\n'.join([line(header), line(['-' * w for w in widths]), *map(line, rows)])


def _fmt(value: Any) -> str:
  return f'{value:g}' if isinstance(value, float) else str(value)
