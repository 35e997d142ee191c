"""Training learns: a tiny run's loss falls and its accuracy clearly beats chance.

The bug this catches is a trainer that runs but does not learn (updates negated, i.e.
gradient ascent; an optimizer that drops its updates; labels shuffled against images): every
other test checks shapes, files and determinism, none of which notice.
"""

import json
import pathlib

from jaxadapt import cli
from jaxadapt.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'
STEPS = 60
CHANCE = 0.1  # ten Fashion-MNIST classes


def test_tiny_run_loss_falls_and_accuracy_beats_chance(tmp_path, capsys):
  wd = tmp_path / 'learn'
  code = cli.main(
      [
          'train',
          '--quiet',
          '--config',
          SMOKE,
          '--workdir',
          str(wd),
          '--config.dataset.train_split=train[:1024]',
          f'--config.num_steps={STEPS}',
          '--config.log_every=10',
          f'--config.eval_every={STEPS}',
          '--config.ckpt_every=0',
          '--config.optim.lr=3e-3',
      ]
  )
  assert code == 0, capsys.readouterr().err
  losses = [r['train/loss'] for r in read_metrics(wd) if 'train/loss' in r]
  assert len(losses) == STEPS // 10
  # Gradient ascent drives the loss up from ln(10) = 2.30; learning takes it well below.
  assert losses[-1] < 0.6 * losses[0], losses
  summary = json.loads((wd / 'summary.json').read_text())
  assert summary['val/accuracy'] > 4 * CHANCE, summary
  assert summary['test/accuracy'] > 4 * CHANCE, summary
