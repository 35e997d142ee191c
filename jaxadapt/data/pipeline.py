"""Stateless, resumable batching of in-memory arrays, plus exact (padded + masked) eval batches."""

from __future__ import annotations

from typing import Any, Iterator

import jax

import numpy as np

from jaxadapt.errors import DataError


def _num_examples(arrays: dict[str, np.ndarray]) -> int:
  sizes = {len(v) for v in arrays.values()}
  if len(sizes) != 1:
    raise ValueError(f'arrays have different lengths: { {k: len(v) for k, v in arrays.items()} }')
  return sizes.pop()


def _process_rows(batch_size: int, process_index: int, process_count: int) -> slice:
  """Rows of a global batch owned by one process: [p*B/P, (p+1)*B/P)."""
  return slice(
      process_index * batch_size // process_count, (process_index + 1) * batch_size // process_count
  )


def _check_processes(batch_size: int, process_index: int, process_count: int) -> None:
  if batch_size <= 0 or batch_size % process_count:
    raise DataError(
        f'global batch size {batch_size} must be positive and divisible by '
        f'process_count={process_count}'
    )
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} not in [0, {process_count})')


def epoch_order(seed: int, epoch: int, num_examples: int, shuffle: bool = True) -> np.ndarray:
  """The order epoch `epoch` visits the examples: `default_rng([seed, epoch]).permutation(N)`."""
  if not shuffle:
    return np.arange(num_examples)
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


class BatchSource:
  """Training batches whose content is a pure function of (seed, step).

  Epoch e = step // steps_per_epoch visits the examples in the order
  `default_rng([seed, e]).permutation(N)`, so resuming from any step
  reproduces the same batches without saving iterator state.
  """

  def __init__(
      self,
      arrays: dict[str, np.ndarray],
      global_batch_size: int,
      seed: int,
      shuffle: bool = True,
      drop_remainder: bool = True,
      process_index: int = 0,
      process_count: int = 1,
  ):
    _check_processes(global_batch_size, process_index, process_count)
    self.num_examples = _num_examples(arrays)
    if drop_remainder and global_batch_size > self.num_examples:
      raise DataError(
          f'global batch size {global_batch_size} exceeds the {self.num_examples} '
          f'examples available (drop_remainder=True would yield no batches)'
      )
    self.arrays = arrays
    self.global_batch_size = global_batch_size
    self.seed = seed
    self.shuffle = shuffle
    self.drop_remainder = drop_remainder
    self.process_index = process_index
    self.process_count = process_count
    self._order_cache: tuple[int, np.ndarray] | None = None  # (epoch, order): pure memo.

  @property
  def steps_per_epoch(self) -> int:
    full, rest = divmod(self.num_examples, self.global_batch_size)
    return full + (1 if rest and not self.drop_remainder else 0)

  def _order(self, epoch: int) -> np.ndarray:
    if self._order_cache is None or self._order_cache[0] != epoch:
      self._order_cache = (epoch, epoch_order(self.seed, epoch, self.num_examples, self.shuffle))
    return self._order_cache[1]

  def batch(self, step: int) -> dict[str, np.ndarray]:
    """Process-local slice of global batch `step`.

    With drop_remainder=False the last batch of an epoch is shorter (its
    process slices too), which costs one extra jit compilation.
    """
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}')
    epoch, within = divmod(step, self.steps_per_epoch)
    index = self._order(epoch)[
        within * self.global_batch_size : (within + 1) * self.global_batch_size
    ]
    index = index[_process_rows(len(index), self.process_index, self.process_count)]
    return {key: value[index] for key, value in self.arrays.items()}


# Token batches are cut to their longest text rounded up to a multiple of this: little
# padding left, and few shapes to compile.
TOKEN_BUCKET = 8


def eval_batches(
    arrays: dict[str, np.ndarray], batch_size: int, process_index: int = 0, process_count: int = 1
) -> Iterator[dict[str, np.ndarray]]:
  """Yield process-local slices of global batches covering every example exactly once.

  The last global batch is padded (with copies of its last example) to `batch_size`
  so shapes never change; `mask` is float32, 1.0 for real rows and 0.0 for padding, and
  `index` (int32) is each row's position in `arrays`.

  Text ({'tokens', 'length'}) is visited shortest first and each batch's tokens are cut
  to its longest text rounded up to a multiple of TOKEN_BUCKET: the dropped columns are padding, which
  the model masks, so outputs are the same for a fraction of the compute.
  """
  _check_processes(batch_size, process_index, process_count)
  n = _num_examples(arrays)
  rows = _process_rows(batch_size, process_index, process_count)
  bucketed = 'tokens' in arrays and 'length' in arrays
  order = np.argsort(arrays['length'], kind='stable') if bucketed else np.arange(n)
  for start in range(0, n, batch_size):
    global_index = order[start : start + batch_size]
    real = np.arange(batch_size) < len(global_index)
    global_index = np.pad(global_index, (0, batch_size - len(global_index)), mode='edge')
    index = global_index[rows]
    batch = {key: value[index] for key, value in arrays.items()}
    if bucketed:  # the same cut on every process: it is the global batch's longest text
      longest = int(arrays['length'][global_index].max())
      width = min(-(-longest // TOKEN_BUCKET) * TOKEN_BUCKET, arrays['tokens'].shape[1])
      batch['tokens'] = batch['tokens'][:, :width]
    batch['mask'] = real[rows].astype(np.float32)
    batch['index'] = index.astype(np.int32)
    yield batch


def in_input_order(chunks: list[np.ndarray], indices: list[np.ndarray], n: int) -> np.ndarray:
  """Per-row outputs of `eval_batches` (real rows only) put back in the order of `arrays`."""
  values, index = np.concatenate(chunks), np.concatenate(indices)
  if len(index) != n or len(np.unique(index)) != n:
    raise ValueError(f'eval outputs cover {len(np.unique(index))} of {n} examples')
  out = np.empty_like(values)
  out[index] = values
  return out


def train_source(arrays: dict[str, np.ndarray] | None, config: Any) -> Any:
  """This process's shuffled training batches: a pure function of (config.seed, step).

  In memory (a BatchSource over `arrays`), or with config.dataset.stream read from the
  prepared files by grain (a StreamSource; `arrays` is None): the same batches either way.
  """
  if config.dataset.stream:
    from jaxadapt.data import stream  # Lazy: grain is only needed when streaming.

    return stream.stream_source(config)
  return BatchSource(
      arrays,
      config.batch_size,
      config.seed,
      shuffle=True,
      drop_remainder=True,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
  )
