"""Text to token ids, once per split, cached on disk: int32 [N, max_length].

The `tokenizers` library reads a checkpoint's `tokenizer.json`. Its own padding and
truncation settings (all-MiniLM-L6-v2's pad and truncate to 128) are replaced by
`max_length`: every text is truncated to at most `max_length` ids (special tokens
included, so a truncated text still ends in [SEP]) and right-padded with the file's pad id.
The model's attention mask is `ids != pad_id`, so no mask is stored.

The ids and labels are cached as `.npz` next to the prepared dataset, keyed by the
tokenizer file's hash, `max_length` and the split; steps never tokenise.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jaxadapt.errors import DataError

_log = logging.getLogger(__name__)

_CACHE_FORMAT = 2  # bump when the cached arrays change


def tokenizer_file(spec: str) -> Path:
  """`tokenizer.json` for a spec: the file, a model directory holding it, or `hf:<dir|alias>`
  (the importers' names, e.g. hf:all-MiniLM-L6-v2 for the installed package's copy)."""
  if not spec:
    raise DataError(
        'this dataset is text: set dataset.tokenizer to a tokenizer.json, a model directory '
        'holding one, or hf:all-MiniLM-L6-v2'
    )
  if spec.startswith('hf:'):
    from jaxadapt import importers  # Local import: jax-heavy, only for hf: specs.

    path = Path(importers.parse(spec).path)
  else:
    path = Path(os.path.expanduser(spec))
  if path.is_dir():
    path = path / 'tokenizer.json'
  if not path.is_file():
    raise DataError(
        f'dataset.tokenizer={spec}: {path} not found; give a tokenizer.json, a model '
        f'directory holding one, or hf:all-MiniLM-L6-v2'
    )
  return path


def load_tokenizer(path: Path, max_length: int):
  """The tokenizer of `path`, set to truncate to and pad to exactly `max_length` ids."""
  try:
    from tokenizers import Tokenizer
  except ImportError:
    raise DataError(
        "text datasets need the tokenizers library: pip install 'jaxadapt[text]'"
    ) from None
  if max_length < 2:
    raise DataError(f'dataset.max_length={max_length} leaves no room for text; use e.g. 64')
  try:
    tok = Tokenizer.from_file(str(path))
  except Exception as e:  # tokenizers raises a bare Exception on a bad file
    raise DataError(f'{path}: not a tokenizers tokenizer.json ({e})') from None
  pad_id, pad_token = pad_settings(tok, path)
  tok.no_padding()
  tok.enable_truncation(max_length)
  tok.enable_padding(length=max_length, pad_id=pad_id, pad_token=pad_token)
  return tok


def pad_settings(tok, path: Path) -> tuple[int, str]:
  """(pad id, pad token): the file's own padding settings, else its [PAD] token."""
  if tok.padding:
    return int(tok.padding['pad_id']), tok.padding['pad_token']
  pad_id = tok.token_to_id('[PAD]')
  if pad_id is None:
    raise DataError(f'{path}: no padding settings and no [PAD] token to pad with')
  return pad_id, '[PAD]'


def encode(tok, texts: Sequence[str]) -> np.ndarray:
  """int32 ids [N, L] of `texts` with a tokenizer from `load_tokenizer`."""
  return encode_with_lengths(tok, texts)[0]


def encode_with_lengths(tok, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
  """(ids [N, L], lengths [N]) int32: lengths count the ids before the padding."""
  encodings = tok.encode_batch(list(texts))
  ids = np.asarray([e.ids for e in encodings], dtype=np.int32)
  lengths = np.asarray([sum(e.attention_mask) for e in encodings], dtype=np.int32)
  return ids, lengths


def _digest(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()[:16]


def tokenized_split(
    cache_dir: str | os.PathLike,
    spec: str,
    max_length: int,
    tag: str,
    read: Callable[[], tuple[Sequence[str], np.ndarray]],
) -> dict[str, np.ndarray]:
  """{'tokens': int32 [N, max_length], 'length', 'label'} of one split, cached in `cache_dir`.

  `length` counts each row's ids before its padding (evaluation cuts batches to it).

  `tag` names the split's texts (the split and how texts are built); `read() -> (texts,
  labels)` runs only when the cache has no entry for (tokenizer file, max_length, tag).
  """
  path = tokenizer_file(spec)
  key = _digest(path.read_bytes() + f'\0{max_length}\0{tag}\0{_CACHE_FORMAT}'.encode())
  cache = Path(cache_dir) / f'tokens-{key}.npz'
  if cache.exists():
    with np.load(cache) as z:
      return {k: z[k] for k in ('tokens', 'length', 'label')}
  tok = load_tokenizer(path, max_length)
  texts, labels = read()
  ids, lengths = encode_with_lengths(tok, texts)
  arrays = {'tokens': ids, 'length': lengths, 'label': np.asarray(labels, np.int32)}
  _log.info(
      'tokenised %d texts to %d ids (%d reach the length)',
      len(texts),
      max_length,
      np.sum(lengths == max_length),
  )
  cache.parent.mkdir(parents=True, exist_ok=True)
  tmp = cache.with_suffix(f'.{os.getpid()}.tmp')
  with open(tmp, 'wb') as f:
    np.savez(f, **arrays)
  tmp.replace(cache)  # atomic: a concurrent reader sees the whole file or none
  return arrays
