"""Distillation: loss math by hand, teacher untouched, student checkpoint clean, errors."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxadapt import checkpoint, cli, distill, param_tree, step
from jaxadapt.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs/fashion_mnist'
METHODS = ROOT / 'configs/methods'


def test_kl_is_zero_for_equal_logits_and_positive_otherwise():
  z = jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
  np.testing.assert_allclose(
      distill.soft_kl(z, distill.teacher_probs([z], 4.0), 4.0), 0.0, atol=1e-6
  )
  other = jnp.array([[0.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
  kl = distill.soft_kl(other, distill.teacher_probs([z], 2.0), 2.0)
  assert np.all(np.asarray(kl) > 0)


def test_kl_matches_hand_computation_with_t_squared_scale():
  s, t, temp = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), 2.0
  p = np.exp(t / temp) / np.exp(t / temp).sum()
  q = np.exp(s / temp) / np.exp(s / temp).sum()
  expected = temp**2 * np.sum(p * np.log(p / q))
  got = distill.soft_kl(jnp.asarray(s), distill.teacher_probs([jnp.asarray(t)], temp), temp)
  np.testing.assert_allclose(got, [expected], rtol=1e-5)


def test_kl_direction_is_teacher_to_student():
  """Catches KL(p_s || p_t) in place of KL(p_t || p_s): asymmetric logits tell them apart."""
  s, t, temp = np.array([[2.0, 0.0, -1.0]]), np.array([[0.0, 3.0, 0.5]]), 2.0
  softmax = lambda z: np.exp(z / temp) / np.exp(z / temp).sum()
  p, q = softmax(t), softmax(s)
  forward, reverse = temp**2 * np.sum(p * np.log(p / q)), temp**2 * np.sum(q * np.log(q / p))
  assert abs(forward - reverse) > 0.1  # the case really is asymmetric
  got = distill.soft_kl(jnp.asarray(s), distill.teacher_probs([jnp.asarray(t)], temp), temp)
  np.testing.assert_allclose(got, [forward], rtol=1e-5)


def test_alpha_zero_is_cross_entropy_and_alpha_one_is_soft_only():
  s = jnp.array([[1.0, 2.0, 0.0]])
  t = jnp.array([[3.0, 0.0, 0.0]])
  y = jnp.array([1])
  np.testing.assert_allclose(distill.hinton_loss(s, [t], y, 4.0, 0.0), step.cross_entropy(s, y))
  np.testing.assert_allclose(
      distill.hinton_loss(s, [t], y, 4.0, 1.0),
      distill.soft_kl(s, distill.teacher_probs([t], 4.0), 4.0),
  )


def test_teachers_average_in_probability_space_and_mse():
  a, b = jnp.array([[5.0, 0.0]]), jnp.array([[0.0, 5.0]])
  np.testing.assert_allclose(distill.teacher_probs([a, b], 1.0), [[0.5, 0.5]], atol=1e-6)
  np.testing.assert_allclose(distill.logit_mse(a, [a]), [0.0])
  np.testing.assert_allclose(distill.logit_mse(jnp.zeros((1, 2)), [a, b]), [6.25])


def test_mixup_keeps_shape_and_mixes_neighbours():
  x = jnp.stack([jnp.zeros((2, 2, 1)), jnp.ones((2, 2, 1))])
  m = distill.mixup(x, jax.random.key(0))
  assert m.shape == x.shape and float(m.min()) >= 0 and float(m.max()) <= 1


def test_mixup_really_mixes_each_image_with_the_previous_one():
  """Catches a mixup that returns its input (or a weight of 0/1): lam*x_i + (1-lam)*x_{i-1}."""
  x = jnp.arange(8.0)[:, None, None, None] * 10.0 * jnp.ones((8, 3, 3, 1))
  m = np.asarray(distill.mixup(x, jax.random.key(0)))
  prev = np.roll(np.asarray(x), 1, axis=0)
  lam = (m - prev) / (np.asarray(x) - prev)  # per pixel; one weight per example
  assert np.allclose(lam, lam[:, :1, :1, :1], atol=1e-5)
  lam = lam[:, 0, 0, 0]
  assert np.all((lam >= 0) & (lam <= 1))
  assert np.sum((lam > 0.05) & (lam < 0.95)) >= 4, lam  # Beta(1, 1): mostly far from 0 and 1


def _train(*args):
  return cli.main(['train', '--quiet', *args])


@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
  wd = tmp_path_factory.mktemp('teacher') / 'run'
  assert _train('--config', f'{CONFIGS}/scratch.py:smoke', '--workdir', str(wd)) == 0
  return wd


def test_distill_run_leaves_teacher_untouched_and_student_clean(teacher, tmp_path):
  before = param_tree.flatten(checkpoint.restore_params(teacher))
  wd = tmp_path / 'student'
  assert (
      _train('--config', f'{METHODS}/distill.py:smoke,teacher={teacher}', '--workdir', str(wd)) == 0
  )
  after = param_tree.flatten(checkpoint.restore_params(teacher))
  assert all(np.array_equal(before[k], after[k]) for k in before)
  student = param_tree.flatten(checkpoint.restore_params(wd))
  # The student is its own small model: its checkpoint holds its leaves only.
  assert student['dense/kernel'].shape != before['dense/kernel'].shape
  assert sum(v.size for v in student.values()) < sum(v.size for v in before.values())
  assert set(student) == {k for k in before}  # same architecture family, no extra leaves
  assert any('test/accuracy' in r for r in read_metrics(wd))


def _train_losses(workdir) -> list[float]:
  return [r['train/loss'] for r in read_metrics(workdir) if 'train/loss' in r]


def test_distillation_changes_the_students_training(teacher, tmp_path):
  """Catches distillation silently off (objective=None): same seed and data as alone."""
  student, alone = tmp_path / 'student', tmp_path / 'alone'
  assert (
      _train('--config', f'{METHODS}/distill.py:smoke,teacher={teacher}', '--workdir', str(student))
      == 0
  )
  assert _train('--config', f'{METHODS}/distill.py:smoke,alone', '--workdir', str(alone)) == 0
  a, b = _train_losses(student), _train_losses(alone)
  assert len(a) == len(b) == 3
  # alpha=0.9 of the loss is T^2 KL to the teacher: far from the alone run's cross-entropy.
  assert all(abs(x - y) > 1e-3 for x, y in zip(a, b)), (a, b)


def test_cached_logits_train_like_live_teachers(teacher, tmp_path):
  """Catches wrong cached teacher logits (e.g. all zero): un-augmented data, same losses."""
  runs = {}
  for cached in (False, True):
    wd = tmp_path / f'cached_{cached}'
    code = _train(
        '--config',
        f'{METHODS}/distill.py:smoke,teacher={teacher}',
        '--workdir',
        str(wd),
        f'--config.distill.cache_logits={cached}',
        '--config.preprocess.train=scale|normalize(0.286,0.353)',
    )
    assert code == 0
    runs[cached] = _train_losses(wd)
  np.testing.assert_allclose(runs[True], runs[False], rtol=1e-4)


@pytest.mark.parametrize(
    'extra, message',
    [
        ([], 'needs un-augmented data'),
        (['--config.preprocess.train=scale', '--config.distill.loss=fm'], "'fm' mixes images"),
        (['--config.preprocess.train=scale', '--config.dataset.stream=True'], 'split in memory'),
    ],
)
def test_cached_logits_refuse_augmentation(teacher, tmp_path, capsys, extra, message):
  code = _train(
      '--config',
      f'{METHODS}/distill.py:smoke,teacher={teacher}',
      '--workdir',
      str(tmp_path / 's'),
      '--config.distill.cache_logits=True',
      *extra,
  )
  assert code == 2 and message in capsys.readouterr().err


def test_teacher_with_other_class_count_is_an_error(tmp_path, capsys):
  upstream = tmp_path / 'upstream'
  assert _train('--config', f'{CONFIGS}/pretrain.py:smoke', '--workdir', str(upstream)) == 0
  capsys.readouterr()
  code = _train(
      '--config', f'{METHODS}/distill.py:smoke,teacher={upstream}', '--workdir', str(tmp_path / 's')
  )
  err = capsys.readouterr().err
  assert code == 2 and 'predicts 5 classes' in err and 'has 10' in err
  assert not (tmp_path / 's').exists()


def test_missing_teacher_is_an_error(tmp_path, capsys):
  code = _train(
      '--config',
      f'{METHODS}/distill.py:smoke,teacher={tmp_path}/nope',
      '--workdir',
      str(tmp_path / 's'),
  )
  err = capsys.readouterr().err
  assert code == 2 and 'no teacher run at' in err
