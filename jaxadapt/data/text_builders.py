"""Offline TFDS builders for text classification: WordNet noun supersenses and `text_file`.

Both write examples {'text': str, 'label': ClassLabel} (WordNet adds 'words', the synset's
lemmas, and 'offset'); tokenisation happens later, once, when a split is loaded
(jaxadapt/data/tokenize.py), so one prepared dataset serves every tokenizer and length.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from jaxadapt.data.builders import LocalBuilder, SourceDirConfig
from jaxadapt.errors import DataError

DEFAULT_WORDNET_DIR = '/usr/share/wordnet'

# WordNet 3.0's lexicographer files 03..28 (`man 5 lexnames`): the 26 noun supersenses.
# Label i is file number i + 3.
NOUN_SUPERSENSES = (
    'noun.Tops',
    'noun.act',
    'noun.animal',
    'noun.artifact',
    'noun.attribute',
    'noun.body',
    'noun.cognition',
    'noun.communication',
    'noun.event',
    'noun.feeling',
    'noun.food',
    'noun.group',
    'noun.location',
    'noun.motive',
    'noun.object',
    'noun.person',
    'noun.phenomenon',
    'noun.plant',
    'noun.possession',
    'noun.process',
    'noun.quantity',
    'noun.relation',
    'noun.shape',
    'noun.state',
    'noun.substance',
    'noun.time',
)
FIRST_NOUN_LEXFILE = 3

# Split by a hash of the synset offset: buckets 0-7 of 10 train, 8 validation, 9 test.
WORDNET_SPLIT_BUCKETS = {'train': range(0, 8), 'validation': range(8, 9), 'test': range(9, 10)}


class Synset(NamedTuple):
  offset: int
  label: int  # 0..25: lexicographer file number - 3
  words: tuple[str, ...]  # lemmas, underscores as spaces
  gloss: str  # definition and examples, the text after '| '


def parse_noun_synset(line: str) -> Synset:
  """One line of WordNet's `data.noun` (format: `man 5 wndb`) as a Synset.

  `offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [ptr...] | gloss`,
  with w_cnt in hexadecimal.
  """
  head, sep, gloss = line.partition(' | ')
  fields = head.split()
  if not sep or len(fields) < 6 or fields[2] != 'n':
    raise DataError(f'not a WordNet noun synset line: {line[:60]!r}')
  w_cnt = int(fields[3], 16)
  words = tuple(fields[4 + 2 * i].replace('_', ' ') for i in range(w_cnt))
  label = int(fields[1]) - FIRST_NOUN_LEXFILE
  if not 0 <= label < len(NOUN_SUPERSENSES):
    raise DataError(f'synset {fields[0]}: lexicographer file {fields[1]} is not a noun file')
  return Synset(int(fields[0]), label, words, gloss.strip())


def wordnet_split(offset: int) -> str:
  """The split of a synset: a hash of its 8-digit offset, the same on every machine."""
  bucket = int(hashlib.sha256(f'{offset:08d}'.encode()).hexdigest()[:8], 16) % 10
  return next(name for name, buckets in WORDNET_SPLIT_BUCKETS.items() if bucket in buckets)


def read_noun_synsets(path: str | os.PathLike) -> Iterator[Synset]:
  """Every synset of a `data.noun` file (its license header lines start with two spaces)."""
  with open(path, encoding='utf-8') as f:
    for line in f:
      if not line.startswith('  '):
        yield parse_noun_synset(line)


def _source_config(source_dir: str | None, default: str) -> SourceDirConfig:
  """Config named 'default' for the default directory, else by a hash of the directory."""
  source_dir = os.path.abspath(os.path.expanduser(source_dir or default))
  if source_dir == default:
    return SourceDirConfig(name='default', source_dir=source_dir)
  return SourceDirConfig(
      name='src_' + hashlib.sha1(source_dir.encode()).hexdigest()[:10], source_dir=source_dir
  )


class WordnetSupersenses(LocalBuilder):
  """WordNet 3.0 noun synsets (82,115) labelled by supersense (26 lexicographer files).

  text: the gloss; words: the synset's lemmas joined by ', '; label: NOUN_SUPERSENSES
  index; offset: the synset offset. Splits by `wordnet_split` (about 80/10/10):
  train 65,798, validation 8,152, test 8,165.
  """

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [_source_config(None, DEFAULT_WORDNET_DIR)]

  def __init__(self, *, source_dir: str | None = None, **kwargs):
    config = _source_config(source_dir, DEFAULT_WORDNET_DIR)
    if config.name != 'default':
      kwargs.setdefault('config', config)
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='WordNet 3.0 noun glosses -> supersense (Debian wordnet-base).',
        features=tfds.features.FeaturesDict(
            {
                'text': tfds.features.Text(),
                'words': tfds.features.Text(),
                'label': tfds.features.ClassLabel(names=list(NOUN_SUPERSENSES)),
                'offset': tfds.features.Scalar(dtype=np.int64),
            }
        ),
        supervised_keys=('text', 'label'),
    )

  def _split_generators(self, dl_manager):
    path = Path(self.builder_config.source_dir) / 'data.noun'
    if not path.exists():
      raise DataError(
          f'WordNet file {path} is missing: run `apt-get install wordnet-base` or set '
          f'config.dataset.source_dir to a directory holding data.noun'
      )
    synsets = {split: [] for split in WORDNET_SPLIT_BUCKETS}
    for s in read_noun_synsets(path):
      synsets[wordnet_split(s.offset)].append(s)
    return {split: self._generate_examples(rows) for split, rows in synsets.items()}

  def _generate_examples(self, synsets: list[Synset]) -> Iterator[tuple[int, dict]]:
    for s in synsets:
      example = {'text': s.gloss, 'words': ', '.join(s.words), 'label': s.label}
      yield s.offset, {**example, 'offset': s.offset}


# ------------------------------------------------------------------ text_file

TEXT_FILE_SUFFIXES = ('.csv', '.jsonl')


def text_files(source: str) -> dict[str, Path]:
  """{split: file}: a directory's `<split>.csv` / `<split>.jsonl` files, or one file as 'train'."""
  path = Path(os.path.expanduser(source))
  if path.is_file():
    if path.suffix not in TEXT_FILE_SUFFIXES:
      raise DataError(f'text_file: {path} must end in .csv or .jsonl')
    return {'train': path}
  if not path.is_dir():
    raise DataError(
        f'text_file: dataset.source_dir={source} does not exist; point it at a .csv/.jsonl '
        f'file of text,label rows or a directory of <split>.csv / <split>.jsonl files'
    )
  files = sorted(p for p in path.iterdir() if p.suffix in TEXT_FILE_SUFFIXES)
  splits: dict[str, Path] = {}
  for p in files:
    if p.stem in splits:
      raise DataError(f'text_file: both {splits[p.stem].name} and {p.name} in {path}; keep one')
    splits[p.stem] = p
  if 'train' not in splits:
    raise DataError(
        f'text_file: {path} has no train.csv or train.jsonl (found: '
        f"{', '.join(p.name for p in files) or 'no .csv/.jsonl files'})"
    )
  return splits


def files_stamp(source: str) -> tuple:
  """(name, size, mtime) of the files `text_files` would read; () if there are none."""
  path = Path(os.path.expanduser(source))
  files = [path] if path.is_file() else sorted(path.glob('*')) if path.is_dir() else []
  return tuple(
      (str(p), p.stat().st_size, p.stat().st_mtime_ns)
      for p in files
      if p.suffix in TEXT_FILE_SUFFIXES
  )


def read_text_rows(path: Path) -> list[tuple[str, str]]:
  """(text, raw label) rows of a CSV (header `text,label`) or JSONL ({"text", "label"}) file."""
  raw = path.read_bytes()
  try:
    content = raw.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    raise DataError(f'{path}: not UTF-8 text ({e.reason} at byte {e.start})') from None
  rows = _read_csv(path, content) if path.suffix == '.csv' else _read_jsonl(path, content)
  if not rows:
    raise DataError(f'{path}: no rows (expected text,label rows)')
  return rows


def _read_csv(path: Path, content: str) -> list[tuple[str, str]]:
  reader = csv.DictReader(io.StringIO(content, newline=''))
  missing = {'text', 'label'} - set(reader.fieldnames or ())
  if missing:
    raise DataError(
        f'{path}: the header must name columns text and label, got '
        f"{','.join(reader.fieldnames or []) or 'an empty file'}"
    )
  rows = []
  for line_no, row in enumerate(reader, start=2):
    if row['text'] is None or row['label'] is None or None in row:
      raise DataError(f"{path}, line {line_no}: expected the header's columns, got {row}")
    rows.append((row['text'], row['label'].strip()))
  return rows


def _read_jsonl(path: Path, content: str) -> list[tuple[str, str]]:
  rows = []
  for line_no, line in enumerate(content.splitlines(), start=1):
    if not line.strip():
      continue
    try:
      obj = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataError(f'{path}, line {line_no}: not JSON ({e.msg})') from None
    if not isinstance(obj, dict) or 'text' not in obj or 'label' not in obj:
      raise DataError(f'{path}, line {line_no}: expected an object with "text" and "label"')
    if not isinstance(obj['text'], str) or isinstance(obj['label'], (bool, float, list, dict)):
      raise DataError(
          f'{path}, line {line_no}: "text" must be a string and "label" an integer or a name'
      )
    rows.append((obj['text'], str(obj['label']).strip()))
  return rows


def class_names(labels: list[str], where: str) -> tuple[str, ...]:
  """Class names for raw labels: all integers -> '0'..'max'; all names -> the sorted names."""
  if all(_is_int(x) for x in labels):
    ids = [int(x) for x in labels]
    if min(ids) < 0:
      raise DataError(f'{where}: integer labels must be >= 0, got {min(ids)}')
    return tuple(str(i) for i in range(max(ids) + 1))
  numeric = sorted({x for x in labels if _is_int(x)})
  if numeric:
    raise DataError(
        f'{where}: labels mix integers ({numeric[0]!r}) and names; use one kind for every row'
    )
  if '' in labels:
    raise DataError(f'{where}: a row has an empty label')
  return tuple(sorted(set(labels)))


def _is_int(text: str) -> bool:
  return text.lstrip('-').isdigit()


def _digest(files: dict[str, Path]) -> str:
  h = hashlib.sha256()
  for split, path in sorted(files.items()):
    h.update(split.encode() + b'\0' + path.read_bytes() + b'\0')
  return h.hexdigest()[:12]


@dataclasses.dataclass(eq=False)
class TextFileConfig(tfds.core.BuilderConfig):
  """Names the prepared data by the files' content, so an edited file is prepared again."""

  files: dict = dataclasses.field(default_factory=dict)


class TextFile(LocalBuilder):
  """A user's text classification data: `text,label` rows from CSV or JSONL files.

  `dataset.source_dir` is one file (its rows are split 'train'; slice it, e.g.
  `train[:80%]`) or a directory whose `<split>.csv` / `<split>.jsonl` files are the splits.
  Labels are integers (classes '0'..max) or names (classes sorted by name), the same kind in
  every file. Examples are shuffled by TFDS's key hash, so slices are random subsets.
  """

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, source_dir: str | None = None, **kwargs):
    if not source_dir:
      raise DataError(
          'dataset.name=text_file needs dataset.source_dir: a .csv/.jsonl file of text,label '
          'rows or a directory of <split>.csv / <split>.jsonl files'
      )
    files = text_files(source_dir)
    self._rows = {split: read_text_rows(path) for split, path in files.items()}
    labels = [label for rows in self._rows.values() for _, label in rows]
    self._names = class_names(labels, str(source_dir))
    config = TextFileConfig(
        name='src_' + _digest(files), files={k: str(v) for k, v in files.items()}
    )
    super().__init__(config=config, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='Text classification rows from local CSV/JSONL files.',
        features=tfds.features.FeaturesDict(
            {'text': tfds.features.Text(), 'label': tfds.features.ClassLabel(names=self._names)}
        ),
        supervised_keys=('text', 'label'),
    )

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split) for split in self._rows}

  def _generate_examples(self, split: str) -> Iterator[tuple[int, dict]]:
    names = self._names
    index = {name: i for i, name in enumerate(names)}
    for i, (text, label) in enumerate(self._rows[split]):
      yield i, {'text': text, 'label': index[label] if label in index else int(label)}
