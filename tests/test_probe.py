"""The cached-feature probe's head fits, on features far from zero mean and unit scale."""

import numpy as np
import pytest

from jaxadapt import probe


def _features(n_per_class=120, seed=0):
  """Three classes told apart by tiny-scale features, beside large-scale noise features.

  Real activations have per-feature offsets and scales; a head that is right only on
  standardised features puts its weight on the noise once applied to raw ones.
  """
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(3), n_per_class)
  signal = rng.normal(0, 3, (3, 3))[labels] + rng.normal(0, 0.5, (len(labels), 3))
  noise = rng.normal(0, 1, (len(labels), 3))
  feats = np.concatenate([signal * 0.01 + 5.0, noise * 100.0 + 50.0], axis=1)
  return feats.astype(np.float32), labels


@pytest.mark.parametrize('kind', probe.KINDS)
def test_head_works_on_raw_features(kind):
  """Catches a softmax fit that forgets to fold its feature standardisation back into the head."""
  feats, labels = _features()
  train, held_out = np.arange(len(labels)) % 2 == 0, np.arange(len(labels)) % 2 == 1
  head = probe.fit_head(kind, feats[train], labels[train], 3, epochs=30)
  assert probe.score(feats[train], labels[train], head)['accuracy'] > 0.95
  assert probe.score(feats[held_out], labels[held_out], head)['accuracy'] > 0.95
