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

from jaxadapt import dora, ia3, lora, param_tree, precision, quant

Batch = Mapping[str, jax.Array]
Preprocess = Callable[[jax.Array, jax.Array, bool], jax.Array]
Forward = Callable[..., jax.Array]


def model_input(batch: Batch) -> jax.Array:
  """What the model reads from a batch: token ids (`tokens`, [N, L] int32) for text,
  else `image` (images [N, H, W, C] or sequences [N, L, C])."""
  return batch['tokens'] if 'tokens' in batch else batch['image']


def make_forward(
    model: nn.Module,
    lora_alpha: float = 1.0,
    compute_dtype: Any = jnp.float32,
    lora_form: str = 'auto',
    dora_alpha: float = 1.0,
) -> Forward:
  """`forward(params, images, train=, features_only=, rngs=)` -> float32 outputs.

  Quantised frozen kernels are dequantised first (quant.py). DoRA adapters are merged into
  their kernels (dora.py: the direction's norm needs the merged kernel). Adapters under
  `params['lora']` are applied by the layers themselves as `layer(x) + (alpha/r) (x a) b`
  (lora.factored) or merged into their kernels, per `lora_form` (lora.split). IA3 vectors
  rescale the layers' activations inside `model.apply` (ia3.scaled). Floating parameters
  and inputs are cast to `compute_dtype` (precision.py); outputs come back as float32.
  """
  lora.check_form(lora_form)

  def forward(params, images, *, train=False, features_only=False, rngs=None):
    params = quant.dequantize_tree(params)  # int8 / NF4 frozen kernels, if any
    if compute_dtype != jnp.float32:
      params = precision.cast_floating(params, compute_dtype)
      images = precision.cast_floating(images, compute_dtype)
    params = dora.merge(params, dora_alpha)
    scales = ia3.vectors(params)
    params = {k: v for k, v in params.items() if k != ia3.NAME}
    base, adapters = lora.split(params, lora_alpha, lora_form)
    with ia3.scaled(scales), lora.factored(adapters, lora_alpha):
      out = model.apply(
          {'params': base}, images, train=train, features_only=features_only, rngs=rngs
      )
    return out.astype(jnp.float32)

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
    accumulate: int = 1,
) -> Callable:
  """Builds `train_step(state, batch, aux=None) -> (state, metrics)`; jit it with shardings.

  `objective(logits, batch, images, aux) -> per-example loss` replaces the
  cross-entropy (distillation passes teacher parameters as `aux`, which is
  never differentiated nor stored in the state); `mix(images, rng)` is an
  extra augmentation applied after preprocessing (e.g. mixup). `accumulate=k`
  splits the batch into k micro-batches run one after another (`lax.scan`, so only
  one micro-batch's activations are live) and averages their gradients: one update
  equal to the whole batch's, up to float rounding.
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

    def loss_fn(learned, batch, dropout_rng):
      params = param_tree.unflatten({**frozen, **learned})
      logits = forward(params, batch['image'], train=True, rngs={'dropout': dropout_rng})
      if objective is None:
        loss = cross_entropy(logits, batch['label'])
      else:
        loss = objective(logits, batch, batch['image'], jax.lax.stop_gradient(aux))
      return loss.mean(), jnp.sum(jnp.argmax(logits, -1) == batch['label'])

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    batch = {**batch, 'image': images}
    if accumulate == 1:
      (loss, correct), grads = grad_fn(learned, batch, dropout_rng)
    else:
      loss, correct, grads = _accumulated(grad_fn, learned, batch, dropout_rng, accumulate)
    # The optimizer sees the whole tree; frozen leaves get zeros that set_to_zero drops.
    zeros = jax.tree.map(jnp.zeros_like, frozen)
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
        'accuracy': correct / batch['label'].shape[0],
        'grad_norm': optax.tree.norm(grads),
    }
    if lr_schedule is not None:
      metrics['lr'] = lr_schedule(state.step)
    return new_state, metrics

  return train_step


def _accumulated(grad_fn, learned, batch, dropout_rng, k):
  """Mean loss, summed correct count and mean gradients over k equal micro-batches."""

  def to_micro(x):  # (k*m, ...) -> (k, m, ...); micro-batch i = rows i, i+k, i+2k, ...
    # Strided rows keep every micro-batch spread over all data-parallel devices.
    return x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1)

  def body(carry, xs):
    i, micro = xs
    (loss, correct), grads = grad_fn(learned, micro, jax.random.fold_in(dropout_rng, i))
    total_loss, total_correct, total_grads = carry
    summed = jax.tree.map(jnp.add, total_grads, grads)
    return (total_loss + loss, total_correct + correct, summed), None

  init = (jnp.zeros(()), jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, learned))
  micro = jax.tree.map(to_micro, batch)
  (loss, correct, grads), _ = jax.lax.scan(body, init, (jnp.arange(k), micro))
  return loss / k, correct, jax.tree.map(lambda g: g / k, grads)


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
