"""Convergence of a run from its val curve (jaxadapt/bench/convergence.py)."""

import pytest

from jaxadapt.bench import convergence


def test_val_curve_keeps_only_evaluations():
  metrics = [
      {'step': 2, 'train/loss': 1.0},
      {'step': 2, 'val/accuracy': 0.5, 'test/accuracy': 0.4},
      {'step': 4, 'val/accuracy': 0.7},
  ]
  assert convergence.val_curve(metrics) == [[2, 0.5], [4, 0.7]]


@pytest.mark.parametrize(
    'curve, rising',
    [
        ([[20, 0.5], [40, 0.6], [60, 0.7], [80, 0.8], [100, 0.9]], True),  # still climbing
        ([[20, 0.5], [40, 0.8], [60, 0.85], [80, 0.9], [100, 0.902]], False),  # within tolerance
        ([[20, 0.5], [40, 0.8], [60, 0.85], [80, 0.9], [100, 0.85]], False),  # fell: not rising
        ([[100, 0.9]], None),  # one eval at the end: cannot tell
        ([], None),
    ],
)
def test_still_rising_compares_the_end_with_four_fifths(curve, rising):
  assert convergence.still_rising(curve, 100) is rising
