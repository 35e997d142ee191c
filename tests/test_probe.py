"""The cached-feature probe's head fits, on features far from zero mean and unit scale."""

import numpy as np

from jaxadapt import probe


def _features(n_per_class=200, signal_scale=0.01, noise_scale=100.0, seed=0):
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


def test_softmax_head_works_on_raw_features():
  """Catches a softmax fit that forgets to fold its feature standardisation back into the head."""
  feats, labels = _features()
  train = np.arange(len(labels)) % 2 == 0
  head = probe.fit_softmax(feats[train], labels[train], 3, epochs=100)
  assert min(_accuracies(head, feats, labels)) > 0.95


def test_ridge_head_handles_feature_offsets():
  """Catches a ridge fit that drops its centring (the bias): features sit far from zero."""
  feats, labels = _features(signal_scale=1.0, noise_scale=1.0)
  train = np.arange(len(labels)) % 2 == 0
  head = probe.fit_ridge(feats[train], labels[train], 3)
  assert min(_accuracies(head, feats, labels)) > 0.95
