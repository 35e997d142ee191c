"""Prompt tuning (jaxadapt/models/prompts.py in vit and bert): placement, the attention
mask, prompts kept out of pooling, and the refusal to merge."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadapt import adapters, config as config_lib, methods, models
from jaxadapt.models import prompts as prompt_lib

BERT = dict(width=16, depth=2, num_heads=2, mlp_dim=32, vocab_size=50, max_len=32)


def bert(**kwargs):
  return models.build_model('bert', 3, **BERT, **kwargs)


def random_params(model, x, seed=0):
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape).astype(s.dtype)), shapes)


def test_place_inserts_then_replaces_and_remove_undoes():
  x = jnp.arange(2 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 1)
  p = jnp.full((2, 1), -1.0)
  first = prompt_lib.place(x, p, 1, first=True)
  assert first.shape == (2, 6, 1)
  assert first[0, :, 0].tolist() == [0, -1, -1, 1, 2, 3]
  again = prompt_lib.place(first + 10, p * 2, 1, first=False)  # deep: fresh tokens, same slots
  assert again[0, :, 0].tolist() == [10, -2, -2, 11, 12, 13]
  assert np.array_equal(prompt_lib.remove(first, 2, 1), x)
  mask = jnp.array([[True, True, False, False]])
  assert prompt_lib.extend_mask(mask, 2, 1).tolist() == [[True, True, True, True, False, False]]


@pytest.mark.parametrize('depth', [1, 2])
def test_bert_prompts_are_attended_and_padding_is_not(depth):
  model = bert(num_prompts=3, prompt_depth=depth)
  ids = jnp.array([[5, 7, 9, 11, 0, 0, 0, 0]], jnp.int32)
  params = random_params(model, ids)
  assert params['prompt'].shape == (depth, 3, 16)
  out = model.apply({'params': params}, ids, features_only=True)
  # Padding stays masked with prompts in the sequence: fewer pads, same features.
  short = model.apply({'params': params}, ids[:, :5], features_only=True)
  np.testing.assert_allclose(np.asarray(out), np.asarray(short), rtol=1e-5, atol=1e-6)
  # The prompts are attended: other prompt values, other features.
  moved = {**params, 'prompt': params['prompt'] + 1.0}
  assert (
      np.abs(np.asarray(model.apply({'params': moved}, ids, features_only=True) - out)).max() > 1e-3
  )
  # Deep prompts: the last block's fresh tokens matter too.
  if depth == 2:
    last = {**params, 'prompt': params['prompt'].at[1].add(1.0)}
    assert (
        np.abs(np.asarray(model.apply({'params': last}, ids, features_only=True) - out)).max()
        > 1e-3
    )


def test_bert_mean_pool_excludes_prompts():
  """Mean pooling over the real tokens only: recompute it from the encoder output."""
  model = bert(num_prompts=2)
  ids = jnp.array([[5, 7, 9, 0]], jnp.int32)
  params = random_params(model, ids)
  feats = model.apply({'params': params}, ids, features_only=True)
  _, state = model.apply({'params': params}, ids, features_only=True, capture_intermediates=True)
  hidden = state['intermediates']['encoder']['__call__'][0]  # (1, 2 + 4, 16), prompts at 1..2
  assert hidden.shape == (1, 6, 16)
  real = np.asarray(hidden)[0, [0, 3, 4]]  # [CLS] and the two words: not prompts, not pad
  np.testing.assert_allclose(np.asarray(feats)[0], real.mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('pool', ['cls', 'gap'])
def test_vit_visual_prompts(pool):
  model = models.build_model('vit', 3, width=16, depth=2, num_heads=2, pool=pool, num_prompts=4)
  images = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 8, 1)).astype(np.float32))
  params = random_params(model, images)
  assert params['prompt'].shape == (1, 4, 16)
  _, state = model.apply({'params': params}, images, capture_intermediates=True)
  tokens = 4 + (pool == 'cls')  # (8 // patch 4)^2 patches
  assert state['intermediates']['encoder']['__call__'][0].shape == (2, tokens + 4, 16)
  feats = model.apply({'params': params}, images, features_only=True)
  hidden = np.asarray(state['intermediates']['encoder']['__call__'][0])
  at = int(pool == 'cls')
  without = np.concatenate([hidden[:, :at], hidden[:, at + 4 :]], 1)
  want = without[:, 0] if pool == 'cls' else without.mean(1)
  np.testing.assert_allclose(np.asarray(feats), want, rtol=1e-5, atol=1e-6)


def test_bad_prompt_settings_are_one_line_errors():
  with pytest.raises(models.ModelError, match=r'prompt_depth in 1\.\.2'):
    bert(num_prompts=2, prompt_depth=3).init(jax.random.key(0), jnp.ones((1, 4), jnp.int32))
  config = config_lib.load_config('configs/fashion_mnist/scratch.py')
  with pytest.raises(methods.MethodError, match=r"prompt: model 'cnn'.*works on .*vit"):
    methods.apply(config.unlock(), 'prompt')


def test_prompts_cannot_be_merged():
  with pytest.raises(adapters.MergeError, match='--mode adapters'):
    adapters.check_mergeable({'prompt': np.zeros((1, 2, 3)), 'head': {}}, 'export --mode merged')
