r"""Prompt tuning: learned tokens prepended to the patch (vit, visual prompt tuning) or
word (bert) tokens, after the class token; everything else but the head frozen.

  jaxadapt train --config configs/methods/prompt.py:model=vit,prompts=8,deep=True \
      --workdir runs/prompt

Arguments: model, dataset (fashion_mnist = classes 5-9 | digits | cifar10), checkpoint
(default runs/pretrain), shots, smoke, prompts (tokens per block, default 8), deep (fresh
prompts before every block, deep VPT; default: first block only). Sets
model.kwargs.num_prompts and prompt_depth.
"""

from jaxadapt import presets


def get_config(arg=None):
  config = presets.downstream('prompt', arg, default_model='vit', prompts=8, deep=False)
  config.optim.lr = 1e-2
  config.optim.weight_decay = 0.0
  return config
