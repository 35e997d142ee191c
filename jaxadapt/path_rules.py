"""The one rule convention: `(regex, value)` lists over parameter paths.

Every per-parameter decision (trainable or frozen, learning-rate multiplier,
weight decay, LoRA rank, what not to load, sharding) is a list of rules;
the first rule whose regex fully matches a path decides, every path must be
covered, and a rule that matches no path at all is an error, because a
silent no-op rule is how "I froze the backbone" turns out false.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Sequence

from jaxadapt.errors import UserError


class RuleError(UserError):
  """A rule list that is malformed, leaves a parameter uncovered, or is dead."""


Rules = Sequence[tuple[str, Any]]


def match(
    rules: Rules, paths: Sequence[str], what: str, default: Any = None, require_cover: bool = True
) -> dict[str, Any]:
  """Maps each path to the value of the first rule that fully matches it.

  Args:
    rules: `(regex, value)` pairs, or bare regexes (value True).
    paths: the parameter paths to decide for.
    what: the decision's name, used in errors (e.g. 'optim.lr_rules').
    default: value for uncovered paths when `require_cover` is False.
    require_cover: if True, an uncovered path is an error.
  """
  compiled = []
  for i, rule in enumerate(rules):
    pattern, value = (rule, True) if isinstance(rule, str) else _pair(rule, what, i)
    try:
      compiled.append((pattern, re.compile(pattern), value))
    except re.error as e:
      raise RuleError(f"{what}: rule {i} has a bad regex '{pattern}': {e}") from None

  decided: dict[str, Any] = {}
  used = [False] * len(compiled)
  for path in paths:
    for i, (_, regex, value) in enumerate(compiled):
      if regex.fullmatch(path):
        used[i] = True
        if path not in decided:
          decided[path] = value
    if path not in decided:
      if require_cover:
        raise RuleError(
            f"{what}: no rule covers parameter '{path}'; add a catch-all "
            f"rule such as ('.*', <value>) at the end"
        )
      decided[path] = default
  for (pattern, _, _), hit in zip(compiled, used):
    if not hit:
      raise RuleError(
          f"{what}: rule '{pattern}' matches no parameter; "
          f"nearby paths: {', '.join(nearby(pattern, paths))}"
      )
  return decided


def nearby(pattern: str, paths: Sequence[str], n: int = 5) -> list[str]:
  """The paths most similar to a pattern, to show next to a dead rule."""
  literal = re.sub(r"[\\^$.*+?()\[\]{}|]", "", pattern)
  close = difflib.get_close_matches(literal, list(paths), n=n, cutoff=0.0)
  return close or list(paths)[:n]


def _pair(rule: Any, what: str, i: int) -> tuple[str, Any]:
  if not isinstance(rule, (tuple, list)) or len(rule) != 2 or not isinstance(rule[0], str):
    raise RuleError(f"{what}: rule {i} is {rule!r}; expected a (regex, value) pair")
  return rule[0], rule[1]
