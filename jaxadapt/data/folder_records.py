"""A prepared image_folder: ArrayRecord shards of (label, encoded image bytes) and one JSON.

Directory `<data_dir>/image_folder/records_<digest>`:
  meta.json                     {'digest', 'class_names', 'splits': {split: [rows per shard]}}
  <split>-<k:05d>.array_record  records b'<label: int32 little-endian><the file's bytes>'

`write` streams one image at a time into shards of about SHARD_BYTES, so memory stays
bounded for any folder size (TFDS's writer held up to 1 GB of a split and needed TensorFlow
beyond it). It writes into a temporary directory renamed into place at the end: an
interrupted preparation never leaves a directory that a later run trusts. Rows of a split are
ordered by a hash of each file's relative path, so slices like 'train[:80%]' are random
subsets, and adding images never reorders the old ones relative to each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from tqdm import tqdm

SHARD_BYTES = 256 << 20  # image bytes per shard before the next one starts
META = 'meta.json'
_LABEL = struct.Struct('<i')
# Progress bars refresh often on a terminal, rarely in a log file.
_BAR_EVERY = 0.5 if sys.stderr.isatty() else 30.0


def is_prepared(dest: Path) -> bool:
  """True once `write` finished: meta.json only ever appears with the rename."""
  return (dest / META).is_file()


def row_order(files: list[tuple[str, int]]) -> list[tuple[str, int]]:
  """A split's rows: (relative path, label) sorted by a hash of the path."""
  return sorted(files, key=lambda f: hashlib.sha256(f[0].encode()).digest())


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # someone else's process
    return True
  return True


def _remove_stale(dest: Path, host: str) -> None:
  """Temporary directories this host's dead processes left behind (killed mid-way)."""
  for tmp in dest.parent.glob(f'.{dest.name}.tmp.{host}.*'):
    pid = tmp.name.rsplit('.', 1)[-1]
    if pid.isdigit() and not _alive(int(pid)):
      shutil.rmtree(tmp, ignore_errors=True)


def _write_split(tmp: Path, root: Path, split: str, files: list[tuple[str, int]]) -> list[int]:
  """Shards of one split; returns the rows of each shard."""
  from array_record.python.array_record_module import ArrayRecordWriter

  rows, size, writer = [], 0, None
  bar = tqdm(files, desc=f'image_folder: preparing {split}', unit='img', mininterval=_BAR_EVERY)
  try:
    for rel, label in bar:
      if writer is None or size >= SHARD_BYTES:
        if writer is not None:
          writer.close()
        # group_size:1: every record its own chunk, for fast random access.
        writer = ArrayRecordWriter(
            str(tmp / f'{split}-{len(rows):05d}.array_record'), 'group_size:1'
        )
        rows.append(0)
        size = 0
      data = (root / rel).read_bytes()
      writer.write(_LABEL.pack(label) + data)
      rows[-1] += 1
      size += len(data)
  finally:
    if writer is not None:
      writer.close()
  return rows


def write(
    dest: Path,
    root: Path,
    files: dict[str, list[tuple[str, int]]],
    class_names: tuple[str, ...],
    digest: str,
) -> None:
  """Prepare `files` (split -> [(path relative to root, label)]) into `dest`, atomically."""
  host = socket.gethostname().replace('.', '_')
  dest.parent.mkdir(parents=True, exist_ok=True)
  _remove_stale(dest, host)
  tmp = dest.parent / f'.{dest.name}.tmp.{host}.{os.getpid()}'
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir()
  try:
    splits = {split: _write_split(tmp, root, split, row_order(f)) for split, f in files.items()}
    meta = {'digest': digest, 'class_names': list(class_names), 'splits': splits}
    (tmp / META).write_text(json.dumps(meta, indent=1))
    try:
      tmp.rename(dest)
    except OSError:
      if not is_prepared(dest):  # not another process finishing the same folder first
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def read_meta(dest: Path) -> dict:
  return json.loads((dest / META).read_text())


def resolve(spec: str, sizes: dict[str, int]) -> list[tuple[str, int, int]]:
  """A TFDS split string ('train', 'train[:80%]', 'train[10:20]+test') -> [(split, start, end)].

  Raises ValueError for a malformed string or an unknown split (TFDS's grammar and messages).
  """
  import tensorflow_datasets as tfds

  infos = {name: SimpleNamespace(num_examples=n) for name, n in sizes.items()}
  parts = tfds.core.ReadInstruction.from_spec(spec).to_absolute(infos)
  return [(p.splitname, p.from_ or 0, sizes[p.splitname] if p.to is None else p.to) for p in parts]


def shard_paths(dest: Path, meta: dict, spec: str) -> list[str]:
  """'<shard>[start:end]' paths (array_record's slice syntax) of the rows `spec` selects."""
  paths = []
  sizes = {split: sum(rows) for split, rows in meta['splits'].items()}
  for split, start, end in resolve(spec, sizes):
    first = 0
    for k, n in enumerate(meta['splits'][split]):
      lo, hi = max(start, first) - first, min(end, first + n) - first
      if lo < hi:
        paths.append(f'{dest / f"{split}-{k:05d}.array_record"}[{lo}:{hi}]')
      first += n
  return paths


def labels(files: dict[str, list[tuple[str, int]]], spec: str) -> np.ndarray:
  """int32 labels of the rows `spec` selects, from the listing (no file is read)."""
  sizes = {split: len(f) for split, f in files.items()}
  parts = []
  for split, start, end in resolve(spec, sizes):
    parts.append([label for _, label in row_order(files[split])[start:end]])
  return np.asarray([label for part in parts for label in part], dtype=np.int32)


def _record(data: bytes) -> dict:
  return {'image': data[_LABEL.size :], 'label': _LABEL.unpack_from(data)[0]}


class Records:
  """Random-access rows {'image': encoded bytes, 'label': int} of shard slices; picklable
  (grain workers reopen the files lazily)."""

  def __init__(self, paths: list[str]):
    # array_record's source, which grain's ArrayRecordDataSource extends with usage stats.
    from array_record.python.array_record_data_source import ArrayRecordDataSource

    self._source = ArrayRecordDataSource(paths) if paths else []  # it refuses no paths

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    return _record(self._source[index])

  def __getitems__(self, indices: list[int]) -> list[dict]:
    return [_record(r) for r in self._source.__getitems__(indices)]
