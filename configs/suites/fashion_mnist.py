r"""The default comparison: scratch vs transfer vs fine-tune vs PEFT vs distillation, offline.

  jaxadapt bench --suite configs/suites/fashion_mnist.py --out results/          # full
  jaxadapt bench --suite configs/suites/fashion_mnist.py --out results/ --quick  # fewer sizes, 1 seed
  jaxadapt report results/                                                     # rebuild report

Upstream: a small CNN (~210k params) pretrained from scratch on Fashion-MNIST
classes 0-4. Downstream tasks:
  related   - Fashion-MNIST classes 5-9 (sandals, shirts, sneakers, bags, boots);
  unrelated - scikit-learn's 8x8 digits, resized to 28x28 (10 classes, 1,300 train, >= 109 per class).
Every method but scratch and the students starts from the upstream run's checkpoint
(`{run:upstream}`), and every method gets the same step budget for a data size. The
student (a ~8x smaller CNN) trains alone and taught by the full_ft run of the same task,
size and seed. Budgets: every method at a data size gets the same steps of batch 64 (20
epochs, clipped to [40, 900] steps: about 2 epochs of the 27.5k related images) and
evaluates 5 times, so the report marks cells still improving at the end. Tuning: each loop
method runs its learning rate at 1/3, 1 and 3 times its default, distillation its
temperature (1, 4) x alpha (0.5, 0.9), and the report keeps per (task, method, size) the
point with the best mean validation accuracy (the fast probe picks its penalty on val
itself). Arguments: quick (sizes 10 and all, one seed, each method at its defaults: a
one-point grid, and at most 300 steps); tiny (a couple of steps per run on a tiny model,
for tests).
"""

import ml_collections

from jaxadapt import config as config_lib

FM = 'configs/fashion_mnist'
METHODS = 'configs/methods'  # the method config files
PRETRAINED = 'init.checkpoint={run:upstream}'
# The best big model trained on the same data: the full_ft run of the student's cell.
TEACHER = "distill.teachers=('{run:{task}/full_ft/{size}/{seed}}',)"
FULL_FT_LR = 2e-3  # configs/methods/full_ft.py's default: the full suite's teacher runs at it
# In the full suite full_ft runs once per grid point: the teacher is the default-rate run.
GRID_TEACHER = (
    f"distill.teachers=('{{run:{{task}}/full_ft/{{size}}/{{seed}}/optim.lr={FULL_FT_LR}}}',)"
)


# The full suite's per-method grids (selection.py keeps the best point on validation): the
# learning rate at 1/3, 1 and 3 times each method config's default, distillation's T x alpha.
_LR = lambda default: {'optim.lr': [round(default / 3, 6), default, default * 3]}
GRIDS = {
    'scratch': _LR(2e-3),
    'linear_probe': _LR(3e-2),
    'partial_ft': _LR(2e-3),
    'full_ft': _LR(FULL_FT_LR),
    'lora': _LR(1e-2),
    'bitfit': _LR(1e-2),
    'student_alone': _LR(2e-3),
    'distill': {'distill.temperature': [1.0, 4.0], 'distill.alpha': [0.5, 0.9]},
}


def method_config(name: str, args: str = '') -> str:
  """`<METHODS>/<name>.py[:args]`: the one place that names a method's config file."""
  return f'{METHODS}/{name}.py' + (f':{args}' if args else '')


def get_suite(arg=None):
  arg = config_lib.parse_arg(arg, tiny=False, quick=False)
  s = ml_collections.ConfigDict()
  s.report = 'adaptation'
  model = ('model.name=cnn', 'model.kwargs.widths=(16, 32)', 'model.kwargs.dense=128')
  if arg.tiny:  # a couple of steps per run on a tiny model: every code path, in seconds
    model += ('model.kwargs.widths=(4, 8)', 'model.kwargs.dense=16')
    s.common = ('eval_batch_size=200', 'dataset.test_split=test[:400]')
    upstream = ('num_epochs=0.0', 'num_steps=4', 'dataset.train_split=train[:2000]')
  else:
    s.common = ('eval_batch_size=200',)
    upstream = ('num_epochs=2.0', 'batch_size=64')
  s.runs = [
      dict(
          name='upstream',
          config=f'{FM}/pretrain.py',
          overrides=model + upstream,
          tags=dict(task='upstream', method='pretrain'),
      )
  ]
  tasks = [
      dict(name='related', overrides=('dataset.classes=(5, 6, 7, 8, 9)',)),
      dict(
          name='unrelated',
          max_size=100,
          overrides=(
              'dataset.name=digits',
              'dataset.classes=()',
              'dataset.train_split=train[:1300]',
              'dataset.val_split=train[1300:]',
              'dataset.test_split=test',
              'preprocess.train=scale|resize(28,28)|normalize(0.286,0.353)',
              'preprocess.eval=scale|resize(28,28)|normalize(0.286,0.353)',
          ),
      ),
  ]
  methods = [
      dict(name='scratch', config=f'{FM}/scratch.py', overrides=model),
      dict(
          name='linear_probe', config=method_config('linear_probe'), overrides=model + (PRETRAINED,)
      ),
      dict(
          name='linear_probe_fast',
          config=method_config('linear_probe', 'fast=softmax'),
          overrides=model + (PRETRAINED,),
      ),
      dict(
          name='partial_ft',
          config=method_config('partial_ft', 'k=1'),
          overrides=model + (PRETRAINED,),
      ),
      dict(name='full_ft', config=method_config('full_ft'), overrides=model + (PRETRAINED,)),
      dict(name='lora', config=method_config('lora', 'rank=4'), overrides=model + (PRETRAINED,)),
      dict(name='bitfit', config=method_config('bitfit'), overrides=model + (PRETRAINED,)),
      dict(name='student_alone', config=method_config('distill', 'alone')),
      dict(name='distill', config=method_config('distill'), overrides=(TEACHER,)),
  ]
  if arg.tiny:  # the tiny suite exercises every code path, not every method
    methods = [m for m in methods if m['name'] not in ('linear_probe', 'partial_ft', 'bitfit')]
    sizes, seeds = ((10,), (0,)) if arg.quick else ((2, 10), (0,))
    steps = dict(epochs=1.0, min=2, max=2)
  elif arg.quick:
    sizes, seeds = (10, 0), (0,)
    steps = dict(epochs=20.0, min=40, max=300, evals=5)
  else:
    sizes, seeds = (1, 10, 100, 1000, 0), (0, 1, 2)
    # The budget rule (matrix.steps_for): 20 epochs of the subset clipped to [40, 900] steps.
    steps = dict(epochs=20.0, min=40, max=900, evals=5)
    methods = [dict(m, grid=GRIDS[m['name']]) if m['name'] in GRIDS else m for m in methods]
    methods = [dict(m, overrides=(GRID_TEACHER,)) if m['name'] == 'distill' else m for m in methods]
  s.matrix = dict(
      tasks=tasks,
      methods=methods,
      sizes=sizes,  # examples per class; 0 = all
      seeds=seeds,
      batch_size=64,
      steps=steps,
  )
  return s
