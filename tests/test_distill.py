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
      _train('--config', f'{CONFIGS}/distill.py:smoke,teacher={teacher}', '--workdir', str(wd)) == 0
  )
  after = param_tree.flatten(checkpoint.restore_params(teacher))
  assert all(np.array_equal(before[k], after[k]) for k in before)
  student = param_tree.flatten(checkpoint.restore_params(wd))
  # The student is its own small model: its checkpoint holds its leaves only.
  assert student['dense/kernel'].shape != before['dense/kernel'].shape
  assert sum(v.size for v in student.values()) < sum(v.size for v in before.values())
  assert set(student) == {k for k in before}  # same architecture family, no extra leaves
  assert any('test/accuracy' in r for r in read_metrics(wd))


def test_cached_logits_run(teacher, tmp_path):
  assert (
      _train(
          '--config',
          f'{CONFIGS}/distill.py:smoke,teacher={teacher}',
          '--workdir',
          str(tmp_path / 's'),
          '--config.distill.cache_logits=True',
          '--config.preprocess.train=scale|normalize(0.286,0.353)',
      )
      == 0
  )


@pytest.mark.parametrize(
    'extra, message',
    [
        ([], 'needs un-augmented data'),
        (['--config.preprocess.train=scale', '--config.distill.loss=fm'], "'fm' mixes images"),
    ],
)
def test_cached_logits_refuse_augmentation(teacher, tmp_path, capsys, extra, message):
  code = _train(
      '--config',
      f'{CONFIGS}/distill.py:smoke,teacher={teacher}',
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
      '--config', f'{CONFIGS}/distill.py:smoke,teacher={upstream}', '--workdir', str(tmp_path / 's')
  )
  err = capsys.readouterr().err
  assert code == 2 and 'predicts 5 classes' in err and 'has 10' in err
  assert not (tmp_path / 's').exists()


def test_missing_teacher_is_an_error(tmp_path, capsys):
  code = _train(
      '--config',
      f'{CONFIGS}/distill.py:smoke,teacher={tmp_path}/nope',
      '--workdir',
      str(tmp_path / 's'),
  )
  err = capsys.readouterr().err
  assert code == 2 and 'no teacher run at' in err
