"""The `jaxadapt` command: train | bench | report | perf | export.

Bad input (a config typo, a missing dataset, an unwritable workdir) is one
line on stderr and exit status 2; set JAXADAPT_DEBUG=1 for the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from jaxadapt.errors import UserError


def _split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
  """Separates `--config.a.b=v` overrides (also `--config.a.b v`) from other args."""
  rest, overrides, i = [], [], 0
  argv = list(argv)
  while i < len(argv):
    arg = argv[i]
    if arg.startswith('--config.'):
      if '=' not in arg and i + 1 < len(argv):
        arg, i = f'{arg}={argv[i + 1]}', i + 1
      overrides.append(arg)
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='jaxadapt',
      description='Scratch vs transfer vs fine-tune vs PEFT vs distillation, measured.',
  )
  sub = parser.add_subparsers(dest='command', required=True)
  train = sub.add_parser(
      'train',
      help='train one config (resumes from the workdir)',
      epilog='Override any config key: --config.optim.lr=0.05',
  )
  train.add_argument(
      '--config', required=True, help='config file, optionally file.py:key=value,...'
  )
  train.add_argument('--workdir', required=True, help='where checkpoints, metrics and config go')
  train.add_argument('--quiet', action='store_true', help='no progress bar or table')
  train.add_argument(
      '--distributed',
      action='store_true',
      help='multi-process run: call jax.distributed.initialize() first (auto-'
      'detected on Cloud TPU pods; elsewhere set JAX_COORDINATOR_ADDRESS, '
      'JAX_NUM_PROCESSES, JAX_PROCESS_ID)',
  )

  perf = sub.add_parser(
      'perf',
      help='FLOPs, step time, trainable params and optimizer memory '
      "of every method on one config's model and batch",
  )
  perf.add_argument('--config', required=True)
  perf.add_argument(
      '--methods',
      default='linear_probe,partial_ft,full_ft,lora,bitfit',
      help='comma-separated method names',
  )
  perf.add_argument('--steps', type=int, default=10, help='timed steps per method')
  perf.add_argument('--out', help='also write the rows as JSON here')

  bench = sub.add_parser('bench', help='run a benchmark suite (resumes; skips finished cells)')
  bench.add_argument('--suite', required=True, help='suite file, optionally suite.py:key=value')
  bench.add_argument('--out', required=True, help='results directory')
  bench.add_argument('--quick', action='store_true', help="the suite's quick variant")

  report = sub.add_parser('report', help='rebuild report.md and plots from results.jsonl')
  report.add_argument('results', help='results directory (holding results.jsonl)')

  export = sub.add_parser('export', help="write a workdir's parameters to .npz/.safetensors")
  export.add_argument('--workdir', required=True)
  export.add_argument('--out', required=True, help='file ending in .npz or .safetensors')
  export.add_argument(
      '--mode',
      default='merged',
      choices=('merged', 'full', 'adapters'),
      help='merged: LoRA folded in; adapters: trainable leaves only',
  )
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  rest, overrides = _split_overrides(argv)
  args = _parser().parse_args(rest)
  try:
    return _run(args, overrides)
  except KeyboardInterrupt:
    print('jaxadapt: interrupted', file=sys.stderr)
    return 130
  except UserError as e:
    if os.environ.get('JAXADAPT_DEBUG'):
      raise
    message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    print(f'jaxadapt: error: {message}', file=sys.stderr)
    return 2


def _enable_compilation_cache() -> None:
  """Reuse compiled XLA programs across runs: benchmark cells and resumes skip recompiling."""
  path = os.environ.get('JAXADAPT_XLA_CACHE', os.path.expanduser('~/.cache/jaxadapt/xla'))
  if path in ('', '0'):
    return
  import jax

  if jax.config.jax_compilation_cache_dir:  # already set up (by the caller): keep it
    return
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.2)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def _initialize_distributed() -> None:
  """Joins the multi-process job: explicit JAX_* variables, else JAX's auto-detection (TPU pods)."""
  import jax

  env = os.environ
  kwargs = {}
  if 'JAX_COORDINATOR_ADDRESS' in env:
    kwargs = dict(
        coordinator_address=env['JAX_COORDINATOR_ADDRESS'],
        num_processes=int(env['JAX_NUM_PROCESSES']),
        process_id=int(env['JAX_PROCESS_ID']),
    )
  if env.get('JAX_PLATFORMS', '').startswith('cpu'):
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # CPU processes talk over TCP
  jax.distributed.initialize(**kwargs)


def _run(args: argparse.Namespace, overrides: list[str]) -> int:
  # Heavy imports happen here so `--help` and argument errors stay instant.
  from jaxadapt import config as config_lib, host

  _enable_compilation_cache()
  host.keep_freed_memory()  # XLA's per-step buffers reuse the same pages (host.py)
  if args.command == 'train':
    config = config_lib.load_config(args.config, overrides)
    if args.distributed:
      _initialize_distributed()
    if config.adapt.fast_probe:
      from jaxadapt import fast_probe

      fast_probe.run(config, args.workdir, quiet=args.quiet)
    else:
      from jaxadapt import train

      train.train(config, args.workdir, quiet=args.quiet)
    return 0
  if args.command == 'perf':
    import json
    from jaxadapt import perf

    config = config_lib.load_config(args.config, overrides)
    rows = perf.run(config, [m.strip() for m in args.methods.split(',') if m.strip()], args.steps)
    print(perf.table(rows))
    if args.out:
      with open(args.out, 'w') as f:
        json.dump(rows, f, indent=1)
    return 0
  if args.command == 'bench':
    from jaxadapt.bench import runlist, runner

    path, _, arg = args.suite.partition(':')
    if runlist.is_runlist(runner.load_module_suite(path, arg)):
      runlist.run_suite(args.suite, args.out, quick=args.quick)
    else:
      runner.run_suite(args.suite, args.out, quick=args.quick)
    _print_report(args.out)
    return 0
  if args.command == 'report':
    _print_report(args.results)
    return 0
  if args.command == 'export':
    from jaxadapt import export

    flat = export.export(args.workdir, args.out, args.mode)
    print(
        f'wrote {len(flat)} tensors ({sum(v.size for v in flat.values()):,} values) to {args.out}'
    )
    return 0
  raise AssertionError(args.command)


def _print_report(results_dir: str) -> None:
  from jaxadapt.bench import repro_report, report

  if repro_report.is_repro_results(results_dir):
    text, plots = repro_report.write_report(results_dir)
    print(text)
  else:
    text, plots = report.write_report(results_dir)
    print(report.terminal_table(report.load_results(os.path.join(results_dir, 'results.jsonl'))))
  print(f"report: {os.path.join(results_dir, 'report.md')}\nplots: {', '.join(plots)}")


if __name__ == '__main__':
  sys.exit(main())
