"""End to end through the CLI: a tiny run, resume, determinism, and the error cases."""

import json
import pathlib

import pytest

from jaxadapt import cli
from jaxadapt.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'


def run(capsys, *args):
  code = cli.main(['train', '--quiet', *args])
  out = capsys.readouterr()
  return code, out.out, out.err


def test_train_writes_outputs_and_resumes(tmp_path, capsys):
  wd = tmp_path / 'run'
  code, _, err = run(capsys, '--config', SMOKE, '--workdir', str(wd))
  assert code == 0, err
  records = read_metrics(wd)
  assert [r['step'] for r in records if 'train/loss' in r] == [2, 4, 6]
  assert any('test/accuracy' in r and 'val/accuracy' in r for r in records)
  assert json.loads((wd / 'config.json').read_text())['num_steps'] == 6
  assert sorted(p.name for p in (wd / 'checkpoints').iterdir()) == ['3', '6']
  assert 'TOTAL' in (wd / 'params.txt').read_text()

  # Same command with more steps resumes at 6 instead of starting over.
  code, _, err = run(capsys, '--config', SMOKE, '--workdir', str(wd), '--config.num_steps=8')
  assert code == 0, err
  steps = [r['step'] for r in read_metrics(wd) if 'train/loss' in r]
  assert steps == [2, 4, 6, 8]


def test_relative_workdir(tmp_path, capsys, monkeypatch):
  monkeypatch.chdir(tmp_path)
  code, _, err = run(capsys, '--config', SMOKE, '--workdir', 'runs/rel')
  assert code == 0, err
  assert (tmp_path / 'runs/rel/checkpoints/6').exists()


def test_same_seed_same_metrics_different_seed_differs(tmp_path, capsys):
  def losses(name, seed):
    assert (
        run(capsys, '--config', SMOKE, '--workdir', str(tmp_path / name), f'--config.seed={seed}')[
            0
        ]
        == 0
    )
    return [r['train/loss'] for r in read_metrics(tmp_path / name) if 'train/loss' in r]

  a, b, c = losses('a', 0), losses('b', 0), losses('c', 1)
  assert a == b
  assert a != c


@pytest.mark.parametrize(
    'args, message',
    [
        (['--config.dataset.source_dir=/nonexistent'], 'apt-get install dataset-fashion-mnist'),
        (['--config.model.name=resnte'], "unknown model 'resnte'"),
        (['--config.dataset.name=fashon_mnist'], "unknown dataset 'fashon_mnist'"),
        (['--config.optim.lrr=0.1'], 'did you mean optim.lr'),
        (['--config.batch_size=60'], 'batch_size=60 is not divisible by the 8 devices'),
    ],
)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, capsys, args, message):
  wd = tmp_path / 'run'
  code, _, err = run(capsys, '--config', SMOKE, '--workdir', str(wd), *args)
  assert code == 2
  assert err.startswith('jaxadapt: error:') and message in err, err
  assert len(err.strip().splitlines()) == 1
  assert not wd.exists()


def test_unwritable_workdir(tmp_path, capsys):
  blocker = tmp_path / 'file'
  blocker.write_text('x')
  code, _, err = run(capsys, '--config', SMOKE, '--workdir', str(blocker / 'run'))
  assert code == 2 and 'cannot write to workdir' in err, err


def test_mnist1d_sequence_run(tmp_path, mnist1d_data_dir):
  wd = tmp_path / 'run'
  code = cli.main(
      [
          'train',
          '--quiet',
          '--config',
          str(ROOT / 'configs/mnist1d/train.py') + ':model=cnn1d,shuffle,smoke',
          '--workdir',
          str(wd),
          f'--config.dataset.data_dir={mnist1d_data_dir}',
      ]
  )
  assert code == 0
  records = read_metrics(wd)
  assert [r['step'] for r in records if 'train/loss' in r] == [2, 4, 6]
  final = [r for r in records if 'test/accuracy' in r][-1]
  assert final['step'] == 6 and 0.0 <= final['test/accuracy'] <= 1.0
  assert 'conv3/kernel' in (wd / 'params.txt').read_text()
