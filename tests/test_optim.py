"""Optimizer construction: one way to freeze, multipliers that are numbers and positive."""

import ml_collections
import pytest

from jaxadapt import defaults, optim, path_rules

PARAMS = {'backbone/kernel': 0, 'head/kernel': 0, 'head/bias': 0}


def _optim(**kw) -> ml_collections.ConfigDict:
  cfg = defaults.base_config().optim
  cfg.unlock()
  cfg.update(kw)
  return cfg


def test_groups_from_rules():
  groups = optim.param_groups(
      _optim(lr_rules=(('backbone/.*', 0.1), ('.*', 1.0))),
      PARAMS,
      {'backbone/kernel': True, 'head/kernel': True, 'head/bias': False},
  )
  assert groups['backbone/kernel'] == {'label': 'lr0.1_wd1', 'lr_mult': 0.1, 'wd_mult': 1.0}
  assert groups['head/kernel']['lr_mult'] == 1.0
  assert groups['head/bias'] == {'label': 'frozen', 'lr_mult': 0.0, 'wd_mult': 0.0}


@pytest.mark.parametrize('mult', [0.0, -5.0])
def test_zero_or_negative_lr_multiplier_points_to_adapt_trainable(mult):
  with pytest.raises(
      path_rules.RuleError, match=r"multiplier .* for 'head/kernel'.*adapt\.trainable"
  ):
    optim.param_groups(
        _optim(lr_rules=(('head/kernel', mult), ('.*', 1.0))), PARAMS, dict.fromkeys(PARAMS, True)
    )


def test_non_numeric_multiplier_names_the_key():
  with pytest.raises(path_rules.RuleError, match=r"optim\.lr_rules: value 'fast'.*not a number"):
    optim.param_groups(_optim(lr_rules=(('.*', 'fast'),)), PARAMS, dict.fromkeys(PARAMS, True))
