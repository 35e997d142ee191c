"""`jaxadapt perf` and perf.measure: measured FLOPs and optimizer memory per method."""

import json
import pathlib

import pytest

from jaxadapt import cli, config as config_lib, perf

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRATCH = str(ROOT / 'configs/fashion_mnist/scratch.py')
SMOKE = SCRATCH + ':smoke'


def test_perf_cli_table_and_json(tmp_path, capsys):
  out = tmp_path / 'perf.json'
  code = cli.main(
      [
          'perf',
          '--config',
          SMOKE,
          '--methods',
          'linear_probe,lora,full_ft,lora+bf16+frozen_bf16',
          '--steps',
          '2',
          '--out',
          str(out),
      ]
  )
  captured = capsys.readouterr()
  assert code == 0, captured.err

  table = [line for line in captured.out.splitlines() if line.startswith('|')]
  assert table[0].startswith('| method |') and set(table[1]) <= set('|-: ')
  names = ['linear_probe', 'lora', 'full_ft', 'lora+bf16+frozen_bf16']
  assert [line.split('|')[1].strip() for line in table[2:]] == names
  # Ratios are relative to full_ft, whose own row reads 1.00.
  assert table[4].split('|')[3].strip() == '1.00'

  rows = {r['method']: r for r in json.loads(out.read_text())}
  assert list(rows) == names
  for r in rows.values():
    assert r['model'] == 'cnn' and r['batch_size'] == 64
    assert r['step_flops'] > r['forward_flops'] > 0
    assert r['median_step_s'] > 0
    assert r['images_per_s'] == pytest.approx(64 / r['median_step_s'])
    # AdamW: two float32 moments per trainable value, plus a few int32 step counters.
    assert 8 * r['trainable_params'] <= r['opt_state_bytes'] <= 8 * r['trainable_params'] + 64
  lp, lo, ft = rows['linear_probe'], rows['lora'], rows['full_ft']
  assert lp['trainable_params'] == 16 * 10 + 10  # smoke cnn: 16 features, 10 classes
  assert ft['trainable_params'] == ft['params'] == lp['params']
  # LoRA's parameters are the base model's plus its adapters, and only adapters + head train.
  adapters = lo['params'] - ft['params']
  assert adapters > 0 and lo['trainable_params'] == adapters + lp['trainable_params']
  assert lp['opt_state_bytes'] < lo['opt_state_bytes'] < ft['opt_state_bytes']
  assert lp['step_over_forward_plus_head'] <= 1.1 < ft['step_over_forward_plus_head']
  # bf16: same parameters and optimizer state (trainable ones stay float32), frozen base
  # at half the bytes, less compiled memory.
  bf = rows['lora+bf16+frozen_bf16']
  assert bf['trainable_params'] == lo['trainable_params']
  assert bf['opt_state_bytes'] == lo['opt_state_bytes'] and ft['frozen_param_bytes'] == 0
  assert 2 * bf['frozen_param_bytes'] == lo['frozen_param_bytes'] > 0
  assert bf['peak_bytes'] < lo['peak_bytes']


@pytest.mark.parametrize(
    'rows, message',
    [
        ('lroa', "unknown method 'lroa' in perf row 'lroa'; choose one of: scratch,"),
        ('lora+bf61', "unknown perf variant 'bf61' in perf row 'lora+bf61'"),
    ],
)
def test_perf_unknown_method_or_variant_is_one_line(capsys, rows, message):
  # The bad row comes last: it is refused before the first row is measured.
  code = cli.main(['perf', '--config', SMOKE, '--methods', f'full_ft,{rows}', '--steps', '1'])
  captured = capsys.readouterr()
  assert code == 2 and message in captured.err and 'did you mean' in captured.err, captured.err
  assert 'compiled' not in captured.out and 'measured' not in captured.out


@pytest.fixture(scope='module')
def perf_rows():
  config = config_lib.load_config(SCRATCH, ['--config.batch_size=32'])
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
