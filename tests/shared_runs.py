"""Training runs shared across test files (each trained once per pytest session), and the
helpers that read them."""

import json
import pathlib

import jax
import numpy as np

from jaxadapt import checkpoint, cli, data, experiment, models, param_tree, presets, sharding

ROOT = pathlib.Path(__file__).resolve().parents[1]
METHODS = ROOT / 'configs/methods'
FASHION = ROOT / 'configs/fashion_mnist'
PRETRAIN_SMOKE = str(ROOT / 'configs/fashion_mnist/pretrain.py') + ':smoke'


def trained_run(tmp_path_factory, name, spec, *overrides):
  """Trains `spec` once per session into a shared directory; returns the workdir."""
  wd = tmp_path_factory.getbasetemp() / 'shared_runs' / name
  marker = wd.parent / f'{name}.done'
  key = json.dumps([spec, *overrides])
  if marker.exists():
    assert marker.read_text() == key, f'shared run {name} was trained with other arguments'
    return wd
  code = cli.main(['train', '--quiet', '--config', spec, '--workdir', str(wd), *overrides])
  assert code == 0, f'training {spec} failed'
  marker.write_text(key)
  return wd


def quick_bench(out, suite):
  """Runs `jaxadapt bench --quick` for `suite` into `out`; returns `out`."""
  assert cli.main(['bench', '--suite', str(suite), '--out', str(out), '--quick']) == 0
  return out


def bench_records(out) -> list[dict]:
  """The records of `out/results.jsonl`, in file order."""
  return [json.loads(l) for l in (out / 'results.jsonl').read_text().splitlines()]


def upstream_cnn(tmp_path_factory):
  """The upstream smoke checkpoint (cnn, Fashion-MNIST classes 0-4), trained through the CLI."""
  return trained_run(tmp_path_factory, 'upstream_cnn', PRETRAIN_SMOKE)


def host_flat(params) -> dict:
  """{'a/b': numpy array} of a parameter tree."""
  return {k: np.asarray(v) for k, v in param_tree.flatten(params).items()}


def upstream_flat(path) -> dict:
  """The flat parameters of a workdir checkpoint or an .npz file."""
  path = pathlib.Path(path)
  if path.suffix == '.npz':
    with np.load(path) as z:
      return {k: z[k] for k in z.files}
  return host_flat(checkpoint.restore_params(path))


def build_experiment(config, total_steps=6):
  """The trainer's model, initial parameters and rules for `config`, without training."""
  mesh = sharding.make_mesh(config.mesh)
  info = data.dataset_info(config.dataset)
  return experiment.build(config, mesh, info, total_steps)


def config_spec(name, arg=''):
  folder = FASHION if name in ('scratch', 'pretrain') else METHODS
  return str(folder / f'{name}.py') + (f':{arg}' if arg else '')


def upstream_file(tmp_path_factory, model):
  """A random 'checkpoint' file of the smoke `model` (no training: only values matter)."""
  path = tmp_path_factory.getbasetemp() / 'shared_runs' / f'upstream_{model}.npz'
  if not path.exists():
    kwargs = {**presets.MODELS[model]['kwargs'], **models.get_spec(model).smoke}
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
