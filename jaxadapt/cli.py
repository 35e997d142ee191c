"""The `jaxadapt` command: train | bench | report | perf | export | inspect | predict.

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
      default='',
      help='comma-separated rows, each a method name with optional +variants (bf16: '
      'compute in bfloat16; frozen_bf16: frozen parameters stored in bfloat16; int8, nf4: '
      'frozen kernels quantised); default: linear_probe,partial_ft,full_ft,lora,bitfit,'
      'full_ft+bf16,lora+bf16,lora+bf16+frozen_bf16,lora+int8,lora+nf4',
  )
  perf.add_argument('--steps', type=int, default=10, help='timed steps per method')
  perf.add_argument('--out', help='also write the rows as JSON here')

  bench = sub.add_parser('bench', help='run a benchmark suite (resumes; skips finished cells)')
  bench.add_argument('--suite', required=True, help='suite file, optionally suite.py:key=value')
  bench.add_argument('--out', required=True, help='results directory')
  bench.add_argument('--quick', action='store_true', help="the suite's quick variant")
  bench.add_argument(
      '--shard',
      help='i/n: run only shard i of n (round-robin over the run list, plus the runs they '
      'read); merge the shard directories with `jaxadapt report DIR1 DIR2 ...`',
  )

  report = sub.add_parser(
      'report', help='rebuild report.md and plots from results.jsonl and suite.json'
  )
  report.add_argument(
      'results',
      nargs='+',
      help='results directory (written by jaxadapt bench); several: the shards of one suite, '
      'merged',
  )
  report.add_argument(
      '--out', help='where report.md and its plots go (default: the first directory)'
  )

  inspect = sub.add_parser(
      'inspect', help='how a timm / Hugging Face / big_vision / BiT checkpoint maps to jaxadapt'
  )
  inspect.add_argument('checkpoint', help='hf:<dir>, timm:<file>, big_vision:<npz>, bit:<npz>')

  predict = sub.add_parser('predict', help='logits or features of any checkpoint on inputs')
  predict.add_argument('--checkpoint', required=True, help='a workdir or an importer checkpoint')
  predict.add_argument('--input', required=True, help='.npy of model-ready images, or .txt')
  predict.add_argument('--out', required=True, help='.npy file for the outputs')
  predict.add_argument('--features', action='store_true', help='the pooled features, not logits')

  export = sub.add_parser('export', help="write a workdir's parameters to .npz/.safetensors")
  export.add_argument('--workdir', required=True)
  export.add_argument(
      '--out', required=True, help='file ending in .npz or .safetensors (a directory for --format)'
  )
  export.add_argument(
      '--format',
      choices=('hf', 'timm'),
      help="write the source library's names and layout (LoRA merged) to the --out directory",
  )
  export.add_argument(
      '--mode',
      default='merged',
      choices=('merged', 'full', 'adapters'),
      help='merged: LoRA folded in; adapters: trainable leaves only',
  )
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  from jaxadapt.errors import UserError

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
    names = [m.strip() for m in args.methods.split(',') if m.strip()] or perf.DEFAULT_ROWS
    rows = perf.run(config, names, args.steps)
    print(perf.table(rows))
    if args.out:
      with open(args.out, 'w') as f:
        json.dump(rows, f, indent=1)
    return 0
  if args.command == 'bench':
    from jaxadapt.bench import runlist

    runlist.run_suite(args.suite, args.out, quick=args.quick, shard=args.shard)
    _print_report([args.out])
    return 0
  if args.command == 'report':
    _print_report(args.results, args.out)
    return 0
  if args.command == 'inspect':
    from jaxadapt import importers

    plan = importers.inspect(args.checkpoint)
    print(f'format: {plan.format} ({plan.family}) from {plan.path}')
    print(f'model: {plan.model} ' + ' '.join(f'{k}={v}' for k, v in plan.kwargs.items()))
    print(f'classes: {plan.num_classes or "no head"}')
    print(importers.core.table(plan))
    return 0
  if args.command == 'predict':
    from jaxadapt import predict

    out = predict.predict(args.checkpoint, args.input, args.out, features=args.features)
    print(f'wrote {out.shape} {"features" if args.features else "logits"} to {args.out}')
    return 0
  if args.command == 'export' and args.format:
    from jaxadapt.importers import export as export_lib

    written = export_lib.export(args.workdir, args.out, args.format)
    print(f'wrote {len(written)} tensors in {args.format} layout to {args.out}')
    return 0
  if args.command == 'export':
    from jaxadapt import export

    flat = export.export(args.workdir, args.out, args.mode)
    print(
        f'wrote {len(flat)} tensors ({sum(v.size for v in flat.values()):,} values) to {args.out}'
    )
    return 0
  raise AssertionError(args.command)


def _print_report(results_dirs: list[str], out: str | None = None) -> None:
  from jaxadapt.bench import reports, shard

  report = reports.write_report(*results_dirs, out=out)
  print(report.summary)
  if len(results_dirs) > 1:
    gaps = shard.missing(results_dirs)
    print(
        f'merged {len(results_dirs)} results directories'
        + (f"; missing shards: {', '.join(gaps)}" if gaps else '')
    )
  target = out or results_dirs[0]
  print(f"report: {os.path.join(target, 'report.md')}\nplots: {', '.join(report.plots)}")


if __name__ == '__main__':
  sys.exit(main())
