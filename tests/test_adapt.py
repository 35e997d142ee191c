"""Adaptation methods end to end: what trains, what stays bitwise frozen, what it costs."""

import json
import pathlib

import jax
import numpy as np
import pytest

from jaxadapt import checkpoint, cli, config as config_lib, data, methods, models, param_tree
from jaxadapt import cost, experiment, perf, presets, sharding, step as step_lib
from jaxadapt.metrics import read_metrics

from shared_runs import trained_run

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs/fashion_mnist'


def config_spec(name, arg=''):
  return str(CONFIGS / f'{name}.py') + (f':{arg}' if arg else '')


def upstream_cnn(tmp_path_factory):
  """The upstream smoke checkpoint (cnn, classes 0-4), trained through the CLI."""
  return trained_run(tmp_path_factory, 'upstream_cnn', config_spec('pretrain', 'smoke'))


def upstream_file(tmp_path_factory, model):
  """A random 'checkpoint' file of the smoke `model` (no training: only values matter)."""
  path = tmp_path_factory.getbasetemp() / 'shared_runs' / f'upstream_{model}.npz'
  if not path.exists():
    kwargs = {**presets.MODELS[model]['kwargs'], **presets.TINY[model]}
    net = models.build_model(presets.MODELS[model]['name'], 5, **kwargs)
    shapes = jax.eval_shape(net.init, jax.random.key(0), np.zeros((1, 28, 28, 1), np.float32))
    rng = np.random.default_rng(42)
    flat = {
        k: ((1.0 if k.endswith('scale') else 0.0) + rng.normal(0, 0.1, v.shape)).astype(v.dtype)
        for k, v in param_tree.flatten(shapes['params']).items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **flat)
  return path


def upstream(tmp_path_factory, model):
  return (
      upstream_cnn(tmp_path_factory) if model == 'cnn' else upstream_file(tmp_path_factory, model)
  )


def upstream_flat(path):
  path = pathlib.Path(path)
  if path.suffix == '.npz':
    with np.load(path) as z:
      return {k: z[k] for k in z.files}
  return {k: np.asarray(v) for k, v in param_tree.flatten(checkpoint.restore_params(path)).items()}


def build_experiment(config, total_steps=6):
  mesh = sharding.make_mesh(config.mesh)
  info = data.dataset_info(config.dataset)
  return experiment.build(config, mesh, info, total_steps)


def host_flat(params):
  return {k: np.asarray(v) for k, v in param_tree.flatten(params).items()}


# --------------------------------------------------- frozen is frozen, trainable trains

# presets.downstream applies the method's rules for the full-size model and only then
# shrinks it for smoke, so depth-dependent rules (partial_ft's last block) name blocks the
# smoke ViT does not have: "rule 'encoder/block4/.*' matches no parameter".
CASES = [
    ('linear_probe', 'cnn'),
    ('partial_ft', 'cnn'),
    ('full_ft', 'cnn'),
    ('lora', 'cnn'),
    ('bitfit', 'cnn'),
    ('lora', 'vit'),
    ('partial_ft', 'vit'),
    ('bitfit', 'resnet'),
]
# The resnet preset uses SGD: behind a zero-initialised head, six SGD steps move the norm
# parameters by ~1e-6, a few float32 ulps (or not at all with a freshly initialised ResNet's
# zero last-norm scales). Adam's normalised steps make "every trainable leaf changed" robust.
EXTRA = {'resnet': ['--config.optim.name=adamw']}


@pytest.mark.parametrize('method, model', CASES)
def test_frozen_leaves_bitwise_unchanged_and_trainable_leaves_change(
    tmp_path_factory, method, model
):
  up = upstream(tmp_path_factory, model)
  spec = config_spec(method, f'model={model},smoke,checkpoint={up}')
  overrides = EXTRA.get(model, [])
  wd = trained_run(tmp_path_factory, f'{method}_{model}', spec, *overrides)

  table = json.loads((wd / 'params.json').read_text())
  final = host_flat(checkpoint.restore_params(wd))
  initial = host_flat(build_experiment(config_lib.load_config(spec, overrides)).params)
  pretrained = upstream_flat(up)
  assert set(table) == set(final) == set(initial)
  frozen = [p for p, row in table.items() if not row['trainable']]
  trainable = [p for p, row in table.items() if row['trainable']]
  assert trainable, 'nothing trained'
  if method != 'full_ft':
    assert frozen, f'{method} froze nothing'

  for p in frozen:
    assert final[p].dtype == initial[p].dtype == pretrained[p].dtype, p
    # Frozen leaves all come from the checkpoint (only the head is not loaded).
    assert np.array_equal(initial[p], pretrained[p]), f'{p} was not loaded from the checkpoint'
    assert np.array_equal(final[p], pretrained[p]), f'frozen {p} changed during training'
  for p in trainable:
    assert final[p].dtype == initial[p].dtype, p
    assert not np.array_equal(final[p], initial[p]), f'trainable {p} did not change'

  # What trains is what the method says.
  assert {'head/kernel', 'head/bias'} <= set(trainable)
  if method == 'linear_probe':
    assert set(trainable) == {'head/kernel', 'head/bias'}
  if method == 'lora':
    assert {p for p in trainable if not p.startswith('head/')} == {
        p for p in final if p.startswith('lora/')
    }
    bs = [p for p in final if p.startswith('lora/') and p.endswith('/b')]
    assert bs
    for p in bs:
      assert not initial[p].any(), f'{p} should start at zero'
      assert final[p].any(), f'{p} is still zero after training'
    # Every base kernel under an adapter stays frozen.
    for p in bs:
      base = p[len('lora/') : -len('/b')]
      assert base in frozen
  if method == 'bitfit':
    assert all(p.startswith('head/') or p.endswith(('/bias', '/scale')) for p in trainable)
    assert not any(p.endswith('/kernel') for p in trainable if not p.startswith('head/'))
  if method == 'full_ft':
    assert not frozen
  if method == 'partial_ft':
    last = 'block2/' if model == 'cnn' else 'encoder/block1/'
    assert any(p.startswith(last) for p in trainable)
    if model == 'cnn':
      assert not any(p.startswith('block1/') for p in trainable)
    else:
      assert not any(p.startswith(('embedding/', 'pos_embedding', 'cls')) for p in trainable)

  records = read_metrics(wd)
  assert any('test/accuracy' in r for r in records)


# ----------------------------------------------------------- optimizer state, FLOPs


def test_optimizer_state_holds_nothing_for_frozen_parameters():
  def opt_bytes(method):
    config = config_lib.load_config(config_spec(method, 'smoke'))
    with config.unlocked():
      config.init.checkpoint = None  # shapes only: no checkpoint needed
    exp = build_experiment(config)
    state = jax.eval_shape(lambda p: step_lib.init_state(p, exp.tx), exp.params)
    flat = param_tree.flatten(exp.params)
    n_train = sum(v.size for p, v in flat.items() if exp.trainable[p])
    return cost.tree_bytes(state.opt_state), n_train, sum(v.size for v in flat.values())

  probe_bytes, probe_train, total = opt_bytes('linear_probe')
  full_bytes, full_train, _ = opt_bytes('full_ft')
  head = 16 * 5 + 5  # smoke cnn: dense=16 features -> 5 classes
  assert probe_train == head and full_train == total
  # Adam: two float32 moments per trainable value, plus int32 step counts per group.
  adam = 2 * head * 4
  assert adam <= probe_bytes <= adam + 32, probe_bytes
  assert 2 * total * 4 <= full_bytes <= 2 * total * 4 + 32, full_bytes
  assert probe_bytes < 0.05 * full_bytes


@pytest.fixture(scope='module')
def perf_rows():
  config = config_lib.load_config(config_spec('scratch'), ['--config.batch_size=32'])
  return {m: perf.measure(config, m, steps=1) for m in ('linear_probe', 'full_ft')}


def test_linear_probe_step_costs_forward_plus_head_backward_only(perf_rows):
  lp, ft = perf_rows['linear_probe'], perf_rows['full_ft']
  assert lp['batch_size'] == 32 and lp['model'] == 'cnn'
  assert lp['forward_flops'] > 0 and lp['step_flops'] > 0
  assert lp['step_flops'] <= 1.1 * (lp['forward_flops'] + lp['head_backward_flops'])
  assert lp['step_over_forward_plus_head'] <= 1.1
  # Full fine-tuning back-propagates through the backbone: roughly 3x a forward pass.
  assert ft['step_over_forward_plus_head'] > 2.0
  assert ft['step_flops'] > 2 * lp['step_flops']
  assert lp['trainable_params'] == 256 * 10 + 10
  assert ft['trainable_params'] == ft['params'] == lp['params']


# ------------------------------------------------------- partial_ft k, layer decay


def test_partial_ft_k2_trains_a_superset_of_k1():
  def trainable(k):
    config = config_lib.load_config(config_spec('partial_ft', f'smoke,k={k}'))
    with config.unlocked():
      config.init.checkpoint = None
    return {p for p, t in build_experiment(config).trainable.items() if t}

  k1, k2 = trainable(1), trainable(2)
  assert k1 < k2
  assert {p.split('/')[0] for p in k2 - k1} == {'block1'}
  assert {'block2/conv1/kernel', 'dense/kernel', 'head/kernel'} <= k1


@pytest.mark.parametrize('k', [0, 3])
def test_partial_ft_k_out_of_range(k, capsys):
  config = config_lib.load_config(config_spec('scratch', 'smoke'))
  with pytest.raises(methods.MethodError, match=f'k={k}'):
    methods.apply(config, 'partial_ft', k=k)
  code = cli.main(
      [
          'train',
          '--quiet',
          '--config',
          config_spec('partial_ft', f'smoke,k={k}'),
          '--workdir',
          '/nonexistent/never',
      ]
  )
  err = capsys.readouterr().err
  assert code == 2 and f'k={k}' in err, err


def test_layer_decay_lr_multipliers_decrease_towards_input(tmp_path):
  wd = tmp_path / 'lld'
  code = cli.main(
      [
          'train',
          '--quiet',
          '--config',
          config_spec('full_ft', 'smoke,layer_decay=0.5'),
          '--workdir',
          str(wd),
          '--config.init.checkpoint=',
          '--config.num_steps=1',
          '--config.dataset.val_split=',
          '--config.dataset.test_split=',
      ]
  )
  assert code == 0
  table = json.loads((wd / 'params.json').read_text())
  lr = {p: row['lr_mult'] for p, row in table.items()}
  assert all(row['trainable'] for row in table.values())
  block1 = {lr[p] for p in lr if p.startswith('block1/')}
  block2 = {lr[p] for p in lr if p.startswith('block2/')}
  head = {lr[p] for p in lr if p.startswith('head/')}
  assert len(block1) == len(block2) == len(head) == 1
  (b1,), (b2,), (h,) = block1, block2, head
  assert 0 < b1 < b2 < h == 1.0
  assert (b1, b2) == pytest.approx((0.25, 0.5))


# ---------------------------------------------------------------------- fast probe


@pytest.mark.parametrize('fast', ['ridge', 'softmax'])
def test_fast_probe_writes_metrics_and_keeps_backbone(tmp_path_factory, tmp_path, fast):
  up = upstream_cnn(tmp_path_factory)
  wd = tmp_path / fast
  code = cli.main(
      [
          'train',
          '--quiet',
          '--config',
          config_spec('linear_probe', f'smoke,fast={fast},checkpoint={up}'),
          '--workdir',
          str(wd),
      ]
  )
  assert code == 0
  records = read_metrics(wd)
  acc = [r['test/accuracy'] for r in records if 'test/accuracy' in r]
  assert len(acc) == 1 and 0.0 <= acc[0] <= 1.0
  assert any('val/accuracy' in r for r in records)

  params = host_flat(checkpoint.restore_params(wd))
  pretrained = upstream_flat(up)
  for p, v in params.items():
    if not p.startswith('head/'):
      assert v.dtype == pretrained[p].dtype and np.array_equal(v, pretrained[p]), p
  assert params['head/kernel'].shape == (16, 5) and params['head/kernel'].any()
  assert not np.array_equal(params['head/kernel'], pretrained['head/kernel'])

  # The stored accuracy is the accuracy of the stored head on the test split.
  config = config_lib.load_config(config_spec('linear_probe', f'smoke,checkpoint={up}'))
  exp = build_experiment(config)
  test = data.load_split(config.dataset, config.dataset.test_split)
  images = exp.preprocess_eval(test['image'], jax.random.key(0), False)
  logits = np.asarray(exp.forward(param_tree.unflatten(params), images))
  # (one example of slack: numpy and XLA may break a near-tie differently)
  assert np.mean(logits.argmax(-1) == test['label']) == pytest.approx(acc[0], abs=1.5 / 256)


def test_unknown_method_suggests_the_nearest():
  config = config_lib.load_config(config_spec('scratch', 'smoke'))
  with pytest.raises(methods.MethodError, match=r"unknown method 'lroa'.*did you mean 'lora'"):
    methods.apply(config, 'lroa')
