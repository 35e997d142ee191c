r"""The fast linear probe against scikit-learn's LogisticRegression on frozen MiniLM features.

  .venv/bin/python benchmarks/text_probe_vs_sklearn.py [--train-limit N] [--eval-limit N] \
      [--out probe.json] [--features feats.npz]

One pass of all-MiniLM-L6-v2 (mean-pooled, as configs/text/wordnet.py:method=linear_probe
builds it) over the WordNet training split (timed: the cached-feature probe's cost) and the
validation and test splits; then, at several training-set sizes per class (3 subsets each),
the fast probe's heads (`softmax`, `ridge`; each fitted at every adapt.probe_l2, keeping the
penalty best on validation, as the fast probe does) and a plain StandardScaler +
LogisticRegression (sklearn's default C=1, and C picked by cross-validation) fitted on the
same features and scored on the same test glosses. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
import warnings

import jax
import numpy as np

from jaxadapt import config as config_lib
from jaxadapt import data, evaluate, experiment, probe, sharding

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIZES = (8, 32, 128, 512, 0)  # examples per class; 0 = the whole training split
SEEDS = (0, 1, 2)


def subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
  """Row indices: up to `per_class` random rows of each class (all rows for 0)."""
  if per_class == 0:
    return np.arange(len(labels))
  rng = np.random.default_rng(seed)
  rows = [
      rng.choice(np.flatnonzero(labels == c), min(per_class, np.sum(labels == c)), replace=False)
      for c in np.unique(labels)
  ]
  return np.sort(np.concatenate(rows))


def sklearn_probe(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, cv: bool) -> np.ndarray:
  """Standardised features, then logistic regression: sklearn's default L2 (C=1), or with
  `cv` the C of (0.01, 0.1, 1, 10) that 3-fold cross-validation on the training rows picks."""
  from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  if cv:
    lr = LogisticRegressionCV(Cs=(0.01, 0.1, 1.0, 10.0), cv=3, max_iter=3000, scoring='accuracy')
  else:
    lr = LogisticRegression(max_iter=3000)
  with warnings.catch_warnings():  # API deprecation notices; rare classes in small folds
    warnings.simplefilter('ignore')
    return make_pipeline(StandardScaler(), lr).fit(x, y).predict(x_test)


def scores(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> dict[str, float]:
  confusion = evaluate.confusion_matrix(labels, preds, num_classes)
  return {'accuracy': float(np.mean(labels == preds)), **evaluate.macro_scores(confusion)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--train-limit', type=int, default=0, help='first N training glosses only')
  parser.add_argument(
      '--eval-limit', type=int, default=0, help='first N validation and test glosses only'
  )
  parser.add_argument('--out', help='also write the results as JSON here')
  parser.add_argument('--features', help='.npz cache of the features: read if it exists')
  parser.add_argument(
      '--cv-max', type=int, default=512, help='cross-validated sklearn column up to this size'
  )
  args = parser.parse_args()

  config = config_lib.load_config(f"{ROOT / 'configs/text/wordnet.py'}:method=linear_probe")
  mesh = sharding.make_mesh(config.mesh)
  info = data.dataset_info(config.dataset)
  split = f'train[:{args.train_limit}]' if args.train_limit else 'train'
  cut = f'[:{args.eval_limit}]' if args.eval_limit else ''
  train = data.load_split(config.dataset, split)
  val = data.load_split(config.dataset, f'validation{cut}')
  test = data.load_split(config.dataset, f'test{cut}')
  l2s = probe.check_penalties(config.adapt.probe_l2)
  exp = experiment.build(config, mesh, info, total_steps=1)
  extract = lambda arrays: probe.extract_features(
      exp.forward, exp.params, exp.preprocess_eval, arrays, config.eval_batch_size, mesh
  )
  tokens = int(train['length'].sum())
  cache = pathlib.Path(args.features) if args.features else None
  if cache and cache.exists():
    with np.load(cache) as z:
      feats, val_feats, test_feats = z['train'], z['val'], z['test']
      feature_s, cpu_s = float(z['seconds']), float(z['cpu'])
  else:
    extract({k: v[:8] for k, v in train.items()})  # compile outside the timing
    t0, c0 = time.perf_counter(), time.process_time()
    feats = extract(train)
    feature_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    val_feats, test_feats = extract(val), extract(test)
    if cache:
      np.savez(cache, train=feats, val=val_feats, test=test_feats, seconds=feature_s, cpu=cpu_s)
  print(
      f"features: {len(train['label'])} training glosses ({tokens} tokens before padding) in "
      f'{feature_s:.1f} s ({cpu_s:.1f} CPU seconds) on {jax.device_count()} '
      f'{jax.devices()[0].platform} device(s)'
  )

  rows = []
  c = info['num_classes']
  for per_class in SIZES:
    for seed in SEEDS if per_class else SEEDS[:1]:
      idx = subset(train['label'], per_class, seed)
      x, y = feats[idx], train['label'][idx]
      row = {'per_class': per_class, 'seed': seed, 'train_examples': len(idx)}
      for kind in probe.KINDS:  # as fast_probe.run: every penalty, the best on validation
        t = time.perf_counter()
        settings = probe.candidates(kind, l2s)
        heads = probe.fit_heads(
            kind,
            x,
            y,
            c,
            settings,
            tol=config.adapt.probe_tol,
            max_iter=config.adapt.probe_max_iter,
        )
        best, _ = probe.select_head(heads, settings, val_feats, val['label'])
        row[f'{kind}_fit_s'] = time.perf_counter() - t
        row[f'{kind}_setting'] = settings[best]
        row[kind] = probe.score(test_feats, test['label'], heads[best])
      t = time.perf_counter()
      row['sklearn'] = scores(test['label'], sklearn_probe(x, y, test_feats, cv=False), c)
      row['sklearn_fit_s'] = time.perf_counter() - t
      if per_class and per_class <= args.cv_max:
        row['sklearn_cv'] = scores(test['label'], sklearn_probe(x, y, test_feats, cv=True), c)
      rows.append(row)
      print(json.dumps(row))

  print(
      '\n| per class | train | softmax | ridge | sklearn LR (C=1) | sklearn LR (C by CV) '
      '| softmax - LR | softmax - LR CV | softmax fit s | sklearn fit s |'
  )
  print('|---:|---:|---|---|---|---|---:|---:|---:|---:|')
  for per_class in SIZES:
    rs = [r for r in rows if r['per_class'] == per_class]
    mean = lambda kind, key: 100 * np.mean([r[kind][key] for r in rs])
    cell = lambda kind: (
        f"{mean(kind, 'accuracy'):.1f} / {mean(kind, 'macro_f1'):.1f}" if kind in rs[0] else '-'
    )
    gap = lambda kind: (
        f"{mean('softmax', 'accuracy') - mean(kind, 'accuracy'):+.1f}" if kind in rs[0] else '-'
    )
    print(
        f"| {per_class or 'all'} | {int(np.mean([r['train_examples'] for r in rs]))} "
        f"| {cell('softmax')} | {cell('ridge')} | {cell('sklearn')} | {cell('sklearn_cv')} "
        f"| {gap('sklearn')} | {gap('sklearn_cv')} "
        f"| {np.mean([r['softmax_fit_s'] for r in rs]):.1f} "
        f"| {np.mean([r['sklearn_fit_s'] for r in rs]):.1f} |"
    )
  print('cells: test accuracy / macro F1 (%), mean over the subsets of a size')
  if args.out:
    result = {'feature_seconds': feature_s, 'feature_cpu_seconds': cpu_s, 'tokens': tokens}
    pathlib.Path(args.out).write_text(json.dumps({**result, 'rows': rows}, indent=1))


if __name__ == '__main__':
  main()
