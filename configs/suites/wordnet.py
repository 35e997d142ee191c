r"""The comparison on text: all-MiniLM-L6-v2 adapted to WordNet supersenses, every method.

  jaxadapt bench --suite configs/suites/wordnet.py --out results/wordnet          # full
  jaxadapt bench --suite configs/suites/wordnet.py --out results/wordnet --quick  # 8 per class
  jaxadapt report results/wordnet                                               # rebuild report

One task, `supersense`: from a noun synset's gloss, predict its supersense (26 unbalanced
classes; configs/text/wordnet.py). The pretrained model is all-MiniLM-L6-v2 (22.7M
parameters, `hf:all-MiniLM-L6-v2`), so there is no upstream run. Methods: scratch (the same
architecture, randomly initialised), linear_probe_fast (one backbone pass, softmax head by
L-BFGS, penalty chosen on validation), partial_ft (last 2 of 6 blocks), full_ft, lora (rank
8), qlora (the same LoRA over NF4-stored frozen kernels), bitfit, dora (rank 8), ia3, prompt
(8 tokens before the first block), and a small bert (2 blocks, width 128) trained alone or
distilled from the full_ft run of the same cell. The report adds macro F1 (mean per-class
F1) beside accuracy.

Budget, sized for the 2-core CPU (quick <= 6 min, full <= 90 min; `notes` below say it in
the report): glosses cut to 32 tokens (7% are longer), validation and test subsets instead of
the 8k-gloss splits, and every training run gets the same 30 steps of 16 glosses whatever
its data size, so the larger sizes are capped: at 128 and 512 per class a fine-tuned
MiniLM sees under one epoch. Measured: the full suite in 43 min 34 s as two shards side by
side on the 2-core CPU (README, Text section). Arguments: quick (8 per class, one seed);
tiny (a smoke bert pretrained for a few steps stands in for MiniLM, a couple of steps per
run: every code path in seconds, for tests).
"""

import ml_collections

from jaxadapt import config as config_lib

TEXT = 'configs/text/wordnet.py'
# The best big model trained on the same data: the full_ft run of the student's cell.
TEACHER = "distill.teachers=('{run:{task}/full_ft/{size}/{seed}}',)"
MAX_LENGTH = 32  # tokens per gloss (median 15; 7% of training glosses are longer)


def get_suite(arg=None):
  arg = config_lib.parse_arg(arg, tiny=False, quick=False)
  s = ml_collections.ConfigDict()
  s.report = 'adaptation'
  s.macro_metric = 'macro_f1'  # the report's second table: classes are very unbalanced
  if arg.tiny:  # a smoke bert stands in for MiniLM: every method's code path in seconds
    source = ',smoke,checkpoint={run:upstream}'
    s.common = ('eval_batch_size=64', 'dataset.max_length=16')  # two eval widths to compile
    s.runs = [
        dict(
            name='upstream',
            config=f'{TEXT}:method=scratch,smoke,steps=4',
            tags=dict(task='upstream', method='pretrain'),
        )
    ]
    smoke = ',smoke'
  else:
    source, smoke = '', ''
    s.common = (f'dataset.max_length={MAX_LENGTH}',)
    s.runs = []
  # Validation picks the probe's penalty and shows convergence; test is the reported number.
  val, test = (200, 400) if arg.quick else (300, 1000)
  tasks = [
      dict(
          name='supersense',
          overrides=()
          if arg.tiny
          else (f'dataset.val_split=validation[:{val}]', f'dataset.test_split=test[:{test}]'),
      )
  ]
  text = lambda args: f'{TEXT}:{args}'
  methods = [
      dict(name='scratch', config=text(f'method=scratch{smoke}')),
      dict(name='linear_probe_fast', config=text(f'method=linear_probe,fast=softmax{source}')),
      dict(name='partial_ft', config=text(f'method=partial_ft,k={1 if arg.tiny else 2}{source}')),
      dict(name='full_ft', config=text(f'method=full_ft{source}')),
      dict(name='lora', config=text(f'method=lora,rank=8{source}')),
      dict(
          name='qlora',
          config=text(f'method=lora,rank=8{source}'),
          overrides=('adapt.frozen_dtype=nf4',),  # QLoRA: frozen kernels stored as NF4
      ),
      dict(name='bitfit', config=text(f'method=bitfit{source}')),
      dict(name='dora', config=text(f'method=dora,rank=8{source}')),
      dict(name='ia3', config=text(f'method=ia3{source}')),
      dict(name='prompt', config=text(f'method=prompt{source}')),
      dict(name='student_alone', config=text(f'method=scratch,model=small{smoke}')),
      dict(name='distill', config=text(f'method=distill{smoke}'), overrides=(TEACHER,)),
  ]
  if arg.tiny:  # every code path, not every method (the upstream run is scratch's path)
    drop = ('scratch', 'partial_ft', 'bitfit', 'student_alone', 'qlora', 'dora', 'ia3', 'prompt')
    methods = [m for m in methods if m['name'] not in drop]
    sizes, seeds = ((2,), (0,)) if arg.quick else ((2, 4), (0,))
    steps = dict(epochs=1.0, min=2, max=2, evals=1)
    batch_size = 16
  else:  # quick: the full suite's first cells (8 per class, seed 0) on smaller eval subsets
    sizes, seeds = ((8,), (0,)) if arg.quick else ((8, 128, 512), (0, 1, 2))
    # One budget for every size, set by the CPU (see the module docstring): 30 steps of 16
    # glosses, so 128 and 512 per class (2.8k and 7.7k glosses) get under one epoch.
    steps = dict(epochs=20.0, min=30, max=30, evals=2)
    batch_size = 16
  if arg.tiny:
    s.notes = ['Tiny variant: a smoke bert pretrained for 4 steps stands in for MiniLM.']
  else:
    s.notes = [
        'Pretrained model: all-MiniLM-L6-v2 (`hf:all-MiniLM-L6-v2`, 22.7M parameters); no '
        'upstream run. Student: bert, 2 blocks of width 128.',
        f'Capped for a 2-core CPU: glosses cut to {MAX_LENGTH} tokens; validation = the first '
        f'{val} and test = the first {test} glosses of their (hash-shuffled) splits; '
        f'{_steps_text(steps)} of batch {batch_size} per run whatever the data size (so 128 '
        f"and 512 per class get under one epoch), evaluated {steps['evals']} times.",
    ]
  s.matrix = dict(
      tasks=tasks,
      methods=methods,
      sizes=sizes,  # examples per class (rare classes keep what they have); 0 = all
      seeds=seeds,
      batch_size=batch_size,
      steps=steps,
  )
  return s


def _steps_text(steps: dict) -> str:
  if steps['min'] == steps['max']:
    return f"{steps['max']} steps"
  return f"{steps['min']} to {steps['max']} steps"
