"""Tests for jaxadapt.data: builders, split loading, batching and preprocessing (no real data needed)."""

import gzip
import os
import struct

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from mnist1d.data import get_dataset_args, make_dataset

from jaxadapt.data import (
    BatchSource,
    dataset_info,
    eval_batches,
    generate_mnist1d,
    load_split,
    make_preprocess,
    output_shape,
    read_idx,
)
from jaxadapt.data.preprocess import permutation
from jaxadapt.errors import DataError

REAL_DIR = '/usr/share/datasets/fashion-mnist'
N_TRAIN, N_TEST = 50, 20


def _write_idx(path, array: np.ndarray) -> None:
  header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f'>{array.ndim}i', *array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _fake_split(source_dir, prefix: str, n: int, seed: int):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
  labels = (np.arange(n) % 10).astype(np.uint8)
  _write_idx(source_dir / f'{prefix}-images-idx3-ubyte.gz', images)
  _write_idx(source_dir / f'{prefix}-labels-idx1-ubyte.gz', labels)
  return images, labels


@pytest.fixture(scope='module')
def fake(tmp_path_factory):
  source_dir = tmp_path_factory.mktemp('fashion_src')
  train = _fake_split(source_dir, 'train', N_TRAIN, 0)
  test = _fake_split(source_dir, 't10k', N_TEST, 1)
  data_dir = tmp_path_factory.mktemp('tfds')
  return {'source_dir': str(source_dir), 'data_dir': str(data_dir), 'train': train, 'test': test}


def _cfg(name='fashion_mnist', **overrides):
  cfg = ml_collections.ConfigDict(
      dict(
          name=name, data_dir=None, source_dir=None, classes=(), examples_per_class=0, subset_seed=0
      )
  )
  cfg.update(overrides)
  return cfg


def _fake_cfg(fake, **overrides):
  return _cfg(data_dir=fake['data_dir'], source_dir=fake['source_dir'], **overrides)


def _by_bytes(images, labels):
  return {img.tobytes(): int(lab) for img, lab in zip(images, labels)}


# ---- builders and load_split ----


def test_read_idx_plain_and_gzip(tmp_path):
  array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
  _write_idx(tmp_path / 'a.gz', array)
  (tmp_path / 'a').write_bytes(gzip.decompress((tmp_path / 'a.gz').read_bytes()))
  np.testing.assert_array_equal(read_idx(tmp_path / 'a.gz'), array)
  np.testing.assert_array_equal(read_idx(tmp_path / 'a'), array)
  (tmp_path / 'bad').write_bytes(b'\x01\x02\x08\x01')
  with pytest.raises(DataError, match='magic'):
    read_idx(tmp_path / 'bad')


def test_fake_fashion_round_trip_and_slicing(fake):
  cfg = _fake_cfg(fake)
  train = load_split(cfg, 'train')
  assert train['image'].shape == (N_TRAIN, 28, 28, 1) and train['image'].dtype == np.uint8
  assert train['label'].dtype == np.int32
  images, labels = fake['train']
  assert _by_bytes(train['image'][..., 0], train['label']) == _by_bytes(images, labels)
  assert len(load_split(cfg, 'test')['label']) == N_TEST

  head, tail = load_split(cfg, 'train[:80%]'), load_split(cfg, 'train[80%:]')
  assert len(head['label']) == 40 and len(tail['label']) == 10
  assert not set(_by_bytes(head['image'], head['label'])) & set(
      _by_bytes(tail['image'], tail['label'])
  )
  info = dataset_info(cfg)
  assert info['num_classes'] == 10 and info['image_shape'] == (28, 28, 1)
  assert info['class_names'][0] == 'T-shirt/top' and len(info['class_names']) == 10


def test_missing_files_one_line_error(tmp_path):
  cfg = _cfg(data_dir=str(tmp_path / 'tfds'), source_dir=str(tmp_path / 'nothing_here'))
  with pytest.raises(DataError) as info:
    load_split(cfg, 'train')
  message = str(info.value)
  assert 'apt-get install dataset-fashion-mnist' in message and 'source_dir' in message
  assert '\n' not in message


def test_digits_shape_and_disjoint_splits(tmp_path):
  cfg = _cfg('digits', data_dir=str(tmp_path))
  train, test = load_split(cfg, 'train'), load_split(cfg, 'test')
  assert train['image'].shape[1:] == (8, 8, 1) and train['image'].dtype == np.uint8
  assert len(train['label']) + len(test['label']) == 1797
  assert train['image'].max() == 255
  assert not set(_by_bytes(train['image'], train['label'])) & set(
      _by_bytes(test['image'], test['label'])
  )
  assert dataset_info(cfg)['image_shape'] == (8, 8, 1)


def test_classes_are_remapped_in_given_order(fake):
  full = load_split(_fake_cfg(fake), 'train')
  cfg = _fake_cfg(fake, classes=(7, 2))
  sub = load_split(cfg, 'train')
  assert set(sub['label']) == {0, 1}
  full_map = _by_bytes(full['image'], full['label'])
  for key, label in _by_bytes(sub['image'], sub['label']).items():
    assert full_map[key] == (7, 2)[label]
  assert dataset_info(cfg)['num_classes'] == 2


def test_examples_per_class(fake):
  def pick(seed):
    return load_split(_fake_cfg(fake, examples_per_class=2, subset_seed=seed), 'train')

  a, b, c = pick(0), pick(0), pick(1)
  assert np.bincount(a['label']).tolist() == [2] * 10
  np.testing.assert_array_equal(a['image'], b['image'])
  assert not np.array_equal(a['image'], c['image'])
  with pytest.raises(DataError, match='fewer than.*keep_small_classes'):
    load_split(_fake_cfg(fake, examples_per_class=6), 'train')
  # 50 examples, 5 per class: keep_small_classes keeps all 5 of each, no repeats.
  small = load_split(_fake_cfg(fake, examples_per_class=6, keep_small_classes=True), 'train')
  assert np.bincount(small['label']).tolist() == [5] * 10
  assert len({img.tobytes() for img in small['image']}) == 50


def test_unknown_dataset_suggests_close_name():
  with pytest.raises(DataError, match="did you mean 'fashion_mnist'"):
    load_split(_cfg('fashon_mnist'), 'train')


@pytest.mark.skipif(not os.path.isdir(REAL_DIR), reason='dataset-fashion-mnist not installed')
def test_real_fashion_mnist(tmp_path):
  cfg = _cfg(data_dir=str(tmp_path))
  test = load_split(cfg, 'test')
  assert test['image'].shape == (10000, 28, 28, 1)
  assert np.bincount(test['label']).tolist() == [1000] * 10


# ---- pipeline ----


def test_mnist1d_builder_equals_the_generator(mnist1d_data_dir):
  np.random.seed(123)
  before = np.random.get_state()[1].copy()
  direct = make_dataset(get_dataset_args())  # the package's own call (it reseeds globally)
  np.random.seed(123)
  generate_mnist1d()
  np.testing.assert_array_equal(np.random.get_state()[1], before)  # caller's RNG untouched

  cfg = _cfg('mnist1d', data_dir=mnist1d_data_dir)
  assert dataset_info(cfg) == {
      'num_classes': 10,
      'image_shape': (40, 1),
      'class_names': tuple(str(i) for i in range(10)),
  }
  train, test = load_split(cfg, 'train'), load_split(cfg, 'test')
  assert train['image'].shape == (4000, 40, 1) and train['image'].dtype == np.float32
  assert test['image'].shape == (1000, 40, 1) and train['label'].dtype == np.int32
  # Same arrays in the same order (float64 -> float32 is the only change).
  np.testing.assert_array_equal(train['image'][..., 0], direct['x'].astype(np.float32))
  np.testing.assert_array_equal(train['label'], direct['y'])
  np.testing.assert_array_equal(test['image'][..., 0], direct['x_test'].astype(np.float32))
  np.testing.assert_array_equal(test['label'], direct['y_test'])
  head, tail = load_split(cfg, 'train[:3500]'), load_split(cfg, 'train[3500:]')
  assert len(head['label']) == 3500 and len(tail['label']) == 500
  np.testing.assert_array_equal(tail['image'], train['image'][3500:])


def _arrays(n=23):
  return {'image': np.arange(n * 2, dtype=np.float32).reshape(n, 2), 'label': np.arange(n)}


def test_batches_deterministic_and_resumable():
  a, b = BatchSource(_arrays(), 4, seed=0), BatchSource(_arrays(), 4, seed=0)
  assert a.steps_per_epoch == 5
  steps = range(12)  # Crosses two epoch boundaries.
  first = [a.batch(s)['label'] for s in steps]
  assert all(np.array_equal(x, b.batch(s)['label']) for s, x in zip(steps, first))
  assert np.array_equal(BatchSource(_arrays(), 4, seed=0).batch(7)['label'], first[7])
  other = BatchSource(_arrays(), 4, seed=1)
  assert not all(np.array_equal(x, other.batch(s)['label']) for s, x in zip(steps, first))
  epoch0 = np.concatenate(first[:5])
  assert len(set(epoch0)) == 20  # No repeats within an epoch.
  assert not np.array_equal(epoch0, np.concatenate(first[5:10]))  # Reshuffled per epoch.


def test_process_slices_concatenate_to_global_batch():
  single = BatchSource(_arrays(), 8, seed=3)
  parts = [BatchSource(_arrays(), 8, seed=3, process_index=p, process_count=2) for p in range(2)]
  for step in range(6):
    joined = np.concatenate([p.batch(step)['label'] for p in parts])
    np.testing.assert_array_equal(joined, single.batch(step)['label'])


def test_no_shuffle_and_remainder():
  source = BatchSource(_arrays(10), 4, seed=0, shuffle=False, drop_remainder=False)
  assert source.steps_per_epoch == 3
  assert source.batch(2)['label'].tolist() == [8, 9]
  with pytest.raises(DataError, match='divisible'):
    BatchSource(_arrays(), 6, seed=0, process_count=4)
  with pytest.raises(DataError, match='exceeds'):
    BatchSource(_arrays(), 32, seed=0)


def test_eval_batches_cover_each_example_once():
  arrays = _arrays(23)
  seen = []
  for p in range(2):
    for batch in eval_batches(arrays, 8, process_index=p, process_count=2):
      assert batch['label'].shape == (4,) and batch['mask'].shape == (4,)
      seen.extend(batch['label'][batch['mask'] == 1].tolist())
  assert sorted(seen) == list(range(23))


# ---- preprocess ----


def test_preprocess_shapes_and_dtype():
  images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
  spec = 'scale|normalize(0.286,0.353)|resize(32)|pad_crop(4)|flip|gray2rgb'
  fn = jax.jit(make_preprocess(spec), static_argnames='train')
  out = fn(images, jax.random.key(0), train=True)
  assert out.shape == (3, 32, 32, 3) and out.dtype == np.float32
  assert output_shape(spec, (28, 28, 1)) == (32, 32, 3)
  assert output_shape('resize(16,8)', (28, 28, 1)) == (16, 8, 1)
  scaled = make_preprocess('scale')(images)
  assert 0.0 <= float(scaled.min()) and float(scaled.max()) <= 1.0


def test_random_ops_identity_in_eval_and_deterministic_in_train():
  images = np.random.default_rng(0).integers(0, 256, (16, 12, 12, 1), dtype=np.uint8)
  fn = jax.jit(make_preprocess('pad_crop(3)|flip'), static_argnames='train')
  np.testing.assert_array_equal(
      fn(images, jax.random.key(5), train=False), images.astype(np.float32)
  )
  key = jax.random.fold_in(jax.random.key(1), 7)
  a, b = fn(images, key, train=True), fn(images, key, train=True)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, fn(images, jax.random.key(2), train=True))
  assert not np.array_equal(a, images.astype(np.float32))


def test_flip_flips_only_horizontally():
  images = np.random.default_rng(0).integers(0, 256, (32, 5, 5, 1), dtype=np.uint8)
  out = np.asarray(make_preprocess('flip')(images, jax.random.key(0), train=True))
  flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
  kept = [np.array_equal(o, i) for o, i in zip(out, images)]
  assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_preprocess_errors():
  with pytest.raises(
      DataError, match=r"unknown preprocessing op 'flp'.*valid ops: .*did you mean 'flip'"
  ):
    make_preprocess('scale|flp')
  with pytest.raises(DataError, match="op 'resize' expects"):
    make_preprocess('resize(1,2,3)')
  with pytest.raises(DataError, match="op 'pad_crop' expects"):
    make_preprocess('pad_crop(1.5)')
  with pytest.raises(DataError, match='gray2rgb needs 1-channel'):
    output_shape('gray2rgb', (8, 8, 3))


def test_permute_is_one_fixed_invertible_permutation():
  x = jax.random.normal(jax.random.key(0), (5, 40, 1))
  order = np.random.RandomState(42).permutation(40)  # the paper notebook's shuffle
  np.testing.assert_array_equal(permutation(42, 40), order)
  pre = make_preprocess('permute(42)')
  y_train = pre(x, jax.random.key(1), True)
  y_eval = pre(x, None, False)
  np.testing.assert_array_equal(y_train, y_eval)  # train and eval agree
  np.testing.assert_array_equal(y_eval, np.asarray(x)[:, order])  # same order for every row
  assert not np.array_equal(y_eval, x)
  np.testing.assert_array_equal(np.asarray(y_eval)[:, np.argsort(order)], x)  # invertible
  assert not np.array_equal(make_preprocess('permute(0)')(x), y_eval)
  assert output_shape('permute(42)', (40, 1)) == (40, 1)


def test_permute_on_images_moves_pixels_with_their_channels():
  x = jnp.arange(2 * 3 * 4 * 2, dtype=jnp.float32).reshape(2, 3, 4, 2)
  y = make_preprocess('permute(7)')(x)
  order = permutation(7, 12)
  np.testing.assert_array_equal(y, np.asarray(x).reshape(2, 12, 2)[:, order].reshape(x.shape))


def test_sequence_preprocess_errors():
  with pytest.raises(DataError, match=r'permute\(seed\) with an integer seed'):
    make_preprocess('permute(1.5)')
  with pytest.raises(DataError, match="'flip' needs images"):
    output_shape('flip', (40, 1))
  with pytest.raises(DataError, match="'pad_crop' needs images"):
    make_preprocess('pad_crop(2)')(jnp.zeros((2, 40, 1)), jax.random.key(0), True)
  assert output_shape('normalize(0,1)', (40, 1)) == (40, 1)
