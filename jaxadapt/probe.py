"""Linear probe on cached features: run the frozen backbone once, fit the head to convergence.

Two fits, both solved to convergence whatever the data size (no epoch budget to under-fit
small data or over-spend on large data):

  'ridge'    closed-form least squares onto one-hot targets, as big_vision's few-shot
             evaluator does; one eigendecomposition serves every penalty, so sweeping it
             costs nothing;
  'softmax'  L2-regularised logistic regression (the loss the epoch-loop probe optimises)
             by full-batch L-BFGS (optax.lbfgs) until the gradient norm is below `tol`.

The softmax fit standardises the features first, by each feature's own std (`feature`) or
by one std for all of them (`global`, the representation's geometry kept): with a few
examples per class the per-feature stds are noise and amplify near-constant features, with
many the per-feature scaling can win. `candidates` lists the settings (penalty, and for
softmax the scaling), `fit_heads` fits them all and `select_head` keeps the one with the
best accuracy on a validation split. Every fit returns an ordinary `head` ({'kernel',
'bias'}), so the result is a normal checkpoint.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxadapt import data, evaluate, sharding
from jaxadapt.config import ConfigError
from jaxadapt.step import model_input

KINDS = ('ridge', 'softmax')
SCALES = ('feature', 'global')  # the softmax fit's standardisation: per feature, or one std
Head = dict[str, np.ndarray]
Setting = dict[str, Any]  # {'l2': float} (+ 'scale' for softmax)


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


def check_kind(kind: str) -> None:
  """A bad `adapt.fast_probe` fails before the run writes anything."""
  if kind not in KINDS:
    raise ConfigError(f"unknown adapt.fast_probe '{kind}'; choose ridge or softmax (or '' for off)")


def check_penalties(l2s: Sequence[float]) -> tuple[float, ...]:
  """`adapt.probe_l2` as floats: at least one, every one positive."""
  l2s = tuple(float(v) for v in l2s)
  if not l2s or min(l2s) <= 0:
    raise ConfigError(
        f'adapt.probe_l2={l2s} must list one or more positive penalties, e.g. (1e-3, 1e-2)'
    )
  return l2s


def candidates(kind: str, l2s: Sequence[float]) -> list[Setting]:
  """The settings a fast probe fits: every penalty, for softmax under both scalings."""
  check_kind(kind)
  if kind == 'ridge':
    return [{'l2': float(l2)} for l2 in l2s]
  return [{'scale': scale, 'l2': float(l2)} for scale in SCALES for l2 in l2s]


def fit_heads(
    kind: str,
    feats: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    settings: Sequence[Setting],
    *,
    tol: float = 1e-5,
    max_iter: int = 1000,
) -> list[Head]:
  """One head per setting (same order; see `candidates`)."""
  check_kind(kind)
  if kind == 'ridge':
    return fit_ridge_path(feats, labels, num_classes, [s['l2'] for s in settings])
  return [
      fit_softmax(feats, labels, num_classes, s['l2'], scale=s['scale'], tol=tol, max_iter=max_iter)
      for s in settings
  ]


def select_head(
    heads: Sequence[Head],
    settings: Sequence[Setting],
    val_feats: np.ndarray,
    val_labels: np.ndarray,
) -> tuple[int, list[float]]:
  """Index of the head with the best validation accuracy (ties: the larger penalty, the
  simpler model; then the earlier setting), and every head's validation accuracy."""
  scores = [score(val_feats, val_labels, h)['accuracy'] for h in heads]
  best = max(range(len(heads)), key=lambda i: (scores[i], settings[i]['l2']))
  return best, scores


def fit_ridge(feats: np.ndarray, labels: np.ndarray, num_classes: int, l2: float = 1e-3) -> Head:
  """argmin_W |Xc W - Yc|^2 + lam |W|^2 with centred X, Y; lam = l2 * mean feature energy."""
  return fit_ridge_path(feats, labels, num_classes, (l2,))[0]


def fit_ridge_path(
    feats: np.ndarray, labels: np.ndarray, num_classes: int, l2s: Sequence[float]
) -> list[Head]:
  """`fit_ridge` at every penalty from one eigendecomposition of the Gram matrix."""
  x = feats.astype(np.float64)
  y = np.eye(num_classes)[labels]
  mu_x, mu_y = x.mean(0), y.mean(0)
  xc, yc = x - mu_x, y - mu_y
  gram = xc.T @ xc
  evals, evecs = np.linalg.eigh(gram)
  proj = evecs.T @ (xc.T @ yc)  # targets in the eigenbasis
  energy = np.trace(gram) / gram.shape[0]
  heads = []
  for l2 in l2s:
    w = evecs @ (proj / (np.maximum(evals, 0.0) + l2 * energy)[:, None])
    heads.append({'kernel': w.astype(np.float32), 'bias': (mu_y - mu_x @ w).astype(np.float32)})
  return heads


def fit_softmax(
    feats: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    l2: float = 1e-3,
    *,
    scale: str = 'feature',
    tol: float = 1e-5,
    max_iter: int = 1000,
) -> Head:
  """argmin mean cross-entropy + l2/2 |W|^2 on standardised features, by L-BFGS to `tol`.

  Features are centred and divided by their own std (`scale='feature'`) or by the root
  mean of their variances (`'global'`). The penalty is on the weights of the scaled
  features (not the bias), then folded back into a head that reads raw features.
  """
  if scale not in SCALES:
    raise ValueError(f'scale={scale!r}; expected one of {SCALES}')
  mu, var = feats.mean(0), feats.var(0)
  sd = (np.sqrt(var) if scale == 'feature' else np.full_like(var, np.sqrt(var.mean()))) + 1e-6
  x = jnp.asarray((feats - mu) / sd, jnp.float32)
  y = jnp.asarray(labels)
  w, b = _lbfgs_softmax(x, y, num_classes, jnp.float32(l2), tol, max_iter)
  w = np.asarray(w, np.float64) / sd[:, None]
  return {
      'kernel': w.astype(np.float32),
      'bias': (np.asarray(b, np.float64) - mu @ w).astype(np.float32),
  }


@jax.jit(static_argnums=(2, 4, 5))
def _lbfgs_softmax(x, y, num_classes: int, l2, tol: float, max_iter: int):
  def loss_fn(p):
    logits = x @ p['kernel'] + p['bias']
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return ce + 0.5 * l2 * jnp.sum(p['kernel'] ** 2)

  params = {'kernel': jnp.zeros((x.shape[1], num_classes)), 'bias': jnp.zeros(num_classes)}
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss_fn)

  def step(carry):
    p, state, _ = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=loss_fn)
    return optax.apply_updates(p, updates), state, optax.tree.norm(grad)

  def going(carry):
    _, state, grad_norm = carry
    return (optax.tree.get(state, 'count') < max_iter) & (grad_norm > tol)

  p, _, _ = jax.lax.while_loop(going, step, (params, opt.init(params), jnp.inf))
  return p['kernel'], p['bias']


def score(feats: np.ndarray, labels: np.ndarray, head: dict) -> dict[str, float]:
  """Accuracy and the macro (class-balanced) scores of `head` on cached features."""
  logits = feats @ np.asarray(head['kernel']) + np.asarray(head['bias'])
  preds = logits.argmax(-1)
  confusion = evaluate.confusion_matrix(labels, preds, logits.shape[-1])
  return {'accuracy': float(np.mean(preds == labels)), **evaluate.macro_scores(confusion)}
