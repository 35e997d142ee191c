r"""Distillation: the reference CNN (runs/scratch, ~824k params) teaches a ~30x smaller CNN.

  jaxadapt train --config configs/fashion_mnist/scratch.py --workdir runs/scratch   # teacher
  jaxadapt train --config configs/fashion_mnist/distill.py --workdir runs/distill
  jaxadapt train --config configs/fashion_mnist/distill.py:alone --workdir runs/student_alone

Arguments: teacher (workdir of the teacher run, default runs/scratch); alone
(the same student, same steps, no teacher: the baseline); loss = kl | fm | mse;
smoke. Teacher and student see the same preprocessed (augmented) batch.
"""

from jaxadapt import config as config_lib
from jaxadapt import presets


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, teacher='runs/scratch', alone=False, loss='kl', smoke=False)
  config = presets.fashion_mnist('cnn')
  config.model.kwargs.update(widths=(8, 16), dense=32, dropout=0.0)  # ~27k parameters
  config.num_epochs = 10.0
  config.adapt.method = 'student_alone' if arg.alone else 'distill'
  if not arg.alone:
    config.distill.teachers = (arg.teacher,)
    config.distill.loss = arg.loss
    config.distill.temperature = 4.0 if arg.loss == 'kl' else 1.0
    config.distill.alpha = 0.9
  if arg.smoke:
    presets.smoke(config, 'cnn')
    config.model.kwargs.update(widths=(2, 4), dense=8)  # still smaller than a smoke teacher
  return config
