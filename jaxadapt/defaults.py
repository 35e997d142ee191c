"""The base config every experiment file starts from: every key, with defaults.

Config files call `base_config()` and change what they need; because the
returned config is locked after loading, every key a run may use must exist
here, which is also the reference list of knobs.
"""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = 'fashion_mnist'  # local: fashion_mnist, digits; or a TFDS catalog name
  c.dataset.data_dir = ml_collections.FieldReference(None, field_type=str)
  c.dataset.source_dir = ml_collections.FieldReference(None, field_type=str)
  c.dataset.train_split = 'train[:55000]'
  c.dataset.val_split = 'train[55000:]'  # held out from train, separate from test
  c.dataset.test_split = 'test'
  c.dataset.classes = ()  # keep only these class ids (remapped to 0..k-1)
  c.dataset.examples_per_class = 0  # k-shot subset of the train split; 0 = all
  c.dataset.subset_seed = 0

  # Preprocessing spec, run on device inside the step (see jaxadapt/data/preprocess.py).
  c.preprocess = ml_collections.ConfigDict()
  c.preprocess.train = 'scale|normalize(0.286,0.353)'
  c.preprocess.eval = 'scale|normalize(0.286,0.353)'

  c.model = ml_collections.ConfigDict()
  c.model.name = 'cnn'
  c.model.kwargs = ml_collections.ConfigDict()  # constructor fields, e.g. widths, depth

  # Which parameters train: ('train' | 'frozen') rules; the adaptation method is data.
  c.adapt = ml_collections.ConfigDict()
  c.adapt.method = 'scratch'  # a name for reports; behaviour comes from the fields below
  c.adapt.trainable = (('.*', 'train'),)
  c.adapt.lora = ml_collections.ConfigDict()
  c.adapt.lora.rules = ()  # (regex, rank) over kernel paths; empty = no LoRA
  c.adapt.lora.alpha = 16.0  # adapters scale by alpha / rank
  # Linear-probe fast path: backbone features computed once, head fitted on the cache.
  c.adapt.fast_probe = ''  # '' (off) | 'ridge' (closed form) | 'softmax' (SGD on features)
  c.adapt.probe_l2 = 1e-3  # ridge regularisation, relative to mean feature energy
  c.adapt.probe_epochs = 20  # 'softmax' fast path epochs over the cached features

  # Pretrained initialisation (jaxadapt/pretrained.py).
  c.init = ml_collections.ConfigDict()
  c.init.checkpoint = ml_collections.FieldReference(None, field_type=str)
  c.init.dont_load = ()  # regexes: keep the fresh init for these (e.g. 'head/.*')
  c.init.name_map = ()  # (regex, replacement) renames of checkpoint keys
  # An adapter-only export (`jaxadapt export --mode adapters`) laid over the result.
  c.init.adapters = ml_collections.FieldReference(None, field_type=str)

  # Knowledge distillation (jaxadapt/distill.py): teachers are jaxadapt workdirs.
  c.distill = ml_collections.ConfigDict()
  c.distill.teachers = ()  # workdirs of trained teachers; empty = no distillation
  c.distill.loss = 'kl'  # kl (Hinton: alpha*T^2*KL + (1-alpha)*CE) | fm | mse
  c.distill.temperature = 4.0
  c.distill.alpha = 0.9  # weight of the soft targets in 'kl'
  c.distill.mixup_alpha = 1.0  # 'fm' (function matching) mixes images, Beta(a, a)
  c.distill.cache_logits = False  # precompute teacher logits once (needs un-augmented data)

  c.batch_size = 128  # global batch, split over all devices and processes
  # Examples per eval step. On CPU, 200 evaluated the default CNN 1.4x faster than 1000
  # (XLA:CPU's convolutions cost more per example on big batches); raise it on accelerators.
  c.eval_batch_size = 200
  c.num_epochs = 10.0  # used when num_steps is 0
  c.num_steps = 0

  c.optim = ml_collections.ConfigDict()
  c.optim.name = 'adamw'  # adamw | sgd
  c.optim.lr = 1e-3
  c.optim.momentum = 0.9  # sgd momentum; adamw b1
  c.optim.nesterov = True
  c.optim.b2 = 0.999
  c.optim.weight_decay = 1e-4  # decoupled (adamw) or L2-style added to updates (sgd)
  c.optim.schedule = 'cosine'  # cosine | constant | linear
  c.optim.warmup_steps = 0
  c.optim.warmup_fraction = 0.02  # used when warmup_steps is 0
  c.optim.grad_clip = 0.0  # global-norm clip over trainable params; 0 = off
  # (regex, value) rules over parameter paths, first match wins (path_rules.py).
  c.optim.lr_rules = (('.*', 1.0),)  # learning-rate multipliers
  c.optim.wd_rules = (('.*(bias|scale)$', 0.0), ('.*', 1.0))  # weight-decay multipliers

  c.log_every = 50
  c.eval_every = 0  # 0 = once per epoch
  c.ckpt_every = 500
  c.keep_ckpts = 2

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1 = all remaining devices
  c.mesh.fsdp = 1
  # Parameter sharding rules: 'fsdp' splits a leaf's largest dimension over the fsdp axis
  # (small leaves stay replicated), 'replicate', or an explicit spec like ('fsdp', None).
  # Optimizer state follows its parameter.
  c.mesh.param_rules = (('.*', 'fsdp'),)
  return c
