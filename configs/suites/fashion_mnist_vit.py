r"""PEFT methods side by side on a ViT: LoRA, DoRA, IA3, visual prompts, BitFit, full fine-tuning.

  jaxadapt bench --suite configs/suites/fashion_mnist_vit.py --out results/vit          # full
  jaxadapt bench --suite configs/suites/fashion_mnist_vit.py --out results/vit --quick  # 1 seed
  jaxadapt report results/vit                                                         # rebuild

The image counterpart of the text suite's PEFT rows, in the VTAB-1k regime (10 and 100
examples per class) where the published ordering on ViT-B/16 is LoRA > VPT-deep > full
fine-tuning. Upstream: a ViT (patch 4 on 28x28, width 128, 4 blocks, 4 heads, ~0.8M
parameters; the `vit` preset) pretrained from scratch for 2 epochs on Fashion-MNIST classes
0-4. Downstream: classes 5-9 (the image suite's `related` task). Methods: scratch (the same
ViT, randomly initialised), linear_probe_fast, full_ft, lora and dora (rank 8 on attention
query/value and the MLP), bitfit, ia3, prompt (8 tokens before the first block: shallow
VPT) and prompt_deep (8 fresh tokens before every block: deep VPT). Budget: the image
suite's rule (20 epochs of the subset, at least 40 steps, batch 64), evaluated 5 times; each
method at its config's defaults (a one-point grid, which the report says). Arguments: quick
(seed 0 only); tiny (a smoke ViT and a couple of steps per run, for tests).
"""

import ml_collections

from jaxadapt import config as config_lib

FM = 'configs/fashion_mnist'
METHODS = 'configs/methods'
PRETRAINED = 'init.checkpoint={run:upstream}'


def get_suite(arg=None):
  arg = config_lib.parse_arg(arg, tiny=False, quick=False)
  s = ml_collections.ConfigDict()
  s.report = 'adaptation'
  s.common = ('eval_batch_size=200',)
  model = 'model=vit' + (',smoke' if arg.tiny else '')
  if arg.tiny:
    s.common += ('dataset.test_split=test[:400]',)
    upstream = ('num_epochs=0.0', 'num_steps=4')
  else:
    upstream = ('num_epochs=2.0', 'batch_size=64')
  s.runs = [
      dict(
          name='upstream',
          config=f'{FM}/pretrain.py:{model}',
          overrides=upstream,
          tags=dict(task='upstream', method='pretrain'),
      )
  ]
  adapt = lambda name, method, args='': dict(
      name=name,
      config=f'{METHODS}/{method}.py:{model}' + (f',{args}' if args else ''),
      overrides=(PRETRAINED,),
  )
  methods = [
      dict(name='scratch', config=f'{FM}/scratch.py:{model}'),
      adapt('linear_probe_fast', 'linear_probe', 'fast=softmax'),
      adapt('full_ft', 'full_ft'),
      adapt('lora', 'lora', 'rank=8'),
      adapt('dora', 'dora', 'rank=8'),
      adapt('bitfit', 'bitfit'),
      adapt('ia3', 'ia3'),
      adapt('prompt', 'prompt'),
      adapt('prompt_deep', 'prompt', 'deep=True'),
  ]
  if arg.tiny:
    sizes, seeds = (10,), (0,)
    steps = dict(epochs=1.0, min=2, max=2, evals=1)
  else:
    sizes, seeds = (10, 100), ((0,) if arg.quick else (0, 1, 2))
    steps = dict(epochs=20.0, min=40, max=900, evals=5)
  s.notes = [
      'Every method at its config defaults (a one-point grid): no learning-rate selection.',
  ]
  s.matrix = dict(
      tasks=[dict(name='related', overrides=('dataset.classes=(5, 6, 7, 8, 9)',))],
      methods=methods,
      sizes=sizes,  # examples per class
      seeds=seeds,
      batch_size=64,
      steps=steps,
  )
  return s
