r"""IA3: learned vectors rescale attention keys and values and the MLP's intermediate
activation (jaxadapt/ia3.py); everything else but the head frozen. vit and bert only.

  jaxadapt train --config configs/methods/ia3.py:model=vit --workdir runs/ia3

Arguments: model, dataset (fashion_mnist = classes 5-9 | digits | cifar10), checkpoint
(default runs/pretrain), shots, smoke. Targets: the model's registry entry (`ia3_rules`);
override with --config.adapt.ia3.rules (kernel regex -> 'out' | 'in').
"""

from jaxadapt import presets


def get_config(arg=None):
  config = presets.downstream('ia3', arg, default_model='vit')
  config.optim.lr = 3e-2  # the vectors start at one and need larger steps than LoRA's
  config.optim.weight_decay = 0.0
  return config
