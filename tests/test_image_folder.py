"""image_folder: class folders of PNG/JPEG prepared into ArrayRecord; layout and file errors."""

import os
from pathlib import Path

import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxadapt.data import dataset_info, load_split
from jaxadapt.data import image_folder
from jaxadapt.data.datasets import data_source
from jaxadapt.errors import DataError


def _cfg(source, data_dir, **kw) -> ml_collections.ConfigDict:
  base = dict(name='image_folder', source_dir=str(source), data_dir=str(data_dir), classes=())
  return ml_collections.ConfigDict({**base, 'examples_per_class': 0, 'image_size': 0, **kw})


def make_folder(root, classes=('cat', 'dog'), per_class=5, size=(8, 8), split_dirs=True, seed=0):
  """Random RGB PNGs; returns {image bytes: class name} of every image written."""
  rng = np.random.default_rng(seed)
  written = {}
  for split in ('train', 'test') if split_dirs else ('',):
    for c in classes:
      folder = root / split / c
      folder.mkdir(parents=True, exist_ok=True)
      for i in range(per_class):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / f'{i}.png')
        written[(split, image.tobytes())] = c
  return written


def test_prepared_folder_gives_back_every_image_with_its_class(tmp_path):
  """Catches: wrong labels (class folder -> id), lost images, or decoding that changes pixels."""
  written = make_folder(tmp_path / 'src', classes=('zebra', 'ant', 'cat'))
  cfg = _cfg(tmp_path / 'src', tmp_path / 'data')
  info = dataset_info(cfg)
  assert info == {
      'num_classes': 3,
      'class_names': ('ant', 'cat', 'zebra'),
      'image_shape': (8, 8, 3),
  }
  for split in ('train', 'test'):
    arrays = load_split(cfg, split)
    got = {
        img.tobytes(): info['class_names'][l] for img, l in zip(arrays['image'], arrays['label'])
    }
    assert got == {k: c for (s, k), c in written.items() if s == split}
  # Encoded bytes are stored, not pixels: every record is one of the PNG files, byte for byte.
  files = {p.read_bytes() for p in (tmp_path / 'src' / 'train').rglob('*.png')}
  rows = data_source(cfg, 'train')
  assert {rows[i]['image'] for i in range(len(rows))} == files


def test_without_split_folders_images_split_by_a_hash_of_their_path(tmp_path):
  """Catches: a split that depends on listing order or machine, or images in two splits."""
  make_folder(tmp_path / 'src', per_class=30, split_dirs=False)
  listing = image_folder.list_folder(str(tmp_path / 'src'))
  assert set(listing.files) == {'train', 'val', 'test'}
  for split, files in listing.files.items():
    for rel, _ in files:
      assert image_folder.hash_split(rel) == split
  counts = {s: len(f) for s, f in listing.files.items()}
  assert sum(counts.values()) == 60 and counts['train'] > counts['val']
  cfg = _cfg(tmp_path / 'src', tmp_path / 'data')
  assert len(load_split(cfg, 'val')['label']) == counts['val']


def test_unreadable_and_non_image_files_are_listed_in_one_error(tmp_path):
  """Catches: a traceback from Pillow, or one error per file, or data written before the check."""
  make_folder(tmp_path / 'src', split_dirs=False)
  (tmp_path / 'src' / 'cat' / 'broken.png').write_bytes(b'not a png at all')
  good = (tmp_path / 'src' / 'cat' / '0.png').read_bytes()
  (tmp_path / 'src' / 'dog' / 'cut.png').write_bytes(good[: len(good) // 2])
  with pytest.raises(DataError) as e:
    dataset_info(_cfg(tmp_path / 'src', tmp_path / 'data'))
  assert '2 unreadable' in str(e.value) and 'cat/broken.png' in str(e.value)
  assert 'dog/cut.png' in str(e.value)
  assert not list((tmp_path / 'data' / 'image_folder').glob('records_*'))
  assert not list((tmp_path / 'data').rglob('*.array_record*'))

  (tmp_path / 'src' / 'dog' / 'notes.txt').write_text('hi')
  with pytest.raises(DataError, match='not JPEG/PNG.*dog/notes.txt'):
    dataset_info(_cfg(tmp_path / 'src', tmp_path / 'data'))


@pytest.mark.parametrize(
    'layout, message',
    [
        ('empty_class', 'no JPEG/PNG images: dog'),
        ('no_classes', 'no class folders'),
        ('missing', 'is not a directory'),
        ('mixed_splits', 'put every class folder inside'),
    ],
)
def test_malformed_folders_are_named(tmp_path, layout, message):
  """Catches: an empty class silently dropped (labels shift), or a crash on odd layouts."""
  src = tmp_path / 'src'
  src.mkdir()
  if layout == 'empty_class':
    make_folder(src, classes=('cat',), split_dirs=False)
    (src / 'dog').mkdir()
  elif layout == 'mixed_splits':
    make_folder(src, split_dirs=True)
    (src / 'extra').mkdir()
  elif layout == 'missing':
    src = tmp_path / 'nowhere'
  with pytest.raises(DataError, match=message):
    dataset_info(_cfg(src, tmp_path / 'data'))


def test_mixed_sizes_need_image_size_then_resize(tmp_path):
  """Catches: a stack of differently sized images failing deep inside numpy."""
  make_folder(tmp_path / 'src', classes=('a',), size=(8, 8), split_dirs=False)
  make_folder(tmp_path / 'src', classes=('b',), size=(12, 10), split_dirs=False, seed=1)
  with pytest.raises(DataError, match='2 different sizes.*dataset.image_size'):
    dataset_info(_cfg(tmp_path / 'src', tmp_path / 'data'))
  cfg = _cfg(tmp_path / 'src', tmp_path / 'data', image_size=6)
  assert dataset_info(cfg)['image_shape'] == (6, 6, 3)
  assert load_split(cfg, 'train')['image'].shape[1:] == (6, 6, 3)


def test_grayscale_folder_decodes_to_one_channel(tmp_path):
  for c in ('a', 'b'):
    (tmp_path / 'src' / c).mkdir(parents=True)
    for i in range(3):
      Image.fromarray(np.full((5, 5), 40 * i, np.uint8)).save(tmp_path / 'src' / c / f'{i}.png')
  cfg = _cfg(tmp_path / 'src', tmp_path / 'data', train_split='train')
  assert dataset_info(cfg)['image_shape'] == (5, 5, 1)


def test_a_changed_folder_is_prepared_again(tmp_path):
  """Catches: a stale prepared copy silently reused after the user adds images."""
  make_folder(tmp_path / 'src')
  cfg = _cfg(tmp_path / 'src', tmp_path / 'data')
  assert len(load_split(cfg, 'train')['label']) == 10
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
      tmp_path / 'src' / 'train' / 'cat' / 'new.png'
  )
  assert len(load_split(cfg, 'train')['label']) == 11


def test_image_size_is_refused_for_other_datasets(tmp_path):
  cfg = ml_collections.ConfigDict(dict(name='digits', data_dir=str(tmp_path), image_size=4))
  with pytest.raises(DataError, match='only applies to image_folder'):
    dataset_info(cfg)


def test_jpeg_folder_is_read(tmp_path):
  """JPEG decoding path (lossy, so shapes and labels only)."""
  for c in ('a', 'b'):
    (tmp_path / 'src' / 'train' / c).mkdir(parents=True)
    for i in range(2):
      array = np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8)
      Image.fromarray(array).save(tmp_path / 'src' / 'train' / c / f'{i}.jpg', quality=90)
  arrays = load_split(_cfg(tmp_path / 'src', tmp_path / 'data'), 'train')
  assert arrays['image'].shape[1:] == (16, 16, 3)
  assert os.path.isdir(tmp_path / 'data' / 'image_folder')


def test_preparation_streams_images_into_shards_and_reads_every_row_in_order(tmp_path, monkeypatch):
  """Catches: a split held in memory while writing (TFDS's writer held up to 1 GB and then
  needed TensorFlow), rows lost or reordered across shard boundaries, or a slice that crosses
  shards reading the wrong rows."""
  import tracemalloc

  from array_record.python import array_record_module  # noqa: F401  (imported before tracing)

  from jaxadapt.data import folder_records

  make_folder(tmp_path / 'src', per_class=30, size=(96, 96))  # ~28 KB noise PNGs
  listing = image_folder.list_folder(str(tmp_path / 'src'))
  train = folder_records.row_order(listing.files['train'])
  expected = [(listing.root / rel).read_bytes() for rel, _ in train]
  total, largest = sum(map(len, expected)), max(map(len, expected))
  monkeypatch.setattr(folder_records, 'SHARD_BYTES', 4 * largest)
  dest = tmp_path / 'prepared'
  tracemalloc.start()
  try:
    folder_records.write(dest, listing.root, listing.files, listing.class_names, listing.digest)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < total / 4, (peak, total)  # a few images at a time, never the split
  assert len(list(dest.glob('train-*.array_record'))) >= 10
  meta = folder_records.read_meta(dest)
  assert meta['class_names'] == ['cat', 'dog'] and sum(meta['splits']['train']) == len(train)
  rows = folder_records.Records(folder_records.shard_paths(dest, meta, 'train'))
  assert [rows[i]['image'] for i in range(len(rows))] == expected
  assert [rows[i]['label'] for i in range(len(rows))] == [label for _, label in train]
  part = folder_records.Records(folder_records.shard_paths(dest, meta, 'train[5:50]'))
  assert [r['image'] for r in part.__getitems__(list(range(len(part))))] == expected[5:50]


def test_an_interrupted_preparation_is_never_trusted(tmp_path):
  """Catches: a half-written prepared folder (process killed mid-way) read as complete by the
  next run, or its leftovers piling up."""
  import subprocess
  import sys

  make_folder(tmp_path / 'src', per_class=10)
  cfg = _cfg(tmp_path / 'src', tmp_path / 'data')
  dataset_info(cfg)  # the check pass, so the child only writes
  # A child process killed (os._exit: no cleanup runs) after writing 5 images of a split.
  kill = f"""
import os, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
from jaxadapt.data import folder_records, load_split
import ml_collections
order = folder_records.row_order
def dying(files):
  for i, f in enumerate(order(files)):
    if i == 5:
      os._exit(3)
    yield f
folder_records.row_order = dying
load_split(ml_collections.ConfigDict({cfg.to_dict()!r}), 'train')
"""
  assert subprocess.run([sys.executable, '-c', kill]).returncode == 3
  base = tmp_path / 'data' / 'image_folder'
  assert not list(base.glob('records_*')), 'a half-written folder is in place'
  assert len(list(base.glob('.records_*.tmp.*'))) == 1  # it did die mid-way
  arrays = load_split(cfg, 'train')
  assert len(arrays['label']) == 20
  assert not list(base.glob('.records_*.tmp.*'))  # the dead process's leftovers are removed


def test_a_failed_preparation_removes_its_files_and_a_retry_succeeds(tmp_path, monkeypatch):
  """Catches: an exception mid-way (disk full, unreadable file) leaving a prepared folder or
  temporary files behind."""
  from jaxadapt.data import folder_records

  make_folder(tmp_path / 'src', per_class=10)
  cfg = _cfg(tmp_path / 'src', tmp_path / 'data')
  order = folder_records.row_order

  def failing(files):
    for i, f in enumerate(order(files)):
      if i == 5:
        raise OSError('No space left on device')
      yield f

  monkeypatch.setattr(folder_records, 'row_order', failing)
  with pytest.raises(OSError, match='No space'):
    load_split(cfg, 'train')
  assert not list((tmp_path / 'data' / 'image_folder').glob('*records_*'))
  monkeypatch.setattr(folder_records, 'row_order', order)
  assert len(load_split(cfg, 'test')['label']) == 20
