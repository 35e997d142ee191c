"""Data: offline TFDS builders (fashion_mnist, digits, mnist1d; text: wordnet, text_file), a
user's image_folder (ArrayRecord shards written by folder_records), in-memory split loading
(text tokenised once, cached), resumable batching in memory or streamed through grain
(stream.py), host and on-device preprocessing."""

from jaxadapt.data.builders import (
    DigitsLocal,
    FashionMnistLocal,
    Mnist1dLocal,
    default_data_dir,
    generate_mnist1d,
    read_idx,
)
from jaxadapt.data.datasets import dataset_info, is_text, load_eval_splits, load_split
from jaxadapt.data.pipeline import BatchSource, eval_batches, in_input_order, train_source
from jaxadapt.data.preprocess import make_preprocess, output_shape

__all__ = [
    'BatchSource',
    'DigitsLocal',
    'FashionMnistLocal',
    'Mnist1dLocal',
    'dataset_info',
    'default_data_dir',
    'eval_batches',
    'generate_mnist1d',
    'in_input_order',
    'is_text',
    'load_eval_splits',
    'load_split',
    'make_preprocess',
    'output_shape',
    'read_idx',
    'train_source',
]
