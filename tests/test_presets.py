"""Config presets (jaxadapt/presets.py): datasets the method configs take, model presets,
smoke mode read from the model registry, and their errors."""

import dataclasses
import pathlib

import pytest

from jaxadapt import cli, config as config_lib, data, models, presets

from shared_runs import build_experiment

ROOT = pathlib.Path(__file__).resolve().parents[1]
METHODS = ('linear_probe', 'partial_ft', 'full_ft', 'lora', 'bitfit', 'distill')


def method_config(method, arg='', overrides=()):
  return config_lib.load_config(str(ROOT / f'configs/methods/{method}.py:{arg}'), overrides)


@pytest.mark.parametrize('method', METHODS)
def test_fashion_mnist_is_the_default_dataset(method):
  default = method_config(method).to_dict()
  assert default == method_config(method, 'dataset=fashion_mnist').to_dict()
  assert default['dataset']['name'] == 'fashion_mnist'


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('dataset', ['digits', 'cifar10'])
def test_dataset_argument_selects_the_preset(method, dataset):
  c = method_config(method, f'dataset={dataset}')
  preset = presets.DATASETS[dataset]
  assert c.dataset.name == dataset
  for key, value in preset['dataset'].items():
    assert c.dataset[key] == value, key
  assert (c.preprocess.train, c.preprocess.eval) == (
      preset['preprocess']['train'],
      preset['preprocess']['eval'],
  )
  # Downstream methods adapt to the preset's task; the distilled student learns all classes.
  classes = () if method == 'distill' else preset['downstream_classes']
  assert c.dataset.classes == classes


@pytest.mark.parametrize(
    'dataset, num_classes, input_shape',
    [('fashion_mnist', 5, (28, 28, 1)), ('digits', 10, (28, 28, 1)), ('cifar10', 5, (32, 32, 3))],
)
def test_dataset_presets_give_the_downstream_task(dataset, num_classes, input_shape):
  # Builder metadata only: no data is prepared or downloaded.
  c = method_config('linear_probe', f'dataset={dataset},smoke', ['--config.init.checkpoint='])
  info = data.dataset_info(c.dataset)
  assert data.output_shape(c.preprocess.train, info['image_shape']) == input_shape
  assert build_experiment(c).params['head']['kernel'].shape[-1] == num_classes


def test_unknown_dataset_is_one_line_before_anything_is_written(tmp_path, capsys):
  with pytest.raises(config_lib.ConfigError) as err:
    method_config('lora', 'dataset=cifar')
  assert str(err.value) == (
      "unknown dataset 'cifar' in config argument; choose one of: fashion_mnist, digits, "
      "cifar10 (did you mean 'cifar10'?)"
  )
  wd = tmp_path / 'never'
  spec = str(ROOT / 'configs/methods/lora.py:dataset=cifar')
  assert cli.main(['train', '--quiet', '--config', spec, '--workdir', str(wd)]) == 2
  assert "unknown dataset 'cifar'" in capsys.readouterr().err
  assert not wd.exists()


def test_model_presets_and_registry_models():
  c = method_config('lora', 'model=resnet')
  assert (c.optim.name, c.model.kwargs.num_stages) == ('sgd', 3)  # the preset's size
  c = method_config('partial_ft', 'model=mlp')  # no preset: the registry's defaults
  assert c.model.name == 'mlp' and c.model.kwargs.to_dict() == {}
  assert c.optim.name == 'adamw'
  assert c.adapt.trainable[0] == ('fc2(/.*)?', 'train')
  with pytest.raises(config_lib.ConfigError, match=r"unknown model 'rsnet'.*did you mean 'resnet'"):
    method_config('bitfit', 'model=rsnet')


@pytest.mark.parametrize('model', ['cnn', 'resnet', 'vit'])
def test_smoke_uses_the_registry_smoke_size(model):
  c = method_config('full_ft', f'model={model},smoke')
  for key, value in models.get_spec(model).smoke.items():
    assert c.model.kwargs[key] == value, key
  assert c.num_steps == 6


def test_smoke_reads_the_registry_entry_before_the_method_rules(monkeypatch):
  spec = dataclasses.replace(models.get_spec('cnn'), smoke={'widths': (2, 2, 2), 'dense': 0})
  monkeypatch.setitem(models.REGISTRY, 'cnn', spec)
  c = method_config('partial_ft', 'model=cnn,smoke,k=3')
  assert (c.model.kwargs.widths, c.model.kwargs.dense) == ((2, 2, 2), 0)
  unfrozen = [rule for rule, label in c.adapt.trainable if label == 'train']
  assert unfrozen == ['block1(/.*)?', 'block2(/.*)?', 'block3(/.*)?', 'head/.*']  # no dense
