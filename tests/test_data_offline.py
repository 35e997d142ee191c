"""TFDS catalog datasets read offline from prepared data; damaged source files named.

The catalog test prepares a tiny dataset in TFDS's own on-disk format under the catalog
name `cifar10` (same version and features as the catalog builder, PNG-encoded images,
array_record files), exactly what `tfds build cifar10 --file_format array_record` leaves
in a data_dir; jaxadapt then reads it through the real catalog builder.
"""

import gzip
import io
import pathlib
import shutil
import struct
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from jaxadapt import cli
from jaxadapt.data import dataset_info, load_split
from jaxadapt.errors import DataError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'
N_TRAIN, N_TEST = 40, 20


def _png(array: np.ndarray) -> bytes:
  from PIL import Image

  out = io.BytesIO()
  Image.fromarray(array).save(out, format='PNG')
  return out.getvalue()


def _images(n: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


class _TinyCifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Writes a few random images as a prepared `cifar10` (the catalog's name and version)."""

  name = 'cifar10'
  VERSION = tfds.builder_cls('cifar10').VERSION

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict(
            {
                'id': tfds.features.Text(),
                'image': tfds.features.Image(shape=(32, 32, 3)),
                'label': tfds.features.ClassLabel(num_classes=10),
            }
        ),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    return {
        'train': self._generate_examples(N_TRAIN, 0),
        'test': self._generate_examples(N_TEST, 1),
    }

  def _generate_examples(self, n, seed):
    for i, image in enumerate(_images(n, seed)):
      yield i, {'id': f'{seed}_{i}', 'image': _png(image), 'label': i % 10}


@pytest.fixture(scope='module')
def catalog_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds_catalog')
  _TinyCifar10(data_dir=str(data_dir), file_format='array_record').download_and_prepare()
  return data_dir


def _cfg(**kw):
  import ml_collections

  base = dict(name='cifar10', data_dir=None, source_dir=None, classes=(), examples_per_class=0)
  return ml_collections.ConfigDict({**base, 'subset_seed': 0, **kw})


def test_catalog_dataset_prepared_locally_is_read_through_the_catalog_builder(catalog_dir):
  cfg = _cfg(data_dir=str(catalog_dir))
  assert dataset_info(cfg) == {
      'num_classes': 10,
      'image_shape': (32, 32, 3),
      'class_names': tuple(str(i) for i in range(10)),
  }
  train = load_split(cfg, 'train')
  assert train['image'].shape == (N_TRAIN, 32, 32, 3) and train['image'].dtype == np.uint8
  # Every generated image comes back with its label (PNG is lossless).
  expected = {img.tobytes(): i % 10 for i, img in enumerate(_images(N_TRAIN, 0))}
  assert {img.tobytes(): int(l) for img, l in zip(train['image'], train['label'])} == expected


def test_training_on_a_catalog_dataset(catalog_dir, tmp_path, capsys):
  args = [
      '--config.dataset.name=cifar10',
      f'--config.dataset.data_dir={catalog_dir}',
      '--config.dataset.train_split=train[:32]',
      '--config.dataset.val_split=train[32:]',
      '--config.dataset.test_split=test',
      '--config.batch_size=16',
      '--config.eval_batch_size=16',
  ]
  code = cli.main(['train', '--quiet', '--config', SMOKE, '--workdir', str(tmp_path / 'w'), *args])
  assert code == 0, capsys.readouterr().err
  assert (tmp_path / 'w' / 'summary.json').exists()


def test_unprepared_catalog_dataset_fails_in_seconds_and_leaves_nothing(tmp_path, capsys):
  """Catches the download path: minutes of retries without network, partial files left."""
  data_dir, wd = tmp_path / 'empty_data_dir', tmp_path / 'run'
  t0 = time.perf_counter()
  code = cli.main(
      ['train', '--config', SMOKE, '--workdir', str(wd), '--config.dataset.name=cifar10']
      + [f'--config.dataset.data_dir={data_dir}']
  )
  seconds = time.perf_counter() - t0
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1, err
  assert "TFDS dataset 'cifar10' is not prepared in" in err and 'tfds build cifar10' in err, err
  assert seconds < 30, seconds
  assert not data_dir.exists() and not wd.exists()


# ------------------------------------------------------ damaged Fashion-MNIST sources


def _write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f'>{array.ndim}i', *array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def source_dir(tmp_path):
  rng = np.random.default_rng(0)
  for prefix, n in (('train', 30), ('t10k', 10)):
    _write_idx(tmp_path / f'{prefix}-images-idx3-ubyte.gz', rng.integers(0, 256, (n, 28, 28)))
    _write_idx(tmp_path / f'{prefix}-labels-idx1-ubyte.gz', np.arange(n) % 10)
  return tmp_path


def _truncate(path):
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path):
  path.write_bytes(np.random.default_rng(1).bytes(path.stat().st_size))


@pytest.mark.parametrize('damage', [_truncate, _garble], ids=['truncated', 'garbled'])
def test_a_damaged_gz_is_named_with_the_fix(source_dir, tmp_path, damage):
  """Catches a 50-line zlib/EOFError traceback that never names the file."""
  bad = source_dir / 't10k-images-idx3-ubyte.gz'
  damage(bad)
  cfg = _cfg(name='fashion_mnist', data_dir=str(tmp_path / 'tfds'), source_dir=str(source_dir))
  with pytest.raises(DataError) as info:
    load_split(cfg, 'test')
  message = str(info.value)
  assert str(bad) in message and 'apt-get install --reinstall dataset-fashion-mnist' in message
  assert '\n' not in message
