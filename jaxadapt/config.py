"""Experiment configs: load a config file, apply shell overrides, lock, save.

A config file is a Python module with `get_config(arg: str | None) -> ConfigDict`.
`path/to/file.py:model=resnet,k=2` passes `"model=resnet,k=2"` as `arg`; the
file turns it into typed values with `parse_arg`. Shell overrides look like
`--config.optim.lr=0.05` and may only touch keys that already exist: the
config is locked, and a typo fails with the nearest valid keys.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import importlib.util
import json
from typing import Any, Sequence

import ml_collections
from etils import epath
from jaxadapt.errors import UserError


class ConfigError(UserError):
  """A bad config file, argument or override; the message is one line."""


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses `k=v,k2=v2` against typed defaults (as big_vision's parse_arg).

  A bare `k` sets a boolean default to True. Unknown keys are an error that
  suggests the nearest valid one.
  """
  result = ml_collections.ConfigDict(defaults)
  if not arg:
    return result
  for item in arg.split(','):
    key, sep, raw = item.partition('=')
    key = key.strip()
    if key not in defaults:
      raise ConfigError(
          f"unknown config argument '{key}'; valid arguments: "
          f"{', '.join(sorted(defaults)) or '(none)'}{_suggest(key, defaults)}"
      )
    default = defaults[key]
    if not sep:
      if not isinstance(default, bool):
        raise ConfigError(f"config argument '{key}' needs a value, e.g. {key}={default!r}")
      result[key] = True
      continue
    result[key] = _coerce(raw.strip(), default, f"config argument '{key}'")
  return result


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """Loads `file.py[:arg]`, applies `--config.a.b=v` overrides, returns it locked."""
  path, _, arg = spec.partition(':')
  file = epath.Path(path)
  if not file.exists():
    raise ConfigError(f'config file not found: {path}')
  module_spec = importlib.util.spec_from_file_location('_jaxadapt_config', str(file))
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # A broken config file is the user's bug: say where.
    raise ConfigError(f'could not import config file {path}: {type(e).__name__}: {e}') from e
  if not hasattr(module, 'get_config'):
    raise ConfigError(f'config file {path} defines no get_config(arg) function')
  config = module.get_config(arg or None)
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f'get_config in {path} must return an ml_collections.ConfigDict')
  config.lock()
  for override in overrides:
    apply_override(config, override)
  return config


def apply_override(config: ml_collections.ConfigDict, override: str) -> None:
  """Applies one `--config.a.b=value` (or `a.b=value`) override in place."""
  text = override[2:] if override.startswith('--') else override
  if not text.startswith('config.'):
    raise ConfigError(f"bad override '{override}': expected --config.<key>=<value>")
  dotted, sep, raw = text[len('config.') :].partition('=')
  if not sep:
    raise ConfigError(f"override '{override}' has no value: use --config.{dotted}=<value>")
  parent = config
  keys = dotted.split('.')
  for depth, key in enumerate(keys):
    if not isinstance(parent, ml_collections.ConfigDict) or key not in parent:
      where = '.'.join(keys[:depth]) or 'config'
      valid = sorted(parent.keys()) if isinstance(parent, ml_collections.ConfigDict) else []
      raise ConfigError(
          f"unknown config key '{dotted}': '{key}' is not in {where}"
          f"{_suggest(key, valid, prefix='.'.join(keys[:depth]))}"
      )
    if depth < len(keys) - 1:
      parent = parent[key]
  leaf = keys[-1]
  current = parent[leaf]
  value = _coerce(raw, current, f'--config.{dotted}')
  try:
    with parent.unlocked() if current is None else contextlib.nullcontext():
      parent[leaf] = value
  except (TypeError, ValueError) as e:
    raise ConfigError(f'--config.{dotted}={raw}: {e}') from e


def save_config(config: ml_collections.ConfigDict, path: epath.PathLike) -> None:
  """Writes the resolved config as JSON (atomically: tmp file, then rename)."""
  path = epath.Path(path)
  tmp = path.parent / (path.name + '.tmp')
  tmp.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str) + '\n')
  tmp.replace(path)


def differing_keys(a: dict, b: dict, ignore: Sequence[str] = ()) -> list[str]:
  """Dotted keys ('optim.lr') whose values differ between two config dicts, sorted."""
  flat_a, flat_b = _leaves(a), _leaves(b)
  return sorted(
      k for k in set(flat_a) | set(flat_b) if k not in ignore and flat_a.get(k) != flat_b.get(k)
  )


def _leaves(tree: Any, prefix: str = '') -> dict[str, str]:
  """Flat {'a.b': json} view of a nested dict, so any difference names its key."""
  if not isinstance(tree, dict):
    return {prefix: json.dumps(tree, default=str)}
  out = {}
  for k, v in tree.items():
    out.update(_leaves(v, f'{prefix}.{k}' if prefix else k))
  return out


def _coerce(raw: str, like: Any, what: str) -> Any:
  """Turns shell text into a value of the same type as `like`."""
  if isinstance(like, bool):
    low = raw.lower()
    if low in ('true', '1', 'yes'):
      return True
    if low in ('false', '0', 'no'):
      return False
    raise ConfigError(f"{what} expects true/false, got '{raw}'")
  if isinstance(like, str):
    return raw
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    if like is None:
      return raw
    raise ConfigError(f"{what} expects a {type(like).__name__}, got '{raw}'") from None
  if isinstance(like, float) and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  if isinstance(like, (tuple, list)) and isinstance(value, (tuple, list)):
    return type(like)(value)
  if like is not None and not isinstance(value, type(like)):
    raise ConfigError(f"{what} expects a {type(like).__name__}, got '{raw}'")
  return value


def _suggest(key: str, valid, prefix: str = '') -> str:
  close = difflib.get_close_matches(key, list(valid), n=3, cutoff=0.5)
  if not close:
    return ''
  names = ', '.join(f"{prefix + '.' if prefix else ''}{c}" for c in close)
  return f' (did you mean {names}?)'
