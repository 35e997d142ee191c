"""Pure train and eval steps: (state, batch) -> (state, metrics).

Gradients are taken with respect to the trainable parameters only: the loss
is a function of `(trainable, frozen)` and we differentiate the first
argument, so a frozen backbone costs no backward FLOPs, and the gradient norm
and clipping see trainable parameters only. Randomness (augmentation,
dropout) comes from `fold_in(seed, step)`, so a resumed run draws exactly the
numbers an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxadapt import lora, param_tree

Batch = Mapping[str, jax.Array]
Preprocess = Callable[[jax.Array, jax.Array, bool], jax.Array]
Forward = Callable[..., jax.Array]


def model_input(batch: Batch) -> jax.Array:
  """What the model reads from a batch: token ids (`tokens`, [N, L] int32) for text,
  else `image` (images [N, H, W, C] or sequences [N, L, C])."""
  return batch['tokens'] if 'tokens' in batch else batch['image']


def make_forward(model: nn.Module, lora_alpha: float = 1.0) -> Forward:
  """`forward(params, images, train=, features_only=, rngs=)`; LoRA adapters merged in."""

  def forward(params, images, *, train=False, features_only=False, rngs=None):
    return model.apply(
        {'params': lora.merge(params, lora_alpha)},
        images,
        train=train,
        features_only=features_only,
        rngs=rngs,
    )

  return forward


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def init_state(params: Any, tx: optax.GradientTransformation) -> TrainState:
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy with integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def split_params(params: Any, trainable: Mapping[str, bool]) -> tuple[dict, dict]:
  """Nested params -> (trainable, frozen) flat dicts keyed by path."""
  flat = param_tree.flatten(params)
  return (
      {k: v for k, v in flat.items() if trainable[k]},
      {k: v for k, v in flat.items() if not trainable[k]},
  )


def make_train_step(
    forward: Forward,
    tx: optax.GradientTransformation,
    trainable: Mapping[str, bool],
    preprocess: Preprocess,
    seed: int,
    lr_schedule: optax.Schedule | None = None,
    objective: Callable | None = None,
    mix: Callable | None = None,
) -> Callable:
  """Builds `train_step(state, batch, aux=None) -> (state, metrics)`; jit it with shardings.

  `objective(logits, batch, images, aux) -> per-example loss` replaces the
  cross-entropy (distillation passes teacher parameters as `aux`, which is
  never differentiated nor stored in the state); `mix(images, rng)` is an
  extra augmentation applied after preprocessing (e.g. mixup).
  """
  trainable = dict(trainable)

  def train_step(state: TrainState, batch: Batch, aux: Any = None):
    rng = jax.random.fold_in(jax.random.key(seed), state.step)
    aug_rng, dropout_rng, mix_rng = jax.random.split(rng, 3)
    images = preprocess(model_input(batch), aug_rng, True)
    if mix is not None:
      images = mix(images, mix_rng)
    learned, frozen = split_params(state.params, trainable)
    frozen = jax.lax.stop_gradient(frozen)

    def loss_fn(learned):
      params = param_tree.unflatten({**frozen, **learned})
      logits = forward(params, images, train=True, rngs={'dropout': dropout_rng})
      if objective is None:
        return cross_entropy(logits, batch['label']).mean(), logits
      return objective(logits, batch, images, jax.lax.stop_gradient(aux)).mean(), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(learned)
    # The optimizer sees the whole tree; frozen leaves get zeros that set_to_zero drops.
    zeros = {k: jnp.zeros_like(v) for k, v in frozen.items()}
    updates, opt_state = tx.update(
        param_tree.unflatten({**grads, **zeros}), state.opt_state, state.params
    )
    flat_updates = param_tree.flatten(updates)
    learned = optax.apply_updates(learned, {k: flat_updates[k] for k in learned})
    # Frozen leaves are passed through untouched, so they stay bitwise identical.
    new_state = state.replace(
        step=state.step + 1, params=param_tree.unflatten({**frozen, **learned}), opt_state=opt_state
    )
    metrics = {
        'loss': loss,
        'accuracy': jnp.mean(jnp.argmax(logits, -1) == batch['label']),
        'grad_norm': optax.tree.norm(grads),
    }
    if lr_schedule is not None:
      metrics['lr'] = lr_schedule(state.step)
    return new_state, metrics

  return train_step


def make_eval_step(forward: Forward, preprocess: Preprocess) -> Callable:
  """Builds `eval_step(params, batch) -> sums`; `batch['mask']` marks real rows.

  The sums add up over batches: loss, correct, count and `confusion` [C, C] (row: true
  class, column: predicted), from which evaluation derives per-class (macro) metrics.
  """

  def eval_step(params: Any, batch: Batch):
    images = preprocess(model_input(batch), jax.random.key(0), False)
    logits = forward(params, images)
    mask = batch['mask'].astype(jnp.float32)
    pred = jnp.argmax(logits, -1)
    correct = (pred == batch['label']).astype(jnp.float32)
    num_classes = logits.shape[-1]
    true_1h = jax.nn.one_hot(batch['label'], num_classes) * mask[:, None]
    return {
        'loss': jnp.sum(cross_entropy(logits, batch['label']) * mask),
        'correct': jnp.sum(correct * mask),
        'count': jnp.sum(mask),
        'confusion': true_1h.T @ jax.nn.one_hot(pred, num_classes),
    }

  return eval_step
