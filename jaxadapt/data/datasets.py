"""Load a dataset split fully into memory as numpy arrays, with class/example subsetting."""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import os
from typing import Any, Iterator

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from jaxadapt.data import builders
from jaxadapt.errors import DataError

# Config names of the offline builders; everything else is looked up in the TFDS catalog.
LOCAL_BUILDERS = {
    'fashion_mnist': builders.FashionMnistLocal,
    'digits': builders.DigitsLocal,
    'mnist1d': builders.Mnist1dLocal,
}

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


def _make_builder(name: str, data_dir: str, source_dir: str | None) -> tfds.core.DatasetBuilder:
  with _quiet_tfds():
    if name in LOCAL_BUILDERS:
      kwargs = {'source_dir': source_dir} if name == 'fashion_mnist' else {}
      return LOCAL_BUILDERS[name](data_dir=data_dir, file_format='array_record', **kwargs)
    # Community datasets need GCS access (and TensorFlow) to list, so stick to the built-in catalog.
    catalog = tfds.list_builders(with_community_datasets=False)
    if name.split(':')[0].split('/')[0] not in catalog:
      raise _unknown_name_error(name, catalog)
    return tfds.builder(name, data_dir=data_dir, file_format='array_record')


def _resolve(dataset_cfg: Any) -> tuple[str, str, str | None]:
  name = dataset_cfg.name
  data_dir = os.path.expanduser(_get(dataset_cfg, 'data_dir') or builders.default_data_dir())
  source_dir = _get(dataset_cfg, 'source_dir')
  return name, data_dir, source_dir


@functools.lru_cache(maxsize=8)
def _materialise(
    name: str, split: str, data_dir: str, source_dir: str | None
) -> dict[str, np.ndarray]:
  """Prepare (once, on disk) and read a whole split; cached per process, arrays read-only."""
  builder = _make_builder(name, data_dir, source_dir)
  with _quiet_tfds():
    builder.download_and_prepare()
    source = builder.as_data_source(split)
  images, labels = [], []
  # Batched reads are ~5x faster than indexing the ArrayRecord source one item at a time.
  for start in range(0, len(source), _READ_CHUNK):
    items = source.__getitems__(list(range(start, min(start + _READ_CHUNK, len(source)))))
    images.append(np.stack([ex['image'] for ex in items]))
    labels.append(np.asarray([ex['label'] for ex in items], dtype=np.int32))
  # Keep the builder's dtype: uint8 images, float32 MNIST-1D sequences.
  arrays = {'image': np.concatenate(images), 'label': np.concatenate(labels)}
  for array in arrays.values():
    array.setflags(write=False)  # The cache hands out the same arrays to every caller.
  return arrays


def _select_classes(
    arrays: dict[str, np.ndarray], classes: tuple[int, ...], num_classes: int
) -> dict[str, np.ndarray]:
  if len(set(classes)) != len(classes) or not all(0 <= c < num_classes for c in classes):
    raise DataError(f'dataset.classes={classes} must be distinct ids in [0, {num_classes})')
  remap = np.full(num_classes, -1, dtype=np.int32)
  remap[list(classes)] = np.arange(len(classes), dtype=np.int32)
  keep = remap[arrays['label']] >= 0
  return {'image': arrays['image'][keep], 'label': remap[arrays['label'][keep]]}


def _select_examples(
    arrays: dict[str, np.ndarray], per_class: int, num_classes: int, seed: int, split: str
) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  chosen = []
  for c in range(num_classes):
    candidates = np.flatnonzero(arrays['label'] == c)
    if len(candidates) < per_class:
      raise DataError(
          f"class {c} has only {len(candidates)} examples in split '{split}', "
          f'fewer than dataset.examples_per_class={per_class}'
      )
    chosen.append(rng.choice(candidates, size=per_class, replace=False))
  index = np.sort(np.concatenate(chosen))  # Keep the split's original order.
  return {key: value[index] for key, value in arrays.items()}


@functools.lru_cache(maxsize=32)
def _builder_meta(name: str, data_dir: str, source_dir: str | None) -> tuple[int, tuple[int, ...]]:
  """(num_classes, image_shape) from the builder's features; needs no prepared data."""
  features = _make_builder(name, data_dir, source_dir).info.features
  return features['label'].num_classes, tuple(int(d) for d in features['image'].shape)


def load_split(dataset_cfg: Any, split: str) -> dict[str, np.ndarray]:
  """Return {'image': [N, *shape], 'label': int32 [N]} for a (sliceable) TFDS split.

  'image' has the builder's dtype and shape: uint8 [N,H,W,C] for image
  datasets, float32 [N,40,1] for MNIST-1D.

  The whole split is held in memory, which suits the small datasets this
  codebase targets (Fashion-MNIST train is 47 MB) but not ImageNet-scale data.
  Without subsetting the returned arrays are shared, read-only cache entries.
  """
  name, data_dir, source_dir = _resolve(dataset_cfg)
  arrays = _materialise(name, split, data_dir, source_dir)
  num_classes, _ = _builder_meta(name, data_dir, source_dir)
  classes = tuple(int(c) for c in _get(dataset_cfg, 'classes', ()))
  if classes:
    arrays = _select_classes(arrays, classes, num_classes)
    num_classes = len(classes)
  per_class = int(_get(dataset_cfg, 'examples_per_class', 0))
  if per_class > 0:
    arrays = _select_examples(
        arrays, per_class, num_classes, int(_get(dataset_cfg, 'subset_seed', 0)), split
    )
  return arrays


def dataset_info(dataset_cfg: Any) -> dict[str, Any]:
  """Return {'num_classes', 'image_shape'} without preparing or reading data.

  image_shape is one example's shape: (H, W, C), or (length, C) for sequences.
  """
  num_classes, image_shape = _builder_meta(*_resolve(dataset_cfg))
  classes = tuple(_get(dataset_cfg, 'classes', ()))
  return {'num_classes': len(classes) if classes else num_classes, 'image_shape': image_shape}


def load_eval_splits(dataset_cfg: Any) -> dict[str, dict[str, np.ndarray]]:
  """{'val': arrays, 'test': arrays} for the configured (non-empty) eval splits.

  Eval splits never take the k-shot subset (`examples_per_class`): it only applies to
  training data.
  """
  full = ml_collections.ConfigDict(dict(dataset_cfg.to_dict(), examples_per_class=0))
  splits = {'val': dataset_cfg.val_split, 'test': dataset_cfg.test_split}
  return {name: load_split(full, split) for name, split in splits.items() if split}
