"""Macro (class-balanced) metrics: the pure function, the eval step's confusion sums, the probe."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadapt import evaluate, probe
from jaxadapt import step as step_lib

# 7 examples, 3 classes; class 2 is never predicted.
LABELS = np.array([0, 0, 0, 0, 1, 1, 2])
PREDS = np.array([0, 0, 0, 1, 1, 0, 1])


def test_hand_computed_example():
  confusion = evaluate.confusion_matrix(LABELS, PREDS, 3)
  np.testing.assert_array_equal(confusion, [[3, 1, 0], [1, 1, 0], [0, 1, 0]])
  scores = evaluate.macro_scores(confusion)
  # recalls 3/4, 1/2, 0/1
  assert scores['macro_accuracy'] == pytest.approx((0.75 + 0.5 + 0.0) / 3)
  # F1 = 2TP / (support + predicted): 6/8, 2/5, 0/1
  assert scores['macro_f1'] == pytest.approx((0.75 + 0.4 + 0.0) / 3)


def test_absent_classes_follow_scikit_learn():
  import warnings

  from sklearn.metrics import balanced_accuracy_score, f1_score

  rng = np.random.default_rng(0)
  cases = [
      (LABELS, PREDS, 3),
      (np.array([0, 0, 1]), np.array([0, 2, 1]), 4),  # class 2 only predicted, 3 unused
      (rng.integers(0, 5, 200), rng.integers(0, 5, 200), 5),
      (rng.integers(0, 3, 50), rng.integers(0, 6, 50), 6),
  ]
  for labels, preds, c in cases:
    scores = evaluate.macro_scores(evaluate.confusion_matrix(labels, preds, c))
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # sklearn warns about classes only predicted
      assert scores['macro_accuracy'] == pytest.approx(balanced_accuracy_score(labels, preds))
      assert scores['macro_f1'] == pytest.approx(f1_score(labels, preds, average='macro'))


def test_eval_step_confusion_ignores_padding_rows():
  # A "model" whose logits are the one-hot of a fixed prediction per row.
  forward = lambda params, x: jax.nn.one_hot(x[:, 0], 3) * 10.0
  eval_step = jax.jit(step_lib.make_eval_step(forward, lambda x, rng, train: x))
  tokens = np.concatenate([PREDS, [2, 2]])[:, None].astype(np.int32)  # 2 padding rows
  batch = {
      'tokens': jnp.asarray(tokens),
      'label': jnp.asarray(np.concatenate([LABELS, [0, 0]]), jnp.int32),
      'mask': jnp.asarray([1.0] * 7 + [0.0, 0.0]),
  }
  sums = jax.device_get(eval_step({}, batch))
  np.testing.assert_array_equal(sums['confusion'], evaluate.confusion_matrix(LABELS, PREDS, 3))
  assert sums['count'] == 7 and sums['correct'] == 4


def test_probe_scores_report_macro_metrics():
  feats = np.eye(3, dtype=np.float32)[PREDS]
  head = {'kernel': np.eye(3, dtype=np.float32), 'bias': np.zeros(3, np.float32)}
  scores = probe.score(feats, LABELS, head)
  assert scores['accuracy'] == pytest.approx(4 / 7)
  assert scores['macro_accuracy'] == pytest.approx(1.25 / 3)
  assert scores['macro_f1'] == pytest.approx(1.15 / 3)
