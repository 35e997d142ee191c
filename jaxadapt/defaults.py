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
  # local: fashion_mnist, digits, mnist1d, wordnet, text_file; or a TFDS catalog name
  c.dataset.name = 'fashion_mnist'
  c.dataset.data_dir = ml_collections.FieldReference(None, field_type=str)
  # Raw files of a local dataset (fashion_mnist, wordnet; text_file: a .csv/.jsonl file
  # or a directory of <split>.csv/.jsonl files); None = the Debian package's directory.
  c.dataset.source_dir = ml_collections.FieldReference(None, field_type=str)
  c.dataset.train_split = 'train[:55000]'
  c.dataset.val_split = 'train[55000:]'  # held out from train, separate from test
  c.dataset.test_split = 'test'
  c.dataset.classes = ()  # keep only these class ids (remapped to 0..k-1)
  c.dataset.examples_per_class = 0  # k-shot subset of the train split; 0 = all
  c.dataset.subset_seed = 0
  # Classes with fewer than examples_per_class examples: an error, or (True) all of theirs.
  c.dataset.keep_small_classes = False
  # Text datasets: token ids from this tokenizer.json (a file, a model directory or
  # hf:all-MiniLM-L6-v2), truncated/padded to max_length, tokenised once and cached.
  c.dataset.tokenizer = ml_collections.FieldReference(None, field_type=str)
  c.dataset.max_length = 64
  c.dataset.prepend_words = False  # wordnet: text = 'lemmas: gloss' instead of the gloss

  # Preprocessing spec, run on device inside the step (see jaxadapt/data/preprocess.py).
  c.preprocess = ml_collections.ConfigDict()
  c.preprocess.train = 'scale|normalize(0.286,0.353)'
  c.preprocess.eval = 'scale|normalize(0.286,0.353)'

  c.model = ml_collections.ConfigDict()
  c.model.name = 'cnn'
  c.model.kwargs = ml_collections.ConfigDict()  # constructor fields, e.g. widths, depth
  # Compute dtype of the forward pass (float32 | bfloat16); parameters and optimizer state
  # stay float32 (precision.py).
  c.model.dtype = 'float32'

  # Which parameters train: ('train' | 'frozen') rules; the adaptation method is data.
  c.adapt = ml_collections.ConfigDict()
  c.adapt.method = 'scratch'  # a name for reports; behaviour comes from the fields below
  c.adapt.trainable = (('.*', 'train'),)
  # Storage of frozen parameters: float32 | bfloat16 | int8 | nf4 (the last two: frozen
  # kernels quantised in blocks of 64, dequantised in the step); trainable ones stay float32.
  c.adapt.frozen_dtype = 'float32'
  c.adapt.lora = ml_collections.ConfigDict()
  c.adapt.lora.rules = ()  # (regex, rank) over kernel paths; empty = no LoRA
  c.adapt.lora.alpha = 16.0  # adapters scale by alpha / rank
  # factored: layer(x) + (x a) b, no kernel gradients; merged: W + a b; auto: factored where
  # it costs fewer FLOPs (3 r (fan_in + fan_out) < fan_in fan_out), merged elsewhere (lora.py).
  c.adapt.lora.form = 'auto'
  c.adapt.dora = ml_collections.ConfigDict()  # DoRA (jaxadapt/dora.py): LoRA + magnitudes
  c.adapt.dora.rules = ()  # (regex, rank) over kernel paths; empty = no DoRA
  c.adapt.dora.alpha = 16.0
  c.adapt.ia3 = ml_collections.ConfigDict()  # IA3 (jaxadapt/ia3.py): rescaled activations
  c.adapt.ia3.rules = ()  # (regex over kernel paths, 'out' | 'in'); empty = no IA3
  # Linear-probe fast path: backbone features computed once, head fitted on the cache.
  c.adapt.fast_probe = ''  # '' (off) | 'ridge' (closed form) | 'softmax' (L-BFGS on features)
  # Penalties tried; the best on the val split is kept (the first one if there is no val split).
  # ridge: relative to mean feature energy; softmax: on weights of standardised features.
  c.adapt.probe_l2 = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
  c.adapt.probe_tol = 1e-5  # 'softmax': L-BFGS stops when the gradient norm is below this
  c.adapt.probe_max_iter = 1000  # 'softmax': ... or after this many iterations

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
  # Gradient accumulation: each step runs batch_size / accumulate examples at a time and
  # averages the gradients (one update, the whole batch's; activation memory of one part).
  c.optim.accumulate = 1
  c.optim.grad_clip = 0.0  # global-norm clip over trainable params; 0 = off
  # Evaluate (and export) an exponential moving average of the trainable parameters with
  # this decay, e.g. 0.999 (ema.py: warmed up over the first updates); 0 = off.
  c.optim.ema = 0.0
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
