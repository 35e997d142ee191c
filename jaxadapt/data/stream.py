"""Streaming training batches through grain: BatchSource's batches, read from disk.

A StreamSource reads rows of a prepared split (tfds.data_source over ArrayRecord: a catalog
dataset, a local builder, or an image_folder) by random access. Global batch `step` holds the
rows `epoch_order(seed, epoch)[within * B : (within + 1) * B]`, exactly as BatchSource, so a
batch is a pure function of (seed, step): resuming at any step needs no iterator state, and
streamed batches equal in-memory ones. Each process reads only its own rows of every batch.

grain runs the per-example work (read, decode, preprocess.host_train) in `workers` processes
with prefetch; the trainer asks for steps in order, and asking for any other step restarts the
pipeline there. Memory holds the prefetched batches and one epoch order (8 bytes per example),
never the split. dataset.classes / examples_per_class stream `Rows`: the rows and new labels
that load_split would keep, chosen from the split's labels alone.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from jaxadapt.data import host_ops, image_folder
from jaxadapt.data.pipeline import _check_processes, epoch_order
from jaxadapt.errors import DataError

# Steps one pipeline covers from its start; far beyond any run (a restart happens past it).
_HORIZON = 1 << 40


def _stack(examples: Sequence[dict]) -> dict[str, np.ndarray]:
  return {key: np.stack([ex[key] for ex in examples]) for key in examples[0]}


class _Example:
  """Position k of this process's stream -> its example, decoded and augmented (picklable)."""

  def __init__(
      self,
      source,
      seed: int,
      global_batch: int,
      process_index: int,
      process_count: int,
      shape: tuple[int, ...] | None,
      host_spec: str,
  ):
    self.source, self.seed, self.global_batch = source, seed, global_batch
    self.local_batch = global_batch // process_count
    self.first_row = process_index * self.local_batch
    self.num_examples = len(source)
    self.steps_per_epoch = self.num_examples // global_batch
    self.shape, self.host_spec = shape, host_spec
    self._transform = host_ops.HostTransform(host_spec) if host_spec else None
    self._order: tuple[int, np.ndarray] | None = None  # (epoch, order): pure memo

  def __getstate__(self) -> dict:
    return {**self.__dict__, '_order': None, '_transform': None}

  def __setstate__(self, state: dict) -> None:
    self.__dict__.update(state)
    self._transform = host_ops.HostTransform(self.host_spec) if self.host_spec else None

  def index(self, step: int, j: int) -> int:
    """Row of the split at row first_row + j of global batch `step`."""
    epoch, within = divmod(step, self.steps_per_epoch)
    if self._order is None or self._order[0] != epoch:
      self._order = (epoch, epoch_order(self.seed, epoch, self.num_examples))
    return int(self._order[1][within * self.global_batch + self.first_row + j])

  def __call__(self, position: int) -> dict[str, np.ndarray]:
    step, j = divmod(position, self.local_batch)
    record = self.source[self.index(step, j)]
    image = record['image']
    if isinstance(image, bytes):  # image_folder: encoded; decoded at its own size first
      image = image_folder.decode(image, self.shape[2])
    if self._transform is not None:
      # Seeded by where the example lands in the global batch: independent of processes.
      rng = np.random.default_rng([self.seed, step, self.first_row + j])
      image = self._transform(image, rng, self.shape[:2])
    elif image.shape != tuple(self.shape):
      image = host_ops.resize(image, self.shape[:2])
    return {'image': image, 'label': np.int32(record['label'])}


def _mark_flags_parsed() -> None:
  """grain <= 0.2.18 reads an absl flag when starting workers, which fails unless absl parsed
  the command line (google/grain#1355); jaxadapt does not use absl flags, so take defaults."""
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class Rows:
  """Rows `rows` of a source with new labels (dataset.classes / examples_per_class)."""

  def __init__(self, source, rows: np.ndarray, labels: np.ndarray):
    self.source, self.rows, self.labels = source, rows, labels

  def __len__(self) -> int:
    return len(self.rows)

  def __getitem__(self, index: int) -> dict:
    return {**self.source[int(self.rows[index])], 'label': self.labels[index]}


class StreamSource:
  """Training batches read by grain; `batch(step)` equals BatchSource's for the same rows."""

  def __init__(
      self,
      source,
      global_batch_size: int,
      seed: int,
      *,
      shape: tuple[int, ...],
      host_spec: str = '',
      process_index: int = 0,
      process_count: int = 1,
      workers: int = 0,
      prefetch: int = 2,
  ):
    _check_processes(global_batch_size, process_index, process_count)
    self.num_examples = len(source)
    if global_batch_size > self.num_examples:
      raise DataError(
          f'global batch size {global_batch_size} exceeds the {self.num_examples} '
          f'examples available'
      )
    self.global_batch_size = global_batch_size
    self.workers, self.prefetch = workers, prefetch
    self._example = _Example(
        source, seed, global_batch_size, process_index, process_count, shape, host_spec
    )
    self._iter, self._next, self._last = None, None, None

  @property
  def steps_per_epoch(self) -> int:
    return self.num_examples // self.global_batch_size

  def _start(self, step: int):
    import grain  # Lazy: only streaming runs import grain.

    b = self._example.local_batch
    ds = grain.MapDataset.range(step * b, (step + _HORIZON) * b).map(self._example)
    ds = ds.batch(b, batch_fn=_stack).to_iter_dataset(
        grain.ReadOptions(num_threads=2, prefetch_buffer_size=self.prefetch)
    )
    if self.workers:
      _mark_flags_parsed()
      ds = ds.mp_prefetch(
          grain.MultiprocessingOptions(
              num_workers=self.workers, per_worker_buffer_size=self.prefetch
          )
      )
    return iter(ds)

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """This process's rows of global batch `step` (a pure function of (seed, step))."""
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}')
    if self._last is not None and self._last[0] == step:
      return self._last[1]
    if self._iter is None or step != self._next:
      self.close()
      self._iter = self._start(step)
    batch = next(self._iter)
    self._next, self._last = step + 1, (step, batch)
    return batch

  def close(self) -> None:
    """Stop the worker processes (they also stop when the source is garbage-collected)."""
    it, self._iter = self._iter, None
    if it is not None and hasattr(it, 'close'):
      it.close()


def stream_source(config: Any) -> StreamSource:
  """The streaming training source of `config` for this process."""
  import jax

  from jaxadapt.data import datasets

  cfg = config.dataset
  if datasets.is_text(cfg):
    raise DataError('dataset.stream=True streams images; text datasets load in memory')
  shape = datasets.dataset_info(cfg)['image_shape']
  source = datasets.data_source(cfg, cfg.train_split)
  selected = datasets.selected_rows(cfg, cfg.train_split)
  if selected is not None:
    source = Rows(source, *selected)
  return StreamSource(
      source,
      config.batch_size,
      config.seed,
      shape=tuple(shape),
      host_spec=config.preprocess.host_train,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
      workers=int(cfg.workers),
  )
