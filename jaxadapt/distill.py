"""Knowledge distillation: teacher losses as pure functions, and teacher loading.

Teachers run inside the jitted train step on the student's (augmented)
batch, under `stop_gradient`, with parameters passed as a separate argument:
they are never differentiated, never updated and never written into the
student's checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from etils import epath

from jaxadapt import adapters, checkpoint, data, models, sharding, step as step_lib
from jaxadapt.errors import UserError

LOSSES = ('kl', 'fm', 'mse')


class DistillError(UserError):
  """A teacher that cannot teach this student; the message says why."""


# ------------------------------------------------------------------ losses


def teacher_probs(teacher_logits: Sequence[jax.Array], temperature: float) -> jax.Array:
  """Average of the teachers' softmax(z_t / T): several teachers agree in probability space."""
  probs = [jax.nn.softmax(z.astype(jnp.float32) / temperature, axis=-1) for z in teacher_logits]
  return sum(probs) / len(probs)


def soft_kl(student_logits: jax.Array, probs: jax.Array, temperature: float) -> jax.Array:
  """Per-example T^2 * KL(p_t || softmax(z_s / T)) (Hinton et al. 2015).

  The T^2 factor keeps the soft-target gradients on the scale of the hard-label
  ones as T changes, so `alpha` means the same thing at every temperature.
  """
  log_student = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
  log_teacher = jnp.log(jnp.clip(probs, 1e-30))
  kl = jnp.sum(jnp.where(probs > 0, probs * (log_teacher - log_student), 0.0), axis=-1)
  return temperature**2 * kl


def hinton_loss(
    student_logits: jax.Array,
    teacher_logits: Sequence[jax.Array],
    labels: jax.Array,
    temperature: float,
    alpha: float,
) -> jax.Array:
  """Per-example alpha * T^2 KL(p_t^T || p_s^T) + (1 - alpha) * CE(labels, p_s)."""
  soft = soft_kl(student_logits, teacher_probs(teacher_logits, temperature), temperature)
  hard = step_lib.cross_entropy(student_logits, labels)
  return alpha * soft + (1.0 - alpha) * hard


def function_matching_loss(
    student_logits: jax.Array, teacher_logits: Sequence[jax.Array], temperature: float = 1.0
) -> jax.Array:
  """Per-example KL(p_t || p_s) on a shared, strongly augmented view (Beyer et al. 2022).

  No hard labels: on mixed-up images the teacher's output is the only target.
  """
  return soft_kl(student_logits, teacher_probs(teacher_logits, temperature), temperature)


def logit_mse(student_logits: jax.Array, teacher_logits: Sequence[jax.Array]) -> jax.Array:
  """Per-example mean over classes of (z_s - mean_t z_t)^2 (Ba & Caruana 2014)."""
  target = sum(z.astype(jnp.float32) for z in teacher_logits) / len(teacher_logits)
  return jnp.mean((student_logits.astype(jnp.float32) - target) ** 2, axis=-1)


def mixup(images: jax.Array, rng: jax.Array, alpha: float = 1.0) -> jax.Array:
  """Mixes each image with its neighbour in the batch, one Beta(alpha, alpha) weight per example."""
  lam = jax.random.beta(rng, alpha, alpha, (images.shape[0],) + (1,) * (images.ndim - 1))
  return lam * images + (1.0 - lam) * jnp.roll(images, 1, axis=0)


# ---------------------------------------------------------------- teachers


@dataclasses.dataclass
class Teacher:
  name: str
  forward: step_lib.Forward
  params: Any
  num_params: int


def load_teachers(distill: ml_collections.ConfigDict, num_classes: int) -> list[Teacher]:
  """Loads each teacher from a jaxadapt workdir (its config.json names the model)."""
  teachers = []
  for workdir in distill.teachers:
    wd = epath.Path(workdir)
    config_path = wd / 'config.json'
    if not config_path.exists():
      raise DistillError(
          f"distill.teachers: no teacher run at '{workdir}' (config.json "
          f'missing); train it first, e.g. jaxadapt train --config '
          f'configs/fashion_mnist/scratch.py --workdir {workdir}'
      )
    cfg = json.loads(config_path.read_text())
    params = checkpoint.restore_params(wd)
    params = adapters.merge_all(params, cfg.get('adapt', {}))
    classes = params['head']['kernel'].shape[-1]
    if classes != num_classes:
      raise DistillError(
          f"teacher '{workdir}' predicts {classes} classes but the student's "
          f'dataset has {num_classes}; use a teacher trained on the same classes'
      )
    model = models.build_model(cfg['model']['name'], classes, **cfg['model']['kwargs'])
    teachers.append(
        Teacher(
            str(workdir),
            step_lib.make_forward(model),
            params,
            sum(x.size for x in jax.tree.leaves(params)),
        )
    )
  return teachers


def make_objective(distill: ml_collections.ConfigDict, teachers: list[Teacher]) -> Callable:
  """The student's loss as `objective(logits, batch, images, teacher_params) -> per-example`.

  `batch['teacher_logits']`, when present (cached logits), replaces running teachers.
  """
  if distill.loss not in LOSSES:
    raise DistillError(f"unknown distill.loss '{distill.loss}'; choose one of: {', '.join(LOSSES)}")

  def objective(logits, batch, images, teacher_params):
    if 'teacher_logits' in batch:
      t_logits = [batch['teacher_logits']]
    else:
      t_logits = [
          jax.lax.stop_gradient(t.forward(p, images)) for t, p in zip(teachers, teacher_params)
      ]
    if distill.loss == 'kl':
      return hinton_loss(logits, t_logits, batch['label'], distill.temperature, distill.alpha)
    if distill.loss == 'fm':
      return function_matching_loss(logits, t_logits, distill.temperature)
    return logit_mse(logits, t_logits)

  return objective


def cache_logits(
    teachers: list[Teacher], images_fn: Callable, arrays: dict, batch_size: int, mesh
) -> jax.Array:
  """Teacher logits for every training example (multiple teachers: log of mean probability at T=1)."""

  @jax.jit
  def logits(params, images):
    x = images_fn(images)
    if len(teachers) == 1:
      return teachers[0].forward(params[0], x)
    return jnp.log(teacher_probs([t.forward(p, x) for t, p in zip(teachers, params)], 1.0))

  out, indices = [], []
  params = [t.params for t in teachers]
  for batch in data.eval_batches(arrays, batch_size, jax.process_index(), jax.process_count()):
    real = batch['mask'] > 0
    indices.append(batch['index'][real])
    g = sharding.global_batch(batch, mesh)
    z = np.asarray(jax.device_get(logits(params, step_lib.model_input(g))))
    out.append(z[real])
  return data.in_input_order(out, indices, len(arrays['label'])).astype(np.float32)
