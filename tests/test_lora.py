"""LoRA: exact identity at init, merge == adapted forward, shapes, errors, export round trips."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from jaxadapt import checkpoint, cli, config as config_lib, cost, data, lora, models, param_tree
from jaxadapt import path_rules
from jaxadapt import evaluate, experiment, presets, pretrained, sharding, step as step_lib, train as train_lib

from shared_runs import trained_run

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs/fashion_mnist'
ALPHA = 16.0


def smoke_model(name, num_classes=5):
  kwargs = {**presets.MODELS[name]['kwargs'], **models.get_spec(name).smoke}
  return models.build_model(presets.MODELS[name]['name'], num_classes, **kwargs)


def init_params(model, seed=0, size=28):
  """Random parameters of the model's shapes (numpy RNG: no zero heads or zero biases
  hiding mistakes, and no slow threefry compiles)."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 1)))['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape).astype(s.dtype)), shapes)


def apply_fn(model):
  return jax.jit(lambda params, images: model.apply({'params': params}, images))


IMAGES = jnp.asarray(np.random.default_rng(7).normal(size=(8, 28, 28, 1)).astype(np.float32))
RULES = {
    'cnn': ((r'(block\d+/conv\d+|dense)/kernel', 8),),
    'vit': ((r'encoder/block\d+/(attn/(query|value)|mlp/fc\d)/kernel', 4),),
}


# ------------------------------------------------------------------------ unit level


@pytest.mark.parametrize('name', ['cnn', 'vit'])
def test_lora_at_init_is_exactly_the_base_model(name):
  model = smoke_model(name)
  params = init_params(model)
  adapted = lora.add_adapters(params, RULES[name], jax.random.key(1))
  flat = param_tree.flatten(adapted)
  assert any(k.startswith('lora/') for k in flat)
  assert all(not np.asarray(v).any() for k, v in flat.items() if k.endswith('/b'))
  # Merging zero adapters gives back the base kernels bitwise...
  merged = param_tree.flatten(lora.merge(adapted, ALPHA))
  base_flat = param_tree.flatten(params)
  assert set(merged) == set(base_flat)
  for k, v in base_flat.items():
    assert np.array_equal(np.asarray(merged[k]), np.asarray(v)), k
  # ... so the adapted model's logits are the base model's, exactly.
  base = apply_fn(model)(params, IMAGES)
  out = jax.jit(step_lib.make_forward(model, ALPHA, lora_form='factored'))(adapted, IMAGES)
  assert np.asarray(base).any()
  assert np.array_equal(np.asarray(out), np.asarray(base))


def randomise_b(params, seed=3):
  rng = np.random.default_rng(seed)
  return param_tree.unflatten(
      {
          p: jnp.asarray(rng.normal(0, 1, v.shape).astype(v.dtype)) if p.endswith('/b') else v
          for p, v in param_tree.flatten(params).items()
      }
  )


@pytest.mark.parametrize(
    'name, kernel',
    [
        ('cnn', 'block2/conv1/kernel'),
        ('vit', 'encoder/block1/attn/query/kernel'),
        ('vit', 'encoder/block1/mlp/fc2/kernel'),
    ],
)
def test_merge_matches_the_adapted_forward(name, kernel):
  model = smoke_model(name)
  params = init_params(model)
  adapted = randomise_b(lora.add_adapters(params, RULES[name], jax.random.key(1)))
  flat = {k: np.asarray(v) for k, v in param_tree.flatten(adapted).items()}

  merged = lora.merge(adapted, ALPHA)
  merged_flat = param_tree.flatten(merged)
  assert not any(k.startswith('lora/') for k in merged_flat)
  assert set(merged_flat) == set(param_tree.flatten(params))
  # W + (alpha / r) a b, reshaped to W's shape (conv: (kh, kw, in) flattened to fan_in).
  w, a, b = flat[kernel], flat[f'lora/{kernel}/a'], flat[f'lora/{kernel}/b']
  expected = w + (ALPHA / a.shape[1]) * (a.astype(np.float64) @ b).reshape(w.shape)
  np.testing.assert_allclose(np.asarray(merged_flat[kernel]), expected, rtol=1e-5, atol=1e-5)
  # The scale is linear in alpha.
  delta = np.asarray(merged_flat[kernel]) - w
  double = np.asarray(param_tree.flatten(lora.merge(adapted, 2 * ALPHA))[kernel]) - w
  np.testing.assert_allclose(double, 2 * delta, rtol=1e-4, atol=1e-5)
  # Unadapted leaves pass through untouched.
  for p in ('head/kernel', 'head/bias'):
    assert np.array_equal(np.asarray(merged_flat[p]), flat[p])

  apply = apply_fn(model)
  base_logits = np.asarray(apply(params, IMAGES))
  merged_logits = np.asarray(apply(merged, IMAGES))
  adapted_logits = np.asarray(
      jax.jit(step_lib.make_forward(model, ALPHA, lora_form='factored'))(adapted, IMAGES)
  )
  np.testing.assert_allclose(merged_logits, adapted_logits, rtol=1e-5, atol=1e-5)
  assert np.abs(adapted_logits - base_logits).max() > 1e-3  # the adapters do something


def test_factored_gradients_equal_the_merged_ones():
  """The factored path's adapter gradients are those of the merged kernel W + (alpha/r) a b."""
  model = smoke_model('vit')
  params = init_params(model)
  adapted = randomise_b(lora.add_adapters(params, RULES['vit'], jax.random.key(1)))
  base, pairs = lora.split(adapted, ALPHA, 'factored')
  labels = jnp.arange(IMAGES.shape[0]) % 5

  def loss(adapters, forward):
    logits = forward({**base, 'lora': adapters}, IMAGES)
    return step_lib.cross_entropy(logits, labels).mean()

  merged_forward = lambda p, x: model.apply({'params': lora.merge(p, ALPHA)}, x)
  g_merged = jax.jit(jax.grad(lambda a: loss(a, merged_forward)))(adapted['lora'])
  g_factored = jax.jit(
      jax.grad(lambda a: loss(a, step_lib.make_forward(model, ALPHA, lora_form='factored')))
  )(adapted['lora'])
  flat_m, flat_f = param_tree.flatten(g_merged), param_tree.flatten(g_factored)
  assert set(flat_m) == set(flat_f) and len(flat_f) == 2 * len(pairs)
  for k in flat_m:
    assert np.abs(np.asarray(flat_m[k])).max() > 0, k
    np.testing.assert_allclose(flat_f[k], flat_m[k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.parametrize(
    'name, rules, size',
    [
        # The ViT's patch embedding: a strided VALID conv, so the low-rank conv must reuse the
        # layer's own strides and padding.
        ('vit', ((r'embedding/kernel', 4), (r'encoder/block1/mlp/fc1/kernel', 4)), 28),
        # GRU cells' Dense gates run inside nn.RNN's scan.
        ('gru', ((r'gru/.*/(i|h)[rzn]/kernel', 2),), None),
    ],
)
def test_factored_forward_equals_merged_on_strided_convs_and_scanned_cells(name, rules, size):
  if name == 'gru':
    model = models.build_model('gru', 5, hidden=3)
    images = jnp.asarray(np.random.default_rng(2).normal(size=(4, 12, 1)).astype(np.float32))
    shapes = jax.eval_shape(model.init, jax.random.key(0), images)['params']
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), s.dtype), shapes)
  else:
    model, images, params = smoke_model(name), IMAGES, init_params(smoke_model(name))
  adapted = randomise_b(lora.add_adapters(params, rules, jax.random.key(1)))
  merged = np.asarray(apply_fn(model)(lora.merge(adapted, ALPHA), images))
  factored = np.asarray(
      jax.jit(step_lib.make_forward(model, ALPHA, lora_form='factored'))(adapted, images)
  )
  base = np.asarray(apply_fn(model)(params, images))
  np.testing.assert_allclose(factored, merged, rtol=1e-4, atol=1e-5)
  assert np.abs(factored - base).max() > 1e-3


def test_an_adapter_no_layer_uses_is_an_error():
  model = smoke_model('cnn')
  params = init_params(model)
  adapted = lora.add_adapters(params, RULES['cnn'], jax.random.key(1))
  flat = param_tree.flatten(adapted)
  # An adapter whose kernel no Dense/Conv layer reads (here: a renamed one) would train
  # nothing and change nothing: the forward refuses it.
  flat['lora/blockX/conv1/kernel/a'] = flat.pop('lora/block1/conv1/kernel/a')
  flat['lora/blockX/conv1/kernel/b'] = flat.pop('lora/block1/conv1/kernel/b')
  with pytest.raises(lora.LoRAError, match=r"no Dense, DenseGeneral or Conv layer uses 'blockX"):
    step_lib.make_forward(model, ALPHA, lora_form='factored')(param_tree.unflatten(flat), IMAGES)


def test_factored_lora_step_costs_less_than_full_fine_tuning():
  """Merged adapters (W + a b every step) cost ~0.9x full fine-tuning's FLOPs on this ViT;
  the factored form skips every kernel gradient: under 0.75x (0.70x on the README's ViT)."""
  model = models.build_model('vit', 10, width=96, depth=2, num_heads=4)
  images = jax.ShapeDtypeStruct((16, 28, 28, 1), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.key(0), images)['params']
  adapted = jax.eval_shape(lambda p: lora.add_adapters(p, RULES['vit'], jax.random.key(1)), params)
  labels = jnp.arange(16) % 10

  def step_flops(forward, params, trainable):
    flat = param_tree.flatten(params)
    learned = {k: v for k, v in flat.items() if trainable(k)}
    frozen = {k: v for k, v in flat.items() if not trainable(k)}

    def loss(learned, frozen, images):
      logits = forward(param_tree.unflatten({**frozen, **learned}), images)
      return step_lib.cross_entropy(logits, labels).mean()

    return cost.compiled_cost(jax.grad(loss), learned, frozen, images)['flops']

  full = step_flops(step_lib.make_forward(model, ALPHA), params, lambda k: True)
  trains = lambda k: k.startswith(('lora/', 'head/'))
  factored = step_flops(step_lib.make_forward(model, ALPHA, lora_form='factored'), adapted, trains)
  merged_forward = lambda p, x: model.apply({'params': lora.merge(p, ALPHA)}, x)
  merged = step_flops(merged_forward, adapted, trains)
  assert merged > 0.85 * full  # the cost this test guards against
  assert factored < 0.75 * full, (factored / full, merged / full)


def test_auto_form_factors_only_where_it_saves_flops():
  """The README CNN: its first conv (fan_in 9, 32 out) costs less merged, the 3136 x 256
  dense and the 288 x 64 conv less factored; 'auto' takes each kernel's cheaper form and
  so costs no more than either form throughout."""
  model = models.build_model('cnn', 10, widths=(32, 64), convs=1, norm='none', dense=256)
  images = jax.ShapeDtypeStruct((16, 28, 28, 1), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.key(0), images)['params']
  adapted = jax.eval_shape(lambda p: lora.add_adapters(p, RULES['cnn'], jax.random.key(1)), params)
  _, factored = jax.eval_shape(lambda p: lora.split(p, ALPHA, 'auto'), adapted)
  assert set(factored) == {'block2/conv1/kernel', 'dense/kernel'}
  _, factored = jax.eval_shape(lambda p: lora.split(p, ALPHA, 'merged'), adapted)
  assert not factored
  labels = jnp.arange(16) % 10

  def step_flops(form):
    flat = param_tree.flatten(adapted)
    learned = {k: v for k, v in flat.items() if k.startswith(('lora/', 'head/'))}
    frozen = {k: v for k, v in flat.items() if k not in learned}
    forward = step_lib.make_forward(model, ALPHA, lora_form=form)

    def loss(learned, frozen, images):
      logits = forward(param_tree.unflatten({**frozen, **learned}), images)
      return step_lib.cross_entropy(logits, labels).mean()

    return cost.compiled_cost(jax.grad(loss), learned, frozen, images)['flops']

  flops = {form: step_flops(form) for form in lora.FORMS}
  assert flops['auto'] < min(flops['factored'], flops['merged']), flops
  with pytest.raises(lora.LoRAError, match="unknown adapt.lora.form 'fused'; choose one of"):
    step_lib.make_forward(model, ALPHA, lora_form='fused')


def shapes_only(model):
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']


def test_adapter_shapes_and_rank_cap():
  params = init_params(smoke_model('cnn'))
  kernels = {
      p: v.shape
      for p, v in param_tree.flatten(params).items()
      if p.endswith('kernel') and not p.startswith('head')
  }
  assert kernels == {
      'block1/conv1/kernel': (3, 3, 1, 4),
      'block2/conv1/kernel': (3, 3, 4, 8),
      'dense/kernel': (7 * 7 * 8, 16),
  }
  for rank in (2, 8, 64):
    rules = ((r'(block\d+/conv\d+|dense)/kernel', rank),)
    flat = param_tree.flatten(lora.add_adapters(params, rules, jax.random.key(0)))
    adapters = lora.adapter_paths(flat)
    assert len(adapters) == 2 * len(kernels)
    for path, shape in kernels.items():
      fan_in, fan_out = int(np.prod(shape[:-1])), shape[-1]
      r = min(rank, fan_in, fan_out)
      a, b = flat[f'lora/{path}/a'], flat[f'lora/{path}/b']
      assert a.shape == (fan_in, r) and b.shape == (r, fan_out), (path, rank)
      assert a.dtype == b.dtype == flat[path].dtype
      assert not np.asarray(b).any() and np.asarray(a).std() > 0
  # Explicitly: rank 8 on a (3,3,1,4) conv is capped at 4, on the (392,16) dense it is not.
  flat = param_tree.flatten(lora.add_adapters(params, RULES['cnn'], jax.random.key(0)))
  assert flat['lora/block1/conv1/kernel/a'].shape == (9, 4)
  assert flat['lora/dense/kernel/b'].shape == (8, 16)
  assert 'lora/head/kernel/a' not in flat


def test_lora_rule_errors():
  params = shapes_only(smoke_model('cnn'))  # errors come before any array is touched
  with pytest.raises(
      path_rules.RuleError,
      match=r"rule 'blok1/conv1/kernel' matches no parameter; nearby paths: "
      r'.*block1/conv1/kernel',
  ):
    lora.add_adapters(params, (('blok1/conv1/kernel', 4),), jax.random.key(0))
  with pytest.raises(
      path_rules.RuleError, match=r"'dense/bias' has shape \(16,\).*2D \(Dense\) or 4D"
  ):
    lora.add_adapters(params, (('dense/.*', 4),), jax.random.key(0))
  with pytest.raises(path_rules.RuleError, match='no kernel a rank > 0'):
    lora.add_adapters(params, (('dense/kernel', 0),), jax.random.key(0))


# ------------------------------------------------------------------------ end to end


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  up = trained_run(tmp_path_factory, 'upstream_cnn', str(CONFIGS / 'pretrain.py') + ':smoke')
  spec = str(ROOT / 'configs/methods/lora.py') + f':model=cnn,smoke,checkpoint={up}'
  return up, spec, trained_run(tmp_path_factory, 'lora_cnn', spec)


def export(capsys, wd, out, mode):
  code = cli.main(['export', '--workdir', str(wd), '--out', str(out), '--mode', mode])
  captured = capsys.readouterr()
  assert code == 0, captured.err
  return captured.out


def test_adapter_export_restores_the_trained_model(runs, tmp_path, capsys):
  up, spec, wd = runs
  table = json.loads((wd / 'params.json').read_text())
  trained = {k: np.asarray(v) for k, v in param_tree.flatten(checkpoint.restore_params(wd)).items()}

  out = tmp_path / 'adapters.safetensors'
  assert 'wrote' in export(capsys, wd, out, 'adapters')
  tensors = load_file(str(out))
  assert tensors and all(k.startswith(('lora/', 'head/')) for k in tensors)
  assert set(tensors) == {p for p, row in table.items() if row['trainable']}
  assert not any(k in tensors for k, row in table.items() if not row['trainable'])
  for k, v in tensors.items():
    assert v.dtype == trained[k].dtype and np.array_equal(v, trained[k]), k

  # Base checkpoint + adapter file == the trained run, bitwise.
  config = config_lib.load_config(spec, [f'--config.init.adapters={out}'])
  mesh = sharding.make_mesh(config.mesh)
  exp = experiment.build(config, mesh, data.dataset_info(config.dataset), 1)
  restored = {k: np.asarray(v) for k, v in param_tree.flatten(exp.params).items()}
  assert set(restored) == set(trained)
  for k in trained:
    assert np.array_equal(restored[k], trained[k]), k

  # ... so evaluation gives the trained run's final numbers.
  eval_step = jax.jit(step_lib.make_eval_step(exp.forward, exp.preprocess_eval))
  eval_arrays = data.load_eval_splits(config.dataset)
  final = evaluate.evaluate_splits(eval_step, exp.params, eval_arrays, config.eval_batch_size, mesh)
  last = [
      r
      for r in (json.loads(line) for line in (wd / 'metrics.jsonl').read_text().splitlines())
      if 'test/accuracy' in r
  ][-1]
  for key in ('val/accuracy', 'test/accuracy', 'val/loss', 'test/loss'):
    assert final[key] == pytest.approx(last[key], rel=1e-6, abs=1e-7), key

  # An adapter file that does not fit the model is an error naming the tensor.
  bad = tmp_path / 'bad.npz'
  np.savez(bad, **{'lora/block9/conv1/kernel/a': np.zeros((9, 4), np.float32)})
  with pytest.raises(pretrained.PretrainedError, match=r"'lora/block9/conv1/kernel/a'"):
    pretrained.overlay(exp.params, str(bad))


def test_merged_export_runs_in_a_plain_model(runs, tmp_path, capsys):
  up, spec, wd = runs
  trained = checkpoint.restore_params(wd)
  out = tmp_path / 'merged.safetensors'
  export(capsys, wd, out, 'merged')
  tensors = load_file(str(out))
  assert not any(k.startswith('lora/') for k in tensors)

  model = smoke_model('cnn')
  fresh = init_params(model, seed=5)
  assert set(tensors) == set(param_tree.flatten(fresh))
  plain, report = pretrained.load_into(fresh, str(out))
  assert report['unused'] == [] and not report['kept']
  # The adapters were trained, so the merged kernels differ from the frozen base kernels.
  base = param_tree.flatten(trained)
  assert not np.array_equal(tensors['dense/kernel'], np.asarray(base['dense/kernel']))

  alpha = json.loads((wd / 'config.json').read_text())['adapt']['lora']['alpha']
  test = data.load_split(config_lib.load_config(spec).dataset, 'test[:64]')
  images = jnp.asarray(test['image'], jnp.float32) / 255.0
  expected = np.asarray(jax.jit(step_lib.make_forward(model, alpha))(trained, images))
  got = np.asarray(apply_fn(model)(plain, images))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert np.abs(expected).max() > 1e-3
