"""The cached-feature probe fits (jaxadapt/probe.py): converged softmax, ridge path, selection."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from jaxadapt import probe
from jaxadapt.config import ConfigError


def _features(n_per_class, d=32, classes=5, seed=0, noise=2.0):
  """Gaussian classes whose means differ in a few directions: linearly separable-ish."""
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(classes, d)) * 1.5
  labels = np.repeat(np.arange(classes), n_per_class)
  feats = means[labels] + noise * rng.normal(size=(len(labels), d)) + 3.0  # offset: not centred
  return feats.astype(np.float32), labels


@pytest.mark.parametrize('n_per_class', [2, 20, 400])
def test_softmax_matches_scikit_learn_logistic_regression(n_per_class):
  # Same objective: sklearn minimises sum CE + |W|^2 / (2C) on the standardised features,
  # ours mean CE + l2/2 |W|^2, so l2 = 1 / (C n). An under-fitted solver (the old 20-epoch
  # Adam loop at small n) misses sklearn's accuracy by points, not fractions of a point.
  x, y = _features(n_per_class)
  xt, yt = _features(500, seed=1)
  mu, sd = x.mean(0), x.std(0) + 1e-6  # the per-feature scaling (scale='feature')
  c = 1.0
  ref = LogisticRegression(C=c, max_iter=5000, tol=1e-8).fit((x - mu) / sd, y)
  ref_acc = ref.score((xt - mu) / sd, yt)
  head = probe.fit_softmax(x, y, 5, l2=1 / (c * len(y)), tol=1e-6)
  acc = probe.score(xt, yt, head)['accuracy']
  assert abs(acc - ref_acc) <= 0.005, (acc, ref_acc)
  # And the same predictions almost everywhere, not just the same count of right answers.
  ours = (xt @ head['kernel'] + head['bias']).argmax(-1)
  assert np.mean(ours == ref.predict((xt - mu) / sd)) >= 0.99


def test_ridge_path_equals_one_solve_per_penalty():
  x, y = _features(30)
  l2s = (1e-3, 1e-1, 10.0)
  heads = probe.fit_ridge_path(x, y, 5, l2s)
  for l2, head in zip(l2s, heads):
    xc = x.astype(np.float64) - x.mean(0)
    yc = np.eye(5)[y] - np.eye(5)[y].mean(0)
    gram = xc.T @ xc
    lam = l2 * np.trace(gram) / gram.shape[0]
    w = np.linalg.solve(gram + lam * np.eye(len(gram)), xc.T @ yc)
    np.testing.assert_allclose(head['kernel'], w, rtol=1e-4, atol=1e-6)


def test_selection_picks_the_best_validation_penalty():
  # 40 dimensions of noise, 4 examples: the weakest penalty over-fits; a stronger one wins.
  x, y = _features(4, d=40, noise=3.0)
  xv, yv = _features(200, d=40, noise=3.0, seed=2)
  l2s = (1e-6, 1e-2, 1.0, 100.0)
  settings = probe.candidates('ridge', l2s)
  heads = probe.fit_heads('ridge', x, y, 5, settings)
  best, scores = probe.select_head(heads, settings, xv, yv)
  assert scores[best] == max(scores) and len(scores) == 4
  assert best == max(i for i, s in enumerate(scores) if s == max(scores))  # ties: larger l2


@pytest.mark.parametrize('bad', [(), (0.0,), (1e-3, -1.0)])
def test_bad_penalties_are_a_config_error(bad):
  with pytest.raises(ConfigError, match='adapt.probe_l2'):
    probe.check_penalties(bad)


def _offset_features(n_per_class=200, signal_scale=0.01, noise_scale=100.0, seed=0):
  """Three classes told apart by three features, beside three pure-noise features.

  Real activations have per-feature offsets and scales: here the informative features are
  tiny and the noise is large, so a head that is right only on standardised features puts
  its weight on the noise once applied to raw ones.
  """
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(3), n_per_class)
  signal = 4.0 * np.eye(3)[labels] + rng.normal(0, 0.5, (len(labels), 3))
  noise = rng.normal(0, 1, (len(labels), 3))
  feats = np.concatenate([signal * signal_scale + 5.0, noise * noise_scale + 50.0], axis=1)
  return feats.astype(np.float32), labels


def _accuracies(head, feats, labels):
  train = np.arange(len(labels)) % 2 == 0
  return [probe.score(feats[m], labels[m], head)['accuracy'] for m in (train, ~train)]


def test_softmax_head_works_on_raw_offset_features():
  """Catches a softmax fit that forgets to fold its feature standardisation back into the head."""
  feats, labels = _offset_features()
  train = np.arange(len(labels)) % 2 == 0
  head = probe.fit_softmax(feats[train], labels[train], 3)
  assert min(_accuracies(head, feats, labels)) > 0.95


def _quiet_noise_features(n_per_class, seed):
  """Three informative features of std ~2 beside 300 pure-noise features of std 1e-3."""
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(3), n_per_class)
  signal = 2.0 * np.eye(3)[labels] + rng.normal(0, 1.0, (len(labels), 3))
  noise = rng.normal(0, 1e-3, (len(labels), 300))
  return np.concatenate([signal, noise], axis=1).astype(np.float32), labels


def test_selection_picks_the_feature_scaling_that_wins_on_validation():
  """Bugs caught: the scaling not part of the selection (one scaling fitted twice, or the
  first always kept); a global scaling that is really per feature. With 2 examples per class,
  per-feature stds blow 300 near-constant noise features up to the signal's size; with one
  std for all they stay negligible. On offset features whose signal is tiny next to loud
  noise, only the per-feature scaling sees the signal."""
  settings = probe.candidates('softmax', (1e-2, 1.0))
  assert [s['scale'] for s in settings] == ['feature', 'feature', 'global', 'global']
  x, y = _quiet_noise_features(2, seed=0)
  xv, yv = _quiet_noise_features(200, seed=1)
  heads = probe.fit_heads('softmax', x, y, 3, settings)
  best, scores = probe.select_head(heads, settings, xv, yv)
  assert settings[best]['scale'] == 'global' and scores[best] == max(scores)
  assert max(scores[2:]) >= max(scores[:2]) + 0.1, scores
  feats, labels = _offset_features()
  train = np.arange(len(labels)) % 2 == 0
  heads = probe.fit_heads('softmax', feats[train], labels[train], 3, settings)
  best, scores = probe.select_head(heads, settings, feats[~train], labels[~train])
  assert settings[best]['scale'] == 'feature' and scores[best] > 0.95, scores


def test_ridge_head_handles_feature_offsets():
  """Catches a ridge fit that drops its centring (the bias): features sit far from zero."""
  feats, labels = _offset_features(signal_scale=1.0, noise_scale=1.0)
  train = np.arange(len(labels)) % 2 == 0
  head = probe.fit_ridge(feats[train], labels[train], 3)
  assert min(_accuracies(head, feats, labels)) > 0.95
