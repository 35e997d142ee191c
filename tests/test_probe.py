"""The cached-feature probe's head fits, on features far from zero mean and unit scale."""

import numpy as np
import pytest

from jaxadapt import probe


def _features(n_per_class=120, dim=6, seed=0):
  """Three separable classes, with per-feature offsets and scales like real activations."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(0, 3, (3, dim))
  labels = np.repeat(np.arange(3), n_per_class)
  feats = centres[labels] + rng.normal(0, 0.5, (len(labels), dim))
  offset, scale = rng.uniform(50, 100, dim), rng.uniform(0.01, 20, dim)
  return (feats * scale + offset).astype(np.float32), labels


@pytest.mark.parametrize('kind', probe.KINDS)
def test_head_works_on_raw_features(kind):
  """Catches a softmax fit that forgets to fold its feature standardisation back into the head."""
  feats, labels = _features()
  train, held_out = np.arange(len(labels)) % 2 == 0, np.arange(len(labels)) % 2 == 1
  head = probe.fit_head(kind, feats[train], labels[train], 3, epochs=30)
  assert probe.score(feats[train], labels[train], head)['accuracy'] > 0.95
  assert probe.score(feats[held_out], labels[held_out], head)['accuracy'] > 0.95
