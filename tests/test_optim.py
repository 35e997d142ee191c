"""Optimizer construction: one way to freeze, multipliers that are numbers and positive."""

import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxadapt import defaults, models, optim, param_tree, path_rules, presets

ROOT = pathlib.Path(__file__).resolve().parents[1]

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


# ---------------------------------------------- the numbers the optimizer produces
# Each test states the bug it catches; every one was seen failing with that bug injected.


def _update(cfg, groups, grads, params, steps=1, total_steps=100):
  """Applies `steps` optimizer updates to `params` with fixed `grads`; returns the updates."""
  tx = optim.make_optimizer(cfg, groups, total_steps)
  state = tx.init(params)
  out = []
  for _ in range(steps):
    updates, state = tx.update(grads, state, params)
    out.append(jax.tree.map(np.asarray, updates))
  return out


# SGD whose update is exactly -lr * grad: no momentum, decay or schedule.
PLAIN_SGD = dict(
    name='sgd',
    momentum=0.0,
    weight_decay=0.0,
    schedule='constant',
    warmup_fraction=0.0,
    wd_rules=(('.*', 1.0),),
)


def _groups(cfg, params, trainable=None):
  flat = param_tree.flatten(params)
  return optim.param_groups(cfg, flat, trainable or dict.fromkeys(flat, True))


def test_lr_multipliers_scale_the_updates():
  """Catches an optimizer that ignores lr multipliers (layer decay silently off)."""
  cfg = _optim(**PLAIN_SGD, lr=0.1, lr_rules=(('slow/.*', 0.25), ('.*', 1.0)))
  params = {'slow': {'w': jnp.ones(3)}, 'fast': {'w': jnp.ones(3)}}
  grads = {'slow': {'w': jnp.full(3, 2.0)}, 'fast': {'w': jnp.full(3, 2.0)}}
  (u,) = _update(cfg, _groups(cfg, params), grads, params)
  np.testing.assert_allclose(u['fast']['w'], -0.1 * 2.0, rtol=1e-6)
  np.testing.assert_allclose(u['slow']['w'], -0.25 * 0.1 * 2.0, rtol=1e-6)


def test_wd_rules_exempt_bias_and_scale():
  """Catches weight decay applied to biases and norm scales (wd_rules ignored)."""
  cfg = _optim(lr=0.5, weight_decay=0.1, schedule='constant', warmup_fraction=0.0)
  params = {'conv': {'kernel': jnp.full(2, 3.0), 'bias': jnp.full(2, 3.0)}, 'norm': {'scale': 3.0}}
  zeros = jax.tree.map(jnp.zeros_like, params)
  (u,) = _update(cfg, _groups(cfg, params), zeros, params)
  # AdamW with zero gradients: the update is the decoupled decay -lr * wd * param alone.
  np.testing.assert_allclose(u['conv']['kernel'], -0.5 * 0.1 * 3.0, rtol=1e-6)
  assert not np.any(u['conv']['bias']) and not np.any(u['norm']['scale'])


def test_warmup_then_cosine_schedule_values():
  """Catches a wrong warmup length or cosine shape (e.g. decaying over all steps)."""
  cfg = _optim(lr=2.0, warmup_steps=10, schedule='cosine')
  lr = optim.schedule(cfg, total_steps=110)
  got = [float(lr(s)) for s in (0, 5, 10, 35, 60, 85, 110)]
  expected = [0.0, 1.0, 2.0, 1.0 + np.cos(np.pi / 4), 1.0, 1.0 - np.cos(np.pi / 4), 0.0]
  np.testing.assert_allclose(got, expected, atol=1e-6)
  # Without warmup_steps, warmup_fraction decides: 2% of 1000 steps.
  lr = optim.schedule(_optim(lr=1.0, warmup_fraction=0.02, schedule='linear'), total_steps=1000)
  np.testing.assert_allclose([float(lr(s)) for s in (10, 20, 510, 1000)], [0.5, 1.0, 0.5, 0.0])


def test_gradient_clipping_bounds_the_global_norm_of_trainable_updates():
  """Catches optim.grad_clip being ignored (or clipping per leaf instead of globally)."""
  cfg = _optim(**PLAIN_SGD, lr=1.0, grad_clip=1.0)
  params = {'a': jnp.zeros(2), 'b': jnp.zeros(2), 'frozen': jnp.zeros(2)}
  grads = {'a': jnp.array([3.0, 0.0]), 'b': jnp.array([0.0, 4.0]), 'frozen': jnp.zeros(2)}
  trainable = {'a': True, 'b': True, 'frozen': False}
  (u,) = _update(cfg, _groups(cfg, params, trainable), grads, params)
  np.testing.assert_allclose(u['a'], [-0.6, 0.0], rtol=1e-6)  # (3, 4) / |5| = (0.6, 0.8)
  np.testing.assert_allclose(u['b'], [0.0, -0.8], rtol=1e-6)
  cfg.grad_clip = 0.0  # off: the raw gradient
  (u,) = _update(cfg, _groups(cfg, params, trainable), grads, params)
  np.testing.assert_allclose(u['b'], [0.0, -4.0], rtol=1e-6)


def test_sgd_momentum_and_weight_decay_by_hand():
  """Catches the SGD path losing its momentum, nesterov flag or L2 decay."""
  cfg = _optim(
      name='sgd',
      lr=0.1,
      momentum=0.9,
      nesterov=False,
      weight_decay=0.01,
      schedule='constant',
      warmup_fraction=0.0,
      wd_rules=(('.*', 1.0),),
  )
  params = {'w': {'kernel': jnp.array([2.0])}}
  grads = {'w': {'kernel': jnp.array([1.0])}}
  u1, u2 = _update(cfg, _groups(cfg, params), grads, params, steps=2)
  g = 1.0 + 0.01 * 2.0  # gradient plus L2 decay (params held fixed here)
  np.testing.assert_allclose(u1['w']['kernel'], [-0.1 * g], rtol=1e-6)
  np.testing.assert_allclose(u2['w']['kernel'], [-0.1 * (g + 0.9 * g)], rtol=1e-6)
  cfg.nesterov = True  # nesterov looks ahead: g + momentum * trace
  u1, _ = _update(cfg, _groups(cfg, params), grads, params, steps=2)
  np.testing.assert_allclose(u1['w']['kernel'], [-0.1 * (g + 0.9 * g)], rtol=1e-6)


@pytest.mark.parametrize('model, stem, blocks', [('resnet', 'stem', 'stage'), ('vit', None, None)])
def test_layer_decay_exponents_stem_blocks_head(model, stem, blocks):
  """Catches layer decay off by one: block i of n gets d^(n+1-i), the stem d^(n+1), head 1."""
  from jaxadapt import config as config_lib

  spec = f'{ROOT}/configs/methods/full_ft.py:smoke,model={model},layer_decay=0.5'
  config = config_lib.load_config(spec)
  kwargs = {**presets.MODELS[model]['kwargs'], **models.get_spec(model).smoke}
  net = models.build_model(presets.MODELS[model]['name'], 5, **kwargs)
  shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']
  flat = param_tree.flatten(shapes)
  mult = {
      p: g['lr_mult']
      for p, g in optim.param_groups(config.optim, flat, dict.fromkeys(flat, True)).items()
  }
  if model == 'resnet':
    n = kwargs['num_stages']
    by_prefix = {'stem/': n + 1, **{f'stage{i}/': n + 1 - i for i in range(1, n + 1)}}
  else:
    n = kwargs['depth']
    by_prefix = {'embedding/': n + 1, 'pos_embedding': n + 1, 'cls': n + 1}
    by_prefix.update({f'encoder/block{i}/': n + 1 - i for i in range(1, n + 1)})
  by_prefix['head/'] = 0
  for prefix, exponent in by_prefix.items():
    got = {m for p, m in mult.items() if p.startswith(prefix)}
    assert got == {0.5**exponent}, (prefix, got)
