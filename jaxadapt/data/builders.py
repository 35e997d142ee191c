"""Offline TFDS builders: Fashion-MNIST (local IDX files), sklearn's digits, generated MNIST-1D."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import random
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
from etils import epath
import tensorflow_datasets as tfds
from jaxadapt.errors import DataError

_log = logging.getLogger(__name__)

DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'

FASHION_MNIST_CLASSES = (
    'T-shirt/top',
    'Trouser',
    'Pullover',
    'Dress',
    'Coat',
    'Sandal',
    'Shirt',
    'Sneaker',
    'Bag',
    'Ankle boot',
)

# IDX files per split: (images, labels).
_FASHION_MNIST_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}

DIGITS_TRAIN_FRACTION = 0.8
DIGITS_SPLIT_SEED = 0


def default_data_dir() -> str:
  """Where prepared datasets live: $JAXADAPT_DATA_DIR or ~/.cache/jaxadapt/tensorflow_datasets."""
  env = os.environ.get('JAXADAPT_DATA_DIR')
  if env:
    return os.path.expanduser(env)
  return os.path.expanduser('~/.cache/jaxadapt/tensorflow_datasets')


_IDX_FIX = (
    'reinstall it (`apt-get install --reinstall dataset-fashion-mnist`) or replace the file, '
    'or set config.dataset.source_dir to a directory of good IDX files'
)


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Parse an IDX file (optionally gzipped) of unsigned bytes into a numpy array."""
  path = Path(path)
  opener = gzip.open if path.suffix == '.gz' else open
  try:
    with opener(path, 'rb') as f:
      data = f.read()
  except (EOFError, zlib.error, gzip.BadGzipFile) as e:  # truncated or garbled download
    raise DataError(f'{path} is corrupt or truncated ({e}); {_IDX_FIX}') from None
  # Header: two zero bytes, a dtype code (0x08 = uint8), number of dims, then big-endian int32 dims.
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise DataError(f'{path}: not an IDX file (bad magic number); {_IDX_FIX}')
  if data[2] != 0x08:
    raise DataError(f'{path}: IDX dtype code {data[2]:#x} unsupported (only uint8, 0x08)')
  ndim = data[3]
  if len(data) < 4 + 4 * ndim:
    raise DataError(f'{path}: IDX header cut short (truncated?); {_IDX_FIX}')
  shape = tuple(int(d) for d in np.frombuffer(data, dtype='>i4', count=ndim, offset=4))
  offset = 4 + 4 * ndim
  if len(data) - offset != int(np.prod(shape)):
    raise DataError(
        f'{path}: header says shape {shape} but the payload has {len(data) - offset} bytes '
        f'(truncated?); {_IDX_FIX}'
    )
  return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _find_idx(source_dir: str, stem: str) -> Path:
  """Return the .gz or plain IDX file for `stem`, or raise a one-line, actionable error."""
  for name in (stem + '.gz', stem):
    path = Path(source_dir) / name
    if path.exists():
      return path
  raise DataError(
      f'Fashion-MNIST file {Path(source_dir) / (stem + ".gz")} is missing: run '
      f'`apt-get install dataset-fashion-mnist` or set config.dataset.source_dir '
      f'to a directory holding the IDX files'
  )


@dataclasses.dataclass(eq=False)
class SourceDirConfig(tfds.core.BuilderConfig):
  """Builder config carrying the raw-file directory.

  The config name embeds a hash of the directory so that data prepared from
  different sources never share (and silently reuse) a prepared directory.
  """

  source_dir: str = DEFAULT_FASHION_MNIST_DIR


def _source_config(source_dir: str | None) -> SourceDirConfig:
  source_dir = os.path.abspath(os.path.expanduser(source_dir or DEFAULT_FASHION_MNIST_DIR))
  if source_dir == DEFAULT_FASHION_MNIST_DIR:
    name = 'default'
  else:
    name = 'src_' + hashlib.sha1(source_dir.encode()).hexdigest()[:10]
  return SourceDirConfig(name=name, source_dir=source_dir)


def _image_label_info(
    builder: tfds.core.DatasetBuilder,
    shape: tuple[int, int, int],
    names: tuple[str, ...],
    description: str,
) -> tfds.core.DatasetInfo:
  # Tensor rather than Image features: Image encoding needs TensorFlow, which we do not ship.
  return tfds.core.DatasetInfo(
      builder=builder,
      description=description,
      features=tfds.features.FeaturesDict(
          {
              'image': tfds.features.Tensor(shape=shape, dtype=np.uint8),
              'label': tfds.features.ClassLabel(names=list(names)),
          }
      ),
      supervised_keys=('image', 'label'),
  )


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared base: pins `code_path` to this file.

  TFDS otherwise derives it via importlib.resources from the top-level
  package, which fails when `jaxadapt` is imported as a namespace package.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  # TFDS prints these two banners unconditionally; route them to logging instead.
  def _log_download_bytes(self) -> None:
    _log.info('preparing %s into %s', self.name, self.data_dir)

  def _log_download_done(self) -> None:
    _log.info('prepared %s into %s', self.name, self.data_dir)


class FashionMnistLocal(LocalBuilder):
  """Fashion-MNIST (28x28x1, 10 classes) read from local IDX files; train 60000 / test 10000."""

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [_source_config(None)]

  def __init__(self, *, source_dir: str | None = None, **kwargs):
    config = _source_config(source_dir)
    if config.name != 'default':  # The default comes from BUILDER_CONFIGS.
      kwargs.setdefault('config', config)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return _image_label_info(
        self,
        (28, 28, 1),
        FASHION_MNIST_CLASSES,
        'Fashion-MNIST from local IDX files (Debian dataset-fashion-mnist).',
    )

  def _split_generators(self, dl_manager):
    source_dir = self.builder_config.source_dir
    # Resolve every file before generating anything so a missing one fails fast.
    files = {
        split: tuple(_find_idx(source_dir, stem) for stem in stems)
        for split, stems in _FASHION_MNIST_FILES.items()
    }
    return {split: self._generate_examples(*paths) for split, paths in files.items()}

  def _generate_examples(self, images_path: Path, labels_path: Path) -> Iterator[tuple[int, dict]]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise DataError(
          f'{images_path} / {labels_path}: shapes {images.shape} and {labels.shape} do not match'
      )
    for i in range(len(labels)):
      yield i, {'image': images[i, :, :, None], 'label': int(labels[i])}


def digits_split_indices(num_examples: int) -> dict[str, np.ndarray]:
  """Deterministic train/test index split for digits: first 80% of a seed-0 permutation is train."""
  perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(num_examples)
  num_train = int(DIGITS_TRAIN_FRACTION * num_examples)
  return {'train': np.sort(perm[:num_train]), 'test': np.sort(perm[num_train:])}


class DigitsLocal(LocalBuilder):
  """scikit-learn's 8x8 digits (1797 images, values rescaled 0..16 -> 0..255).

  sklearn ships no split, so we make one: a fixed-seed permutation (seed 0)
  whose first 80% (1437 examples) is `train` and the rest (360) is `test`.
  Not stratified; every class still has >=25 test examples.
  """

  VERSION = tfds.core.Version('1.0.0')

  def _info(self) -> tfds.core.DatasetInfo:
    return _image_label_info(
        self,
        (8, 8, 1),
        tuple(str(d) for d in range(10)),
        'sklearn load_digits, deterministic 80/20 train/test split.',
    )

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split) for split in ('train', 'test')}

  def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
    from sklearn.datasets import load_digits  # Imported lazily: sklearn is slow to import.

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    for i in digits_split_indices(len(images))[split]:
      yield int(i), {'image': images[i], 'label': int(digits.target[i])}


MNIST1D_LENGTH = 40


class Mnist1dLocal(LocalBuilder):
  """MNIST-1D (Greydanus 2020): 40-step float sequences, 10 classes; train 4000 / test 1000.

  Generated offline by the `mnist1d` package's own generator with its default
  arguments (`make_dataset(get_dataset_args())`, seed 42), the recipe of the
  paper's pickle (byte equality with that pickle is unverified: it needs a
  download). Its download path is never used.
  Examples are 'image' float32 (40, 1) (sequence position, channel), already
  standardised to mean 0 / std 1 over the whole dataset, and 'label' 0..9.
  """

  VERSION = tfds.core.Version('1.0.0')

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='MNIST-1D generated with mnist1d.data.make_dataset(get_dataset_args()).',
        features=tfds.features.FeaturesDict(
            {
                'image': tfds.features.Tensor(shape=(MNIST1D_LENGTH, 1), dtype=np.float32),
                'label': tfds.features.ClassLabel(names=[str(d) for d in range(10)]),
            }
        ),
        supervised_keys=('image', 'label'),
        # Keep the generator's order so split i equals x[i] (and slices like train[:3500]
        # are the generator's first 3500), not TFDS's key-hash shuffle.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    data = generate_mnist1d()
    return {
        'train': self._generate_examples(data['x'], data['y']),
        'test': self._generate_examples(data['x_test'], data['y_test']),
    }

  def _generate_examples(self, x: np.ndarray, y: np.ndarray) -> Iterator[tuple[int, dict]]:
    for i in range(len(y)):
      yield i, {'image': x[i, :, None].astype(np.float32), 'label': int(y[i])}


def generate_mnist1d() -> dict[str, np.ndarray]:
  """The default MNIST-1D arrays ('x', 'y', 'x_test', 'y_test'), from the generator, offline.

  make_dataset reseeds the global `random` and `np.random` generators; their
  states are restored afterwards so generating data never perturbs a caller.
  """
  from mnist1d.data import get_dataset_args, make_dataset  # Lazy: it imports matplotlib.

  args = get_dataset_args()
  if args.final_seq_length != MNIST1D_LENGTH:
    raise DataError(
        f'mnist1d default final_seq_length is {args.final_seq_length}, '
        f'this builder expects {MNIST1D_LENGTH}'
    )
  py_state, np_state = random.getstate(), np.random.get_state()
  try:
    data = make_dataset(args)
  finally:
    random.setstate(py_state)
    np.random.set_state(np_state)
  return {key: data[key] for key in ('x', 'y', 'x_test', 'y_test')}
