"""`image_folder`: a user's images (one subfolder per class), prepared once into ArrayRecord.

Layout: `<source_dir>/<class>/<image>` or, with explicit splits,
`<source_dir>/{train,val,test}/<class>/<image>`. Files are JPEG or PNG; hidden files (names
starting with '.') are skipped. Without split folders every image lands in 'train', 'val' or
'test' by a hash of its path relative to its class folder (buckets 0-7 of 10 train, 8 val,
9 test): the same split on every machine, and adding images never moves old ones.

The prepared data (folder_records: ArrayRecord shards written one image at a time) holds the
ENCODED file bytes ('image', bytes) and 'label'; pixels are decoded when read (`decode`), so a
prepared folder is as small as the folder itself. The
prepared directory is named by a digest of every file's path, size and modification time:
changing the folder prepares it again. Before writing anything every file is opened once
(cached per digest) to find unreadable files, the channel count and the image sizes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from jaxadapt.data import folder_records
from jaxadapt.errors import DataError

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
SPLIT_FOLDERS = ('train', 'val', 'test')
HASH_SPLIT_BUCKETS = {'train': range(0, 8), 'val': range(8, 9), 'test': range(9, 10)}
_SHOW_BAD = 5  # bad files named in the error; the rest are counted
# Progress bars refresh often on a terminal, rarely in a log file.
_BAR_EVERY = 0.5 if sys.stderr.isatty() else 30.0


class Listing(NamedTuple):
  root: Path
  class_names: tuple[str, ...]
  files: dict[str, list[tuple[str, int]]]  # split -> [(path relative to root, label)]
  digest: str  # of every file's relative path, size and mtime


class Inspection(NamedTuple):
  channels: int  # 1 if every image is grayscale, else 3 (RGB)
  sizes: tuple[tuple[int, int], ...]  # distinct (height, width), most common first


def hash_split(relative_path: str) -> str:
  """The split of an image without split folders: a hash of '<class>/<file name>'."""
  bucket = int(hashlib.sha256(relative_path.encode()).hexdigest()[:8], 16) % 10
  return next(name for name, buckets in HASH_SPLIT_BUCKETS.items() if bucket in buckets)


def _visible(path: Path) -> list[Path]:
  return sorted(p for p in path.iterdir() if not p.name.startswith('.'))


def _class_files(split_dir: Path, root: Path) -> tuple[dict[str, list[Path]], list[str]]:
  """{class: image files} of one folder of class folders, and its non-image files."""
  classes, stray = {}, []
  for entry in _visible(split_dir):
    if not entry.is_dir():
      stray.append(str(entry.relative_to(root)))
      continue
    files = [p for p in _visible(entry) if p.is_file()]
    stray += [str(p.relative_to(root)) for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    classes[entry.name] = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
  return classes, stray


def _bad_files_error(root: Path, bad: list[str], what: str) -> DataError:
  shown = ', '.join(bad[:_SHOW_BAD]) + (
      f' and {len(bad) - _SHOW_BAD} more' if len(bad) > _SHOW_BAD else ''
  )
  return DataError(
      f'image_folder {root}: {len(bad)} {what} ({shown}); remove or fix them '
      f'(only JPEG and PNG files inside class folders are read)'
  )


def _folders_stamp(root: Path) -> tuple:
  """Modification times of the folder, its split and its class folders: a few stats."""
  dirs = [root] + [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
  dirs += [q for p in dirs[1:] if p.name in SPLIT_FOLDERS for q in p.iterdir() if q.is_dir()]
  return tuple((str(p), p.stat().st_mtime_ns) for p in dirs)


def list_folder(source_dir: str) -> Listing:
  """Class names, per-split files and the folder's digest; errors for a malformed layout.

  Stats every file (about 1.5 s per 70,000 images here); within one process a listing is
  reused while no folder's modification time changes (adding, removing or renaming files).
  """
  root = Path(os.path.expanduser(source_dir)).resolve()
  return _list_folder(root, _folders_stamp(root))


@functools.lru_cache(maxsize=4)
def _list_folder(root: Path, stamp: tuple) -> Listing:
  del stamp  # only part of the cache key
  if not root.is_dir():
    raise DataError(
        f'image_folder: dataset.source_dir={root} is not a directory; point it at a '
        f'folder with one subfolder of JPEG/PNG images per class'
    )
  top = [p.name for p in _visible(root) if p.is_dir()]
  if any(name in SPLIT_FOLDERS for name in top):
    others = [name for name in top if name not in SPLIT_FOLDERS]
    if others:
      raise DataError(
          f'image_folder {root}: has split folders ({", ".join(n for n in top if n in SPLIT_FOLDERS)})'
          f' and other folders ({", ".join(others[:3])}); put every class folder inside '
          f'train/, val/ or test/'
      )
    per_split, stray = {}, []
    for split in (s for s in SPLIT_FOLDERS if s in top):
      per_split[split], more = _class_files(root / split, root)
      stray += more
  else:
    classes, stray = _class_files(root, root)
    per_split = {'': classes}
  if stray:
    raise _bad_files_error(root, stray, 'files that are not JPEG/PNG images in class folders')
  names = tuple(sorted({c for classes in per_split.values() for c in classes}))
  if not names:
    raise DataError(
        f'image_folder {root}: no class folders; expected <source_dir>/<class>/<image> '
        f'(or <source_dir>/train/<class>/<image>)'
    )
  empty = sorted(
      f'{split}/{c}'.lstrip('/')
      for split, cs in per_split.items()
      for c, fs in cs.items()
      if not fs
  )
  if empty:
    raise DataError(
        f'image_folder {root}: class folder(s) with no JPEG/PNG images: {", ".join(empty[:5])}; '
        f'add images or remove the folder'
    )
  label = {name: i for i, name in enumerate(names)}
  files: dict[str, list[tuple[str, int]]] = {}
  digest = hashlib.sha256()
  for split, classes in per_split.items():
    for c, paths in sorted(classes.items()):
      for p in paths:
        rel = str(p.relative_to(root))
        target = split or hash_split(f'{c}/{p.name}')
        files.setdefault(target, []).append((rel, label[c]))
        stat = p.stat()
        digest.update(f'{target}\0{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n'.encode())
  return Listing(root, names, files, digest.hexdigest()[:12])


def _open_image(path: Path):
  """Open, check the format and decode (JPEG at 1/8 scale: cheap, still reads every byte)."""
  from PIL import Image  # Lazy: only image_folder needs Pillow.

  image = Image.open(path)
  if image.format not in ('JPEG', 'PNG'):
    raise ValueError(f'format {image.format}')
  size, mode = image.size, image.mode
  if image.format == 'JPEG':
    image.draft('RGB' if mode != 'L' else 'L', (max(1, size[0] // 8), max(1, size[1] // 8)))
  image.load()
  return size, mode


def inspect_folder(listing: Listing, cache_dir: Path) -> Inspection:
  """Open every image once (cached by the folder's digest); one error lists unreadable files."""
  cache = cache_dir / f'{listing.digest}.json'
  if cache.exists():
    saved = json.loads(cache.read_text())
    return Inspection(saved['channels'], tuple(tuple(s) for s in saved['sizes']))
  counts: dict[tuple[int, int], int] = {}
  bad, gray = [], True
  every = [rel for files in listing.files.values() for rel, _ in files]
  bar = tqdm(every, desc='image_folder: checking images', unit='img', mininterval=_BAR_EVERY)
  for rel in bar:
    try:
      (w, h), mode = _open_image(listing.root / rel)
    except Exception:  # Pillow raises many types for broken files; each is a bad file here
      bad.append(rel)
      continue
    counts[(h, w)] = counts.get((h, w), 0) + 1
    gray = gray and mode in ('L', '1', 'I;16', 'I')
  if bad:
    raise _bad_files_error(listing.root, bad, 'unreadable or non-JPEG/PNG image files')
  sizes = tuple(sorted(counts, key=lambda s: -counts[s]))
  result = Inspection(1 if gray else 3, sizes)
  cache_dir.mkdir(parents=True, exist_ok=True)
  cache.write_text(json.dumps({'channels': result.channels, 'sizes': result.sizes}))
  return result


def image_shape(listing: Listing, inspection: Inspection, image_size: int) -> tuple[int, int, int]:
  """(H, W, C) of decoded examples: image_size x image_size, or the folder's one size."""
  if image_size:
    return (image_size, image_size, inspection.channels)
  if len(inspection.sizes) > 1:
    shown = ', '.join(f'{h}x{w}' for h, w in inspection.sizes[:3])
    raise DataError(
        f'image_folder {listing.root}: images have {len(inspection.sizes)} different sizes '
        f'({shown}, ...); set --config.dataset.image_size=N to resize every image to NxN'
    )
  return (*inspection.sizes[0], inspection.channels)


def decode(data: bytes, channels: int, hw: tuple[int, int] | None = None) -> np.ndarray:
  """Encoded JPEG/PNG bytes -> uint8 [H, W, channels], bilinear-resized to hw when given."""
  from PIL import Image

  from jaxadapt.data import host_ops  # The one resize: in-memory and streamed pixels agree.

  image = Image.open(io.BytesIO(data)).convert('L' if channels == 1 else 'RGB')
  array = np.asarray(image, dtype=np.uint8)
  array = array[..., None] if channels == 1 else array
  return host_ops.resize(array, hw) if hw else array


class _Size(NamedTuple):
  num_examples: int


class _Splits:
  """info.splits of a TFDS builder: `splits['train[:80%]'].num_examples`."""

  def __init__(self, sizes: dict[str, int]):
    self.sizes = sizes

  def __getitem__(self, spec: str) -> _Size:
    return _Size(sum(end - start for _, start, end in folder_records.resolve(spec, self.sizes)))


class _Info(NamedTuple):
  features: dict
  splits: _Splits


class ImageFolder:
  """A user's image folder: 'image' (encoded JPEG/PNG bytes) and 'label' (class folder).

  Classes are the class folder names, sorted. Offers the part of a tfds DatasetBuilder that
  jaxadapt.data.datasets uses (info.features, info.splits, download_and_prepare,
  as_data_source); the data is written by folder_records, not TFDS, so that any folder size
  prepares in bounded memory without TensorFlow.
  """

  def __init__(self, *, source_dir: str | None = None, data_dir: str | None = None, **unused):
    del unused  # file_format: always ArrayRecord
    if not source_dir:
      raise DataError(
          'dataset.name=image_folder needs dataset.source_dir: a folder with one subfolder of '
          'JPEG/PNG images per class (optionally inside train/, val/, test/)'
      )
    self.listing = list_folder(source_dir)
    # Checked before anything is prepared: a bad folder writes nothing.
    base = Path(data_dir or '.') / 'image_folder'
    self.inspection = inspect_folder(self.listing, base / 'scans')
    self.data_path = base / f'records_{self.listing.digest}'
    features = {
        # Bytes, not tfds.features.Image: that feature needs TensorFlow to encode.
        'image': tfds.features.Tensor(shape=(), dtype=np.object_),
        'label': tfds.features.ClassLabel(names=list(self.listing.class_names)),
    }
    sizes = {split: len(files) for split, files in self.listing.files.items()}
    self.info = _Info(features, _Splits(sizes))

  def download_and_prepare(self) -> None:
    if not folder_records.is_prepared(self.data_path):
      listing = self.listing
      folder_records.write(
          self.data_path, listing.root, listing.files, listing.class_names, listing.digest
      )

  def labels(self, split: str) -> np.ndarray:
    """Labels of `split`'s rows in order, without reading the prepared files."""
    return folder_records.labels(self.listing.files, split)

  def as_data_source(self, split: str) -> folder_records.Records:
    """Rows of `split` (any TFDS split string), in the prepared order."""
    meta = folder_records.read_meta(self.data_path)
    return folder_records.Records(folder_records.shard_paths(self.data_path, meta, split))
