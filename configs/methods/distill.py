r"""Distillation: the reference CNN (runs/scratch, ~824k params) teaches a ~30x smaller CNN.

  jaxadapt train --config configs/fashion_mnist/scratch.py --workdir runs/scratch   # teacher
  jaxadapt train --config configs/methods/distill.py --workdir runs/distill
  jaxadapt train --config configs/methods/distill.py:alone --workdir runs/student_alone

Arguments: teacher (workdir of the teacher run, default runs/scratch); dataset
(fashion_mnist | digits | cifar10: all its classes, the teacher's task); alone
(the same student, same steps, no teacher: the baseline); loss = kl | fm | mse;
shots (the student's transfer set: this many training images per class, 1,500
steps, as Hinton et al.'s reduced-transfer-set experiments; 0 = the whole train
split, 55,000 Fashion-MNIST images, for 10 epochs); smoke. Teacher and student see the same preprocessed
(augmented) batch.

  jaxadapt train --config configs/methods/distill.py:shots=200 --workdir runs/distill200
  jaxadapt train --config configs/methods/distill.py:shots=200,alone --workdir runs/alone200
"""

from jaxadapt import config as config_lib
from jaxadapt import presets


def get_config(arg=None):
  arg = config_lib.parse_arg(
      arg,
      teacher='runs/scratch',
      dataset='fashion_mnist',
      alone=False,
      loss='kl',
      shots=0,
      smoke=False,
  )
  config = presets.task_config(arg.dataset, 'cnn')
  config.model.kwargs.update(widths=(8, 16), dense=32, dropout=0.0)  # ~27k parameters
  config.num_epochs = 10.0
  if arg.shots:
    config.dataset.examples_per_class = arg.shots
    config.num_epochs, config.num_steps = 0.0, 1500
    config.eval_every, config.ckpt_every = 1500, 0
  config.adapt.method = 'student_alone' if arg.alone else 'distill'
  if not arg.alone:
    config.distill.teachers = (arg.teacher,)
    config.distill.loss = arg.loss
    config.distill.temperature = 4.0 if arg.loss == 'kl' else 1.0
    config.distill.alpha = 0.9
  if arg.smoke:
    presets.smoke(config)
    config.model.kwargs.update(widths=(2, 4), dense=8)  # still smaller than a smoke teacher
  return config
