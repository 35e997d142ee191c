"""The rule convention: first match wins, full cover, dead rules are errors."""

import pytest

from jaxadapt import path_rules, param_tree

PATHS = [
    'stem/conv/kernel',
    'stage1/block1/conv1/kernel',
    'stage1/block1/norm1/scale',
    'stage2/block1/conv1/kernel',
    'head/kernel',
    'head/bias',
]


def test_first_match_wins():
  got = path_rules.match(
      [('head/.*', 'train'), ('stage2/.*', 'train'), ('.*', 'frozen')], PATHS, 'adapt.trainable'
  )
  assert got['head/bias'] == 'train' and got['stage2/block1/conv1/kernel'] == 'train'
  assert got['stem/conv/kernel'] == 'frozen'


def test_uncovered_parameter_is_an_error():
  with pytest.raises(path_rules.RuleError, match=r"no rule covers parameter 'stem/conv/kernel'"):
    path_rules.match([('head/.*', 'train'), ('stage.*', 'frozen')], PATHS, 'adapt.trainable')


def test_rule_matching_nothing_lists_nearby_paths():
  with pytest.raises(
      path_rules.RuleError, match=r"rule 'haed/.*' matches no parameter; nearby paths: .*head/"
  ):
    path_rules.match([('haed/.*', 'train'), ('.*', 'frozen')], PATHS, 'adapt.trainable')


def test_bad_regex_and_malformed_rule():
  with pytest.raises(path_rules.RuleError, match='bad regex'):
    path_rules.match([('head/(', 1.0), ('.*', 1.0)], PATHS, 'optim.lr_rules')
  with pytest.raises(path_rules.RuleError, match='expected a \\(regex, value\\) pair'):
    path_rules.match([('head/.*',)], PATHS, 'optim.lr_rules')


def test_fullmatch_not_search():
  got = path_rules.match([('conv1/kernel', 1), ('.*', 0)], ['conv1/kernel', 'a/conv1/kernel'], 'x')
  assert got == {'conv1/kernel': 1, 'a/conv1/kernel': 0}


def test_fullmatch_not_prefix():
  """Catches re.match (prefix: 'head' would take head/kernel) and re.search (any substring)."""
  paths = ['block1/kernel', 'block10/kernel', 'head', 'head/kernel']
  got = path_rules.match([('block1/.*', 'a'), ('head', 'b'), ('.*', 'c')], paths, 'x')
  assert got == {'block1/kernel': 'a', 'block10/kernel': 'c', 'head': 'b', 'head/kernel': 'c'}


def test_flatten_roundtrip():
  tree = {'a': {'b': 1, 'c': {'d': 2}}}
  assert param_tree.flatten(tree) == {'a/b': 1, 'a/c/d': 2}
  assert param_tree.unflatten(param_tree.flatten(tree)) == tree
