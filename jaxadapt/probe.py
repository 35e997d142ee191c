"""Linear probe on cached features: run the frozen backbone once, fit the head fast.

Two fits: 'ridge', the closed-form least squares onto one-hot targets that
big_vision's few-shot evaluator uses (seconds, no hyper-parameters but the
ridge strength), and 'softmax', logistic regression by Adam over the cached
features (what the epoch-loop probe optimises, without re-running the
backbone every step). Both return an ordinary `head` ({'kernel', 'bias'}), so
the result is a normal checkpoint.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxadapt import data, evaluate, sharding
from jaxadapt.config import ConfigError
from jaxadapt.step import model_input

KINDS = ('ridge', 'softmax')


def extract_features(
    forward: Callable, params: Any, preprocess: Callable, arrays: dict, batch_size: int, mesh
) -> np.ndarray:
  """Pre-head features (N, D) of every example, with eval preprocessing."""

  @jax.jit
  def features(params, images):
    return forward(params, preprocess(images, jax.random.key(0), False), features_only=True)

  chunks, indices = [], []
  for batch in data.eval_batches(arrays, batch_size, jax.process_index(), jax.process_count()):
    real = batch['mask'] > 0
    indices.append(batch['index'][real])
    batch = sharding.global_batch(batch, mesh)
    out = np.asarray(jax.device_get(features(params, model_input(batch))))
    chunks.append(out[real])
  return data.in_input_order(chunks, indices, len(arrays['label'])).astype(np.float32)


def fit_head(
    kind: str,
    feats: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    l2: float = 1e-3,
    epochs: int = 20,
    seed: int = 0,
) -> dict[str, np.ndarray]:
  check_kind(kind)
  if kind == 'ridge':
    return fit_ridge(feats, labels, num_classes, l2)
  return fit_softmax(feats, labels, num_classes, epochs=epochs, seed=seed)


def check_kind(kind: str) -> None:
  """A bad `adapt.fast_probe` fails before the run writes anything."""
  if kind not in KINDS:
    raise ConfigError(f"unknown adapt.fast_probe '{kind}'; choose ridge or softmax (or '' for off)")


def fit_ridge(
    feats: np.ndarray, labels: np.ndarray, num_classes: int, l2: float = 1e-3
) -> dict[str, np.ndarray]:
  """argmin_W |Xc W - Yc|^2 + lam |W|^2 with centred X, Y; lam = l2 * mean feature energy."""
  x = feats.astype(np.float64)
  y = np.eye(num_classes)[labels]
  mu_x, mu_y = x.mean(0), y.mean(0)
  xc, yc = x - mu_x, y - mu_y
  gram = xc.T @ xc
  lam = l2 * np.trace(gram) / gram.shape[0]
  w = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), xc.T @ yc)
  return {'kernel': w.astype(np.float32), 'bias': (mu_y - mu_x @ w).astype(np.float32)}


def fit_softmax(
    feats: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    epochs: int = 20,
    batch_size: int = 256,
    lr: float = 1e-2,
    seed: int = 0,
) -> dict[str, np.ndarray]:
  """Logistic regression by Adam on standardised features (folded back into the head)."""
  mu, sd = feats.mean(0), feats.std(0) + 1e-6
  x = jnp.asarray((feats - mu) / sd)
  y = jnp.asarray(labels)
  n = (len(x) // batch_size) * batch_size or len(x)
  bs = min(batch_size, len(x))
  steps = epochs * (n // bs)
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
  params = {'kernel': jnp.zeros((x.shape[1], num_classes)), 'bias': jnp.zeros(num_classes)}

  def loss_fn(p, xb, yb):
    return optax.softmax_cross_entropy_with_integer_labels(xb @ p['kernel'] + p['bias'], yb).mean()

  @jax.jit
  def epoch(carry, key):
    perm = jax.random.permutation(key, len(x))[:n].reshape(-1, bs)

    def step(carry, idx):
      p, s = carry
      g = jax.grad(loss_fn)(p, x[idx], y[idx])
      u, s = tx.update(g, s, p)
      return (optax.apply_updates(p, u), s), None

    return jax.lax.scan(step, carry, perm)[0]

  carry = (params, tx.init(params))
  for key in jax.random.split(jax.random.key(seed), epochs):
    carry = epoch(carry, key)
  w = np.asarray(carry[0]['kernel']) / sd[:, None]
  return {
      'kernel': w.astype(np.float32),
      'bias': (np.asarray(carry[0]['bias']) - mu @ w).astype(np.float32),
  }


def score(feats: np.ndarray, labels: np.ndarray, head: dict) -> dict[str, float]:
  """Accuracy and the macro (class-balanced) scores of `head` on cached features."""
  logits = feats @ np.asarray(head['kernel']) + np.asarray(head['bias'])
  preds = logits.argmax(-1)
  confusion = evaluate.confusion_matrix(labels, preds, logits.shape[-1])
  return {'accuracy': float(np.mean(preds == labels)), **evaluate.macro_scores(confusion)}
