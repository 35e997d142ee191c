"""Load a dataset split fully into memory as numpy arrays, with class/example subsetting.

Image and sequence datasets give {'image', 'label'}; text datasets (wordnet, text_file)
give {'tokens': int32 [N, dataset.max_length], 'length', 'label'}, tokenised once and cached
(jaxadapt/data/tokenize.py).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import os
from typing import Any, Iterator, NamedTuple

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from jaxadapt.data import builders, image_folder, text_builders, tokenize
from jaxadapt.errors import DataError

# Config names of the offline builders; everything else is looked up in the TFDS catalog.
LOCAL_BUILDERS = {
    'fashion_mnist': builders.FashionMnistLocal,
    'digits': builders.DigitsLocal,
    'mnist1d': builders.Mnist1dLocal,
    'wordnet': text_builders.WordnetSupersenses,
    'text_file': text_builders.TextFile,
    'image_folder': image_folder.ImageFolder,
}
# Builders that read `dataset.source_dir`.
_SOURCE_DIR_BUILDERS = ('fashion_mnist', 'wordnet', 'text_file', 'image_folder')

_READ_CHUNK = 10_000  # Examples per batched read; bounds the list of decoded dicts held at once.


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
  """Hide TFDS progress bars and absl warnings so the trainer's own output stays readable."""
  absl_logger = logging.getLogger('absl')
  old_level = absl_logger.level
  tfds.display_progress_bar(False)
  absl_logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    absl_logger.setLevel(old_level)
    tfds.display_progress_bar(True)


def _get(cfg: Any, field: str, default: Any = None) -> Any:
  value = getattr(cfg, field, default)
  return default if value is None else value


def _unknown_name_error(name: str, catalog: list[str]) -> DataError:
  local = ', '.join(LOCAL_BUILDERS)
  close = difflib.get_close_matches(name, list(LOCAL_BUILDERS) + catalog, n=1)
  hint = f" (did you mean '{close[0]}'?)" if close else ''
  return DataError(
      f"unknown dataset '{name}'; local datasets: {local}; or any TFDS catalog name{hint}"
  )


class Source(NamedTuple):
  """Where a dataset comes from; the in-process caches are keyed by it."""

  name: str
  data_dir: str
  source_dir: str | None
  # text_file: its files' sizes and times; image_folder: their digest; a changed source is re-read
  stamp: tuple = ()


def _make_builder(src: Source) -> tfds.core.DatasetBuilder:
  name, data_dir, source_dir = src.name, src.data_dir, src.source_dir
  with _quiet_tfds():
    if name in LOCAL_BUILDERS:
      kwargs = {'source_dir': source_dir} if name in _SOURCE_DIR_BUILDERS else {}
      return LOCAL_BUILDERS[name](data_dir=data_dir, file_format='array_record', **kwargs)
    # Community datasets need GCS access (and TensorFlow) to list, so stick to the built-in catalog.
    catalog = tfds.list_builders(with_community_datasets=False)
    if name.split(':')[0].split('/')[0] not in catalog:
      raise _unknown_name_error(name, catalog)
    return tfds.builder(name, data_dir=data_dir, file_format='array_record')


def _resolve(dataset_cfg: Any) -> Source:
  name = dataset_cfg.name
  data_dir = os.path.expanduser(_get(dataset_cfg, 'data_dir') or builders.default_data_dir())
  source_dir = _get(dataset_cfg, 'source_dir')
  stamp = ()
  if name == 'text_file' and source_dir:
    stamp = text_builders.files_stamp(source_dir)
  elif name == 'image_folder' and source_dir:
    stamp = (image_folder.list_folder(source_dir).digest,)
  return Source(name, data_dir, source_dir, stamp)


def _check_prepared(builder: tfds.core.DatasetBuilder, name: str, data_dir: str) -> None:
  """Catalog datasets are read, never downloaded: without network a download only hangs."""
  if not builder.is_prepared():
    raise DataError(
        f"TFDS dataset '{name}' is not prepared in {builder.data_dir}; jaxadapt never downloads: "
        f'where there is network run `tfds build {name} --data_dir DIR --file_format '
        f'array_record` and copy DIR/{builder.name} into {data_dir} (or set '
        f'--config.dataset.data_dir or $JAXADAPT_DATA_DIR to DIR)'
    )
  file_format = builder.info.file_format
  if file_format is not None and file_format.value != 'array_record':
    raise DataError(
        f"TFDS dataset '{name}' in {builder.data_dir} is prepared as {file_format.value}, but "
        f'jaxadapt reads array_record; rebuild it with `tfds build {name} --file_format '
        f'array_record`'
    )


@functools.lru_cache(maxsize=8)
def _prepared_builder(src: Source) -> tfds.core.DatasetBuilder:
  """The builder with its data on disk: local builders prepare (offline) once, catalog ones must be."""
  builder = _make_builder(src)
  if src.name in LOCAL_BUILDERS:
    with _quiet_tfds():
      builder.download_and_prepare()
  else:
    _check_prepared(builder, src.name, src.data_dir)
  return builder


def _check_split(builder: tfds.core.DatasetBuilder, split: str, what: str) -> None:
  """A split TFDS cannot read, or a slice that selects nothing, is a config error."""
  try:
    n = builder.info.splits[split].num_examples
  except (ValueError, KeyError) as e:
    raise DataError(f"{what}='{split}': {e}") from None
  if n <= 0:
    raise DataError(
        f"{what}='{split}' selects no examples; a slice [start:end] needs start < end, "
        f"e.g. 'train[:80%]' or 'train[100:200]'"
    )


def _split_key(dataset_cfg: Any, split: str) -> str:
  """The config key a split string came from, for error messages."""
  for key in ('train_split', 'val_split', 'test_split'):
    if _get(dataset_cfg, key) == split:
      return f'dataset.{key}'
  return 'split'


@functools.lru_cache(maxsize=8)
def _materialise(src: Source, split: str, shape: tuple | None = None) -> dict[str, np.ndarray]:
  """Read a whole split of a prepared builder; cached per process, arrays read-only.

  {'image', 'label'}, or for text {'text' (str objects), 'label'} plus WordNet's 'words'.
  Encoded images (image_folder) are decoded to `shape`.
  """
  builder = _prepared_builder(src)
  keys = [k for k in ('image', 'text', 'words') if k in builder.info.features] + ['label']
  chunks = {k: [] for k in keys}
  with _quiet_tfds():  # also while decoding: catalog images warn once about OpenCV
    source = builder.as_data_source(split)
    # Batched reads are ~5x faster than indexing the ArrayRecord source one item at a time.
    for start in range(0, len(source), _READ_CHUNK):
      items = source.__getitems__(list(range(start, min(start + _READ_CHUNK, len(source)))))
      if shape is not None:
        items = [
            {**ex, 'image': image_folder.decode(ex['image'], shape[2], shape[:2])} for ex in items
        ]
      for k in keys:
        chunks[k].append(_column(items, k))
  # Keep the builder's dtype: uint8 images, float32 MNIST-1D sequences.
  arrays = {k: np.concatenate(v) for k, v in chunks.items()}
  for array in arrays.values():
    array.setflags(write=False)  # The cache hands out the same arrays to every caller.
  return arrays


def _column(items: list[dict], key: str) -> np.ndarray:
  if key == 'label':
    return np.asarray([ex['label'] for ex in items], dtype=np.int32)
  if key in ('text', 'words'):  # TFDS hands text back as UTF-8 bytes
    return np.asarray([ex[key].decode('utf-8') for ex in items], dtype=object)
  return np.stack([ex[key] for ex in items])


@functools.lru_cache(maxsize=8)
def _tokenized(
    src: Source,
    split: str,
    tokenizer: str | None,
    max_length: int,
    prepend_words: bool,
) -> dict[str, np.ndarray]:
  """{'tokens', 'length', 'label'} of a text split; cached next to the prepared data (whose
  directory names the source), so a cached split reads no text at all."""
  builder = _make_builder(src)
  if prepend_words and 'words' not in builder.info.features:
    raise DataError(f"dataset.prepend_words: dataset '{src.name}' has no words; only wordnet has")

  def read() -> tuple[list[str], np.ndarray]:
    arrays = _materialise(src, split)
    texts = arrays['text']
    if prepend_words:  # 'lemma, lemma: gloss'
      texts = [f'{w}: {t}' for w, t in zip(arrays['words'], texts)]
    return list(texts), arrays['label']

  tag = f"{split}|{'words: ' if prepend_words else ''}text"
  arrays = tokenize.tokenized_split(builder.data_path / 'tokens', tokenizer, max_length, tag, read)
  for array in arrays.values():
    array.setflags(write=False)
  return arrays


def is_text(dataset_cfg: Any) -> bool:
  """True for datasets of strings, which load as token ids."""
  return 'text' in _builder_features(_resolve(dataset_cfg))


def _text_options(dataset_cfg: Any) -> tuple[str | None, int, bool]:
  return (
      _get(dataset_cfg, 'tokenizer'),
      int(_get(dataset_cfg, 'max_length', 64)),
      bool(_get(dataset_cfg, 'prepend_words', False)),
  )


def _select_classes(
    arrays: dict[str, np.ndarray], classes: tuple[int, ...], num_classes: int
) -> dict[str, np.ndarray]:
  if len(set(classes)) != len(classes) or not all(0 <= c < num_classes for c in classes):
    raise DataError(f'dataset.classes={classes} must be distinct ids in [0, {num_classes})')
  remap = np.full(num_classes, -1, dtype=np.int32)
  remap[list(classes)] = np.arange(len(classes), dtype=np.int32)
  keep = remap[arrays['label']] >= 0
  return {**{k: v[keep] for k, v in arrays.items()}, 'label': remap[arrays['label'][keep]]}


def _select_examples(
    arrays: dict[str, np.ndarray],
    per_class: int,
    num_classes: int,
    seed: int,
    split: str,
    keep_small: bool = False,
) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  chosen = []
  for c in range(num_classes):
    candidates = np.flatnonzero(arrays['label'] == c)
    if len(candidates) < per_class and not keep_small:
      raise DataError(
          f"class {c} has only {len(candidates)} examples in split '{split}', "
          f'fewer than dataset.examples_per_class={per_class}; lower it or set '
          f'dataset.keep_small_classes=True to keep all of a smaller class'
      )
    chosen.append(rng.choice(candidates, size=min(per_class, len(candidates)), replace=False))
  index = np.sort(np.concatenate(chosen))  # Keep the split's original order.
  return {key: value[index] for key, value in arrays.items()}


@functools.lru_cache(maxsize=32)
def _described_builder(src: Source) -> tfds.core.DatasetBuilder:
  """The builder, for its metadata only; needs no prepared data."""
  return _make_builder(src)


def _builder_features(src: Source):
  """The builder's features (label classes, example shape); needs no prepared data."""
  return _described_builder(src).info.features


def decoded_shape(dataset_cfg: Any) -> tuple[int, int, int] | None:
  """(H, W, C) that encoded images (image_folder) decode to; None for other datasets."""
  src = _resolve(dataset_cfg)
  image_size = int(_get(dataset_cfg, 'image_size', 0))
  if src.name != 'image_folder':
    if image_size:
      raise DataError(
          f'dataset.image_size={image_size} only applies to image_folder; resize dataset '
          f"'{src.name}' with the preprocess op resize(size)"
      )
    return None
  builder = _described_builder(src)
  return image_folder.image_shape(builder.listing, builder.inspection, image_size)


def data_source(dataset_cfg: Any, split: str):
  """Random-access rows of a prepared split (tfds.data_source over its ArrayRecord files)."""
  src = _resolve(dataset_cfg)
  builder = _prepared_builder(src)
  _check_split(builder, split, _split_key(dataset_cfg, split))
  with _quiet_tfds():
    return builder.as_data_source(split)


def load_split(dataset_cfg: Any, split: str) -> dict[str, np.ndarray]:
  """Return {'image': [N, *shape], 'label': int32 [N]} for a (sliceable) TFDS split.

  'image' has the builder's dtype and shape: uint8 [N,H,W,C] for image
  datasets, float32 [N,40,1] for MNIST-1D. Text datasets give 'tokens' instead:
  int32 [N, dataset.max_length] ids from `dataset.tokenizer`, and 'length' (ids before
  the padding).

  The whole split is held in memory, which suits the small datasets this
  codebase targets (Fashion-MNIST train is 47 MB) but not ImageNet-scale data: for that,
  dataset.stream=True reads training batches from disk (jaxadapt/data/stream.py).
  Without subsetting the returned arrays are shared, read-only cache entries.
  """
  src = _resolve(dataset_cfg)
  _check_split(_prepared_builder(src), split, _split_key(dataset_cfg, split))
  if is_text(dataset_cfg):
    arrays = _tokenized(src, split, *_text_options(dataset_cfg))
  else:
    arrays = _materialise(src, split, decoded_shape(dataset_cfg))
  return _subset(arrays, dataset_cfg, split, _builder_features(src)['label'].num_classes)


def _subset(
    arrays: dict[str, np.ndarray], dataset_cfg: Any, split: str, num_classes: int
) -> dict[str, np.ndarray]:
  """dataset.classes (labels remapped to 0..k-1), then dataset.examples_per_class."""
  classes = tuple(int(c) for c in _get(dataset_cfg, 'classes', ()))
  if classes:
    arrays = _select_classes(arrays, classes, num_classes)
    num_classes = len(classes)
  per_class = int(_get(dataset_cfg, 'examples_per_class', 0))
  if per_class > 0:
    arrays = _select_examples(
        arrays,
        per_class,
        num_classes,
        int(_get(dataset_cfg, 'subset_seed', 0)),
        split,
        bool(_get(dataset_cfg, 'keep_small_classes', False)),
    )
  return arrays


def _split_labels(src: Source, split: str) -> np.ndarray:
  """Every label of a split, in row order: stored apart for image_folder, else read in chunks
  (each chunk's examples are dropped once their labels are kept)."""
  builder = _prepared_builder(src)
  if hasattr(builder, 'labels'):
    return builder.labels(split)
  with _quiet_tfds():
    source = builder.as_data_source(split)
    chunks = []
    for start in range(0, len(source), _READ_CHUNK):
      items = source.__getitems__(list(range(start, min(start + _READ_CHUNK, len(source)))))
      chunks.append(_column(items, 'label'))
  return np.concatenate(chunks)


def selected_rows(dataset_cfg: Any, split: str) -> tuple[np.ndarray, np.ndarray] | None:
  """(rows, labels) of `split` that dataset.classes / examples_per_class keep, exactly the
  examples load_split returns, in the same order; None when neither is set. Reads labels only.
  """
  classes = tuple(_get(dataset_cfg, 'classes', ()))
  if not classes and int(_get(dataset_cfg, 'examples_per_class', 0)) <= 0:
    return None
  src = _resolve(dataset_cfg)
  _check_split(_prepared_builder(src), split, _split_key(dataset_cfg, split))
  labels = _split_labels(src, split)
  arrays = {'row': np.arange(len(labels)), 'label': labels}
  arrays = _subset(arrays, dataset_cfg, split, _builder_features(src)['label'].num_classes)
  return arrays['row'], arrays['label']


def dataset_info(dataset_cfg: Any) -> dict[str, Any]:
  """Return {'num_classes', 'image_shape', 'class_names'} without preparing or reading data.

  image_shape is one example's shape: (H, W, C), (length, C) for sequences, or
  (dataset.max_length,) token ids for text.
  """
  features = _builder_features(_resolve(dataset_cfg))
  names = tuple(features['label'].names)
  classes = tuple(int(c) for c in _get(dataset_cfg, 'classes', ()))
  if classes:
    names = tuple(names[c] for c in classes if 0 <= c < len(names))
  info = {'num_classes': len(classes) or len(names), 'class_names': names}
  if 'text' not in features:
    shape = decoded_shape(dataset_cfg) or features['image'].shape
    return {**info, 'image_shape': tuple(int(d) for d in shape)}
  tokenizer, max_length, _ = _text_options(dataset_cfg)
  # A bad tokenizer or length fails here, before any data is prepared.
  tok_file = tokenize.tokenizer_file(tokenizer)
  pad_id = tokenize.pad_settings(tokenize.load_tokenizer(tok_file, max_length), tok_file)[0]
  return {**info, 'image_shape': (max_length,), 'pad_id': pad_id}


def load_eval_splits(dataset_cfg: Any) -> dict[str, dict[str, np.ndarray]]:
  """{'val': arrays, 'test': arrays} for the configured (non-empty) eval splits.

  Eval splits never take the k-shot subset (`examples_per_class`): it only applies to
  training data.
  """
  full = ml_collections.ConfigDict(dict(dataset_cfg.to_dict(), examples_per_class=0))
  splits = {'val': dataset_cfg.val_split, 'test': dataset_cfg.test_split}
  return {name: load_split(full, split) for name, split in splits.items() if split}
