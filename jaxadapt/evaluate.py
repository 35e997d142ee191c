"""Exact evaluation over whole splits: every example once, padding masked."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxadapt import data, sharding


def eval_sums(
    eval_step: Callable, params, arrays: dict, batch_size: int, mesh
) -> dict[str, np.ndarray]:
  """Summed loss, correct count and example count over a whole split, on the host."""
  sums = None
  for batch in data.eval_batches(arrays, batch_size, jax.process_index(), jax.process_count()):
    s = eval_step(params, sharding.global_batch(batch, mesh))
    sums = s if sums is None else jax.tree.map(jnp.add, sums, s)
  return jax.device_get(sums)


def evaluate_splits(
    eval_step: Callable, params, eval_arrays: dict, batch_size: int, mesh
) -> dict[str, float]:
  """{'<split>/accuracy', '<split>/loss', '<split>/macro_accuracy', '<split>/macro_f1'}
  for every split in `eval_arrays`."""
  out = {}
  for name, arrays in eval_arrays.items():
    sums = eval_sums(eval_step, params, arrays, batch_size, mesh)
    out[f'{name}/accuracy'] = float(sums['correct'] / sums['count'])
    out[f'{name}/loss'] = float(sums['loss'] / sums['count'])
    out.update({f'{name}/{k}': v for k, v in macro_scores(sums['confusion']).items()})
  return out


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
  """[C, C] counts: row = true class, column = predicted class."""
  return np.bincount(
      np.asarray(labels) * num_classes + np.asarray(preds), minlength=num_classes**2
  ).reshape(num_classes, num_classes)


def macro_scores(confusion: np.ndarray) -> dict[str, float]:
  """Class-balanced scores for unbalanced data, from a confusion matrix (rows: true class).

  macro_accuracy: mean per-class recall over the classes present (balanced accuracy);
  macro_f1: mean per-class F1 = 2 TP / (2 TP + FP + FN) over the classes that occur as
  true or predicted labels. Both as scikit-learn's balanced_accuracy_score and
  f1_score(average='macro').
  """
  confusion = np.asarray(confusion, dtype=np.float64)
  tp = np.diag(confusion)
  support, predicted = confusion.sum(1), confusion.sum(0)
  present = support > 0
  seen = present | (predicted > 0)
  return {
      'macro_accuracy': float(np.mean(tp[present] / support[present])),
      'macro_f1': float(np.mean(2 * tp[seen] / (support + predicted)[seen])),
  }
