"""`jaxadapt predict`: run a model from any checkpoint on model-ready inputs.

Inputs: a `.npy` of images (or sequences) already resized and normalised as the model
expects, NHWC, or a text file with one sentence per line, tokenised with the
checkpoint's `tokenizer.json` (its built-in padding and truncation apply). Outputs, in
input order: the logits, or with `features` the pooled vector the head sees (for a
mean-pooled `bert`, the mean of the last hidden states over real tokens).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import numpy as np
from etils import epath

from jaxadapt import adapters, checkpoint, importers, models, param_tree
from jaxadapt.errors import UserError


class PredictError(UserError):
  """Inputs or a checkpoint that `predict` cannot use; the message says why."""


@dataclasses.dataclass
class Loaded:
  model: Any
  params: Any
  has_head: bool
  tokenizer: str | None  # path of tokenizer.json for text models


def load(source: str) -> Loaded:
  """A jaxadapt workdir, or any importer checkpoint (hf:, timm:, big_vision:, bit:, detected)."""
  spec = importers.parse(source)
  if spec is not None:
    plan, flat = importers.load(source)
    model = models.build_model(plan.model, plan.num_classes or 1, **plan.kwargs)
    return Loaded(
        model, param_tree.unflatten(flat), plan.num_classes is not None, plan.extra.get('tokenizer')
    )
  wd = epath.Path(source)
  if not (wd / 'config.json').exists():
    raise PredictError(
        f'--checkpoint {source} is neither a jaxadapt workdir (no config.json) nor a '
        f'checkpoint of hf:, timm:, big_vision: or bit:'
    )
  config = json.loads((wd / 'config.json').read_text())
  params = adapters.merge_all(checkpoint.restore_params(wd), config['adapt'])
  head = params['head']['kernel'].shape[-1]
  model = models.build_model(config['model']['name'], head, **config['model']['kwargs'])
  tokenizer = None
  upstream = config.get('init', {}).get('checkpoint')
  if upstream and importers.parse(upstream) is not None:
    tokenizer = importers.plan(importers.parse(upstream)).extra.get('tokenizer')
  return Loaded(model, params, True, tokenizer)


def tokenize(lines: list[str], tokenizer_json: str) -> np.ndarray:
  """Token ids [N, L] int32 with the tokenizer's own padding/truncation (pad to longest if none)."""
  from tokenizers import Tokenizer

  tok = Tokenizer.from_file(tokenizer_json)
  if tok.padding is None:
    tok.enable_padding()
  return np.asarray([e.ids for e in tok.encode_batch(lines)], np.int32)


def read_inputs(path: str, loaded: Loaded) -> np.ndarray:
  p = epath.Path(path)
  if not p.exists():
    raise PredictError(f'--input {path} not found')
  if p.suffix == '.npy':
    with p.open('rb') as f:
      return np.load(f)
  if p.suffix == '.txt':
    if loaded.tokenizer is None:
      raise PredictError(
          f'--input {path} is text but the checkpoint has no tokenizer.json; pass a .npy'
      )
    lines = [line for line in p.read_text().splitlines() if line.strip()]
    return tokenize(lines, loaded.tokenizer)
  raise PredictError(f'--input must be a .npy array or a .txt file of sentences, got {path}')


def predict(
    source: str, input_path: str, out: str, features: bool = False, batch_size: int = 64
) -> np.ndarray:
  """Writes (and returns) logits or features for every input, in order."""
  loaded = load(source)
  if not features and not loaded.has_head:
    raise PredictError(
        f'{source} has no classification head: use --features for the pooled features'
    )
  x = read_inputs(input_path, loaded)
  apply = jax.jit(lambda p, xb: loaded.model.apply({'params': p}, xb, features_only=features))
  outs = [
      np.asarray(apply(loaded.params, x[i : i + batch_size])) for i in range(0, len(x), batch_size)
  ]
  result = np.concatenate(outs).astype(np.float32)
  p = epath.Path(out)
  p.parent.mkdir(parents=True, exist_ok=True)
  with p.open('wb') as f:
    np.save(f, result)
  return result
