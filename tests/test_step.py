"""The train step's randomness: fresh per step (fold_in of the step), identical on replay."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxadapt import step


def _noisy_preprocess(images, rng, train):
  return images + jax.random.normal(rng, images.shape) if train else images


def _plain_forward(params, images, *, train=False, features_only=False, rngs=None):
  return images.reshape(len(images), -1)[:, :3] * params['w']


def _dropout_forward(params, images, *, train=False, features_only=False, rngs=None):
  logits = _plain_forward(params, images)
  if train:
    logits = logits + jax.random.normal(rngs['dropout'], logits.shape)
  return logits


def _losses(forward, preprocess, steps=3):
  """Losses of `steps` steps on one fixed batch with parameters that never change."""
  params = {'w': jnp.ones(3)}
  tx = optax.set_to_zero()  # the parameters stay put: only the step's randomness varies
  train_step = jax.jit(step.make_train_step(forward, tx, {'w': True}, preprocess, seed=0))
  state = step.init_state(params, tx)
  batch = {'image': jnp.ones((4, 2, 2, 1)), 'label': jnp.array([0, 1, 2, 0])}
  out = []
  for _ in range(steps):
    state, metrics = train_step(state, batch)
    out.append(float(metrics['loss']))
  return out


def test_augmentation_randomness_changes_every_step_and_replays():
  """Catches augmentation keys that ignore the step (no fold_in): every step the same noise."""
  losses = _losses(_plain_forward, _noisy_preprocess)
  assert len(set(losses)) == len(losses), losses
  assert losses == _losses(_plain_forward, _noisy_preprocess)  # a resumed run draws the same


def test_dropout_randomness_changes_every_step_and_replays():
  """Catches dropout keys that ignore the step: every step would drop the same units."""
  identity = lambda images, rng, train: images
  losses = _losses(_dropout_forward, identity)
  assert len(set(losses)) == len(losses), losses
  assert losses == _losses(_dropout_forward, identity)


def test_augmentation_and_dropout_draw_independent_keys():
  """Catches one key shared by augmentation and dropout (correlated noise)."""
  seen = {}

  def forward(params, images, *, train=False, features_only=False, rngs=None):
    seen['dropout'] = jax.random.key_data(rngs['dropout'])
    return _plain_forward(params, images)

  def preprocess(images, rng, train):
    seen['aug'] = jax.random.key_data(rng)
    return images

  params = {'w': jnp.ones(3)}
  tx = optax.set_to_zero()
  train_step = step.make_train_step(forward, tx, {'w': True}, preprocess, seed=0)
  batch = {'image': jnp.ones((4, 2, 2, 1)), 'label': jnp.array([0, 1, 2, 0])}
  train_step(step.init_state(params, tx), batch)  # not jitted: the keys are concrete
  assert not np.array_equal(seen['aug'], seen['dropout'])
