"""Streaming input path: grain batches equal BatchSource's, resume, processes, host ops."""

import json
import pathlib

import ml_collections
import numpy as np
import pytest

from jaxadapt import cli, config as config_lib, validate
from jaxadapt.data import BatchSource, dataset_info, host_ops, load_split
from jaxadapt.data.datasets import data_source
from jaxadapt.data.stream import StreamSource
from jaxadapt.errors import DataError, UserError
from test_image_folder import make_folder

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / 'configs/fashion_mnist/scratch.py') + ':smoke'
STEPS = 9  # three epochs of 3 batches of 4 over 12 (train) examples: crosses epoch boundaries


def _cfg(source, data_dir, **kw) -> ml_collections.ConfigDict:
  base = dict(name='image_folder', source_dir=str(source), data_dir=str(data_dir), classes=())
  return ml_collections.ConfigDict({**base, 'examples_per_class': 0, 'image_size': 0, **kw})


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp('stream')
  make_folder(root / 'src', classes=('a', 'b', 'c'), per_class=4, size=(10, 10))
  return _cfg(root / 'src', root / 'data')


def _stream(cfg, batch, seed=0, split='train', **kw) -> StreamSource:
  shape = dataset_info(cfg)['image_shape']
  return StreamSource(data_source(cfg, split), batch, seed, shape=shape, **kw)


def _equal(a: dict, b: dict) -> bool:
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_streamed_batches_equal_the_in_memory_order(folder):
  """Catches: a global order that differs from BatchSource's (stream and memory runs diverge)."""
  reference = BatchSource(load_split(folder, 'train'), 4, seed=5)
  streamed = _stream(folder, 4, seed=5)
  for step in range(STEPS):
    assert _equal(streamed.batch(step), reference.batch(step)), step
  assert streamed.steps_per_epoch == reference.steps_per_epoch == 3


def test_resume_mid_epoch_is_bitwise_the_uninterrupted_stream(folder):
  """Catches: iterator state that a restart loses (a resumed run would see other batches)."""
  host = 'random_resized_crop(0.3)|flip'
  full = _stream(folder, 4, seed=1, host_spec=host)
  uninterrupted = [full.batch(s) for s in range(STEPS)]
  resumed = _stream(folder, 4, seed=1, host_spec=host)
  for step in (4, 5, 6, 7, 8):  # from the middle of the second epoch
    assert _equal(resumed.batch(step), uninterrupted[step]), step
  assert _equal(resumed.batch(2), uninterrupted[2])  # going back restarts there too
  assert not _equal(uninterrupted[0], uninterrupted[3])  # epochs reshuffle and re-augment


def test_two_processes_read_disjoint_rows_that_cover_the_batch(folder):
  """Catches: processes reading the same rows, or host augmentation seeded by the local row."""
  host = 'random_resized_crop(0.3)|flip'
  single = _stream(folder, 4, seed=2, host_spec=host)
  halves = [
      _stream(folder, 4, seed=2, host_spec=host, process_index=p, process_count=2) for p in range(2)
  ]
  for step in range(4):
    parts = [h.batch(step) for h in halves]
    assert all(len(p['label']) == 2 for p in parts)
    joined = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    assert _equal(joined, single.batch(step))
    rows = [{img.tobytes() for img in p['image']} for p in parts]
    assert not rows[0] & rows[1]


def test_worker_processes_give_the_same_batches(folder):
  """Catches: state that does not survive pickling into grain's worker processes."""
  threads = _stream(folder, 4, seed=3, host_spec='flip')
  workers = _stream(folder, 4, seed=3, host_spec='flip', workers=1)
  try:
    for step in range(4):
      assert _equal(workers.batch(step), threads.batch(step))
  finally:
    workers.close()


def test_a_catalog_format_dataset_streams(tmp_path):
  """A locally prepared array_record builder (digits) streams the in-memory batches."""
  cfg = ml_collections.ConfigDict(
      dict(name='digits', data_dir=str(tmp_path), source_dir=None, classes=(), image_size=0)
  )
  cfg.examples_per_class = 0
  reference = BatchSource(load_split(cfg, 'train[:200]'), 32, seed=0)
  streamed = _stream(cfg, 32, split='train[:200]')
  for step in range(8):  # 6 batches per epoch
    assert _equal(streamed.batch(step), reference.batch(step)), step


def test_host_ops_are_a_pure_function_of_the_rng():
  image = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
  fn = host_ops.HostTransform('random_resized_crop(0.2)|flip')
  a = fn(image, np.random.default_rng([0, 1, 2]), (16, 16))
  assert a.shape == (16, 16, 3) and a.dtype == np.uint8
  assert np.array_equal(a, fn(image, np.random.default_rng([0, 1, 2]), (16, 16)))
  others = [fn(image, np.random.default_rng([0, 1, j]), (16, 16)) for j in range(3, 8)]
  assert not all(np.array_equal(a, o) for o in others)
  flipped = host_ops.HostTransform('flip')
  outs = {flipped(image, np.random.default_rng(s), (40, 30)).tobytes() for s in range(20)}
  assert outs == {image.tobytes(), image[:, ::-1].tobytes()}
  normed = host_ops.HostTransform('normalize(0.5,0.25)')(image, None, (40, 30))
  np.testing.assert_allclose(normed, (image / 255.0 - 0.5) / 0.25, atol=1e-6)


def test_crop_box_stays_inside_and_covers_the_requested_area():
  rng = np.random.default_rng(0)
  for _ in range(200):
    top, left, h, w = host_ops.crop_box(50, 80, rng, 0.25, 0.5)
    assert 0 <= top and top + h <= 50 and 0 <= left and left + w <= 80
    assert 0.2 * 4000 <= h * w <= 0.55 * 4000


def test_bad_host_spec_and_streaming_limits_are_user_errors(folder):
  with pytest.raises(DataError, match="unknown host op 'flp'.*did you mean 'flip'"):
    host_ops.parse('flp')
  with pytest.raises(DataError, match='random_resized_crop'):
    host_ops.parse('random_resized_crop(2)')
  config = config_lib.load_config(SMOKE, ['--config.preprocess.host_train=flip'])
  with pytest.raises(UserError, match='dataset.stream=True'):
    validate.validate(config)


def test_training_streamed_equals_training_in_memory(folder, tmp_path, capsys):
  """Catches: the trainer not using the stream, or streamed batches differing from memory's."""
  common = [
      '--quiet',
      '--config',
      SMOKE,
      '--config.dataset.name=image_folder',
      f'--config.dataset.source_dir={folder.source_dir}',
      f'--config.dataset.data_dir={folder.data_dir}',
      '--config.dataset.train_split=train',
      '--config.dataset.val_split=test',
      '--config.dataset.test_split=test',
      '--config.preprocess.train=scale',
      '--config.preprocess.eval=scale',
      '--config.batch_size=8',
      '--config.eval_batch_size=8',
      '--config.num_steps=3',
      '--config.dataset.workers=0',
  ]
  summaries = {}
  for stream in ('False', 'True'):
    workdir = tmp_path / stream
    code = cli.main(
        ['train', '--workdir', str(workdir), *common, f'--config.dataset.stream={stream}']
    )
    assert code == 0, capsys.readouterr().err
    summaries[stream] = json.loads((workdir / 'summary.json').read_text())
  for key in ('test/accuracy', 'test/loss', 'val/loss'):
    assert summaries['True'][key] == summaries['False'][key], key


@pytest.mark.parametrize('dataset', ['image_folder', 'digits'])
def test_class_and_k_shot_subsets_stream_the_in_memory_batches(folder, tmp_path, dataset):
  """Catches: streaming ignoring dataset.classes / examples_per_class (training on every class
  with the wrong label ids), or picking other examples than the in-memory path."""
  from jaxadapt.data import stream
  from jaxadapt.defaults import base_config

  config = base_config()
  if dataset == 'image_folder':
    config.dataset.update(folder.to_dict())
  else:
    config.dataset.update(name='digits', data_dir=str(tmp_path), source_dir=None)
  config.dataset.update(
      train_split='train', classes=(2, 0), examples_per_class=3, subset_seed=4, workers=0
  )
  config.batch_size, config.seed = 2, 7
  memory = load_split(config.dataset, 'train')
  assert sorted(memory['label']) == [0, 0, 0, 1, 1, 1]  # classes 2 and 0 -> ids 0 and 1
  reference = BatchSource(memory, 2, seed=7)
  streamed = stream.stream_source(config)
  for step in range(5):  # 3 batches per epoch
    assert _equal(streamed.batch(step), reference.batch(step)), step
