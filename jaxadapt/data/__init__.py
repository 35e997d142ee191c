"""Data: offline TFDS builders, in-memory split loading, resumable batching, on-device preprocessing."""

from jaxadapt.data.builders import DigitsLocal, FashionMnistLocal, default_data_dir, read_idx
from jaxadapt.data.datasets import dataset_info, load_split
from jaxadapt.data.pipeline import BatchSource, eval_batches, prefetch
from jaxadapt.data.preprocess import make_preprocess, output_shape

__all__ = [
    'BatchSource', 'DigitsLocal', 'FashionMnistLocal', 'dataset_info', 'default_data_dir',
    'eval_batches', 'load_split', 'make_preprocess', 'output_shape', 'prefetch', 'read_idx',
]
