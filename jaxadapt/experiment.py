"""Model, initial parameters, rules and optimizer of a run: everything but data and loop.

`build` is shared by the trainer, the fast linear probe and `jaxadapt perf`, so all three
see the same parameters, the same frozen set and the same optimizer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxadapt import data, dora, ia3, lora, models, optim, param_tree, precision, pretrained
from jaxadapt import sharding
from jaxadapt import step as step_lib
from jaxadapt.config import ConfigError


@dataclasses.dataclass
class Experiment:
  """The model as a function, its parameters and how each parameter is trained."""

  forward: step_lib.Forward
  params: Any
  trainable: dict[str, bool]
  groups: dict[str, dict[str, Any]]  # path -> {'label', 'lr_mult', 'wd_mult'}
  tx: Any
  schedule: Any
  preprocess_train: Callable
  preprocess_eval: Callable
  table: str  # the per-parameter table printed before training and saved as params.txt
  specs: dict[str, Any]  # PartitionSpec per parameter path
  shapes: dict[str, tuple[int, ...]]

  def shardings(self, tree, mesh):
    """Shardings for params or a train state: optimizer state follows its parameter."""
    return sharding.tree_shardings(tree, self.specs, self.shapes, mesh)

  def param_records(self) -> dict[str, dict[str, Any]]:
    """`params.json`: shape, label, multipliers and trainable flag of every parameter."""
    return {
        p: {'shape': list(np.shape(v)), **self.groups[p], 'trainable': self.trainable[p]}
        for p, v in param_tree.flatten(self.params).items()
    }


def build(
    config: ml_collections.ConfigDict, mesh, info: dict, total_steps: int, log=lambda *a: None
) -> Experiment:
  """Model, initial parameters (fresh > pretrained > LoRA > adapters), rules and optimizer."""
  check_accumulate(config.batch_size, config.optim.accumulate, mesh)
  model = models.build_model(
      config.model.name, info['num_classes'], **config.model.kwargs.to_dict()
  )
  if 'pad_id' in info and getattr(model, 'pad_id', info['pad_id']) != info['pad_id']:
    # The model masks `ids == pad_id`: another id would attend to padding, silently.
    raise models.ModelError(
        f"dataset.tokenizer pads with id {info['pad_id']} but the model masks id "
        f"{model.pad_id}: set --config.model.kwargs.pad_id={info['pad_id']}"
    )
  compute_dtype = precision.parse(config.model.dtype, 'model.dtype')
  precision.check_frozen_storage(config.adapt.frozen_dtype)
  forward = step_lib.make_forward(
      model,
      config.adapt.lora.alpha,
      compute_dtype,
      config.adapt.lora.form,
      dora_alpha=config.adapt.dora.alpha,
  )
  preprocess_train = data.make_preprocess(config.preprocess.train)
  preprocess_eval = data.make_preprocess(config.preprocess.eval)
  input_shape = data.output_shape(config.preprocess.train, info['image_shape'])
  init_fn = lambda key: model.init(key, jnp.zeros((1, *input_shape)))['params']
  key = jax.random.key(config.seed)
  # Shapes first (no allocation), so large models are created already sharded.
  init_shardings, _, _ = sharding.plan(jax.eval_shape(init_fn, key), config.mesh.param_rules, mesh)
  params = jax.jit(init_fn, out_shardings=init_shardings)(key)
  if config.init.checkpoint:
    params, report = pretrained.load_into(
        params, config.init.checkpoint, config.init.dont_load, config.init.name_map
    )
    log(
        f"init: {len(report['loaded'])} tensors from {config.init.checkpoint}, "
        f"{len(report['kept'])} kept fresh ({', '.join(report['kept']) or 'none'}), "
        f"{len(report['unused'])} checkpoint tensors unused"
    )
  if config.adapt.lora.rules:
    params = lora.add_adapters(params, config.adapt.lora.rules, jax.random.key(config.seed + 1))
  if config.adapt.dora.rules:
    params = dora.add_adapters(params, config.adapt.dora.rules, jax.random.key(config.seed + 2))
  if config.adapt.ia3.rules:
    params = ia3.add_scales(params, config.adapt.ia3.rules)
  if config.init.adapters:
    params = pretrained.overlay(params, config.init.adapters)
    log(f'init: adapters and head from {config.init.adapters}')

  params, specs, shapes = sharding.shard_params(params, config.mesh.param_rules, mesh)
  flat = param_tree.flatten(params)
  trainable = optim.trainable_mask(config.adapt.trainable, list(flat))
  if config.adapt.frozen_dtype != 'float32':
    flat = precision.store_frozen(flat, trainable, config.adapt.frozen_dtype)
    params = param_tree.unflatten(flat)
  groups = optim.param_groups(config.optim, flat, trainable)
  table = param_tree.summary_table(
      flat,
      {
          'label': {p: g['label'] for p, g in groups.items()},
          'lr_mult': {p: g['lr_mult'] for p, g in groups.items()},
      },
      trainable,
  )
  return Experiment(
      forward=forward,
      params=params,
      trainable=trainable,
      groups=groups,
      tx=optim.make_optimizer(config.optim, groups, total_steps),
      schedule=optim.schedule(config.optim, total_steps),
      preprocess_train=preprocess_train,
      preprocess_eval=preprocess_eval,
      table=table,
      specs=specs,
      shapes=shapes,
  )


def check_accumulate(batch_size: int, accumulate: int, mesh) -> None:
  """`optim.accumulate` must split the batch into equal micro-batches that the devices split."""
  if accumulate < 1 or batch_size % accumulate:
    raise ConfigError(
        f'optim.accumulate={accumulate} must be >= 1 and divide batch_size={batch_size}; '
        f'e.g. optim.accumulate=2 with batch_size={2 * max(batch_size // 2, 1)}'
    )
  sharding.check_batch_size(batch_size // accumulate, mesh, 'batch_size / optim.accumulate')
