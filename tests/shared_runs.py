"""Training runs shared across test files: each is trained once per pytest session."""

import json

from jaxadapt import cli


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
