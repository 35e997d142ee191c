#!/usr/bin/env python3
"""Create, set up, run on and tear down Cloud TPU VMs for jaxadapt (standard library only).

    python launch/tpu.py [--dry-run] create   NAME --zone Z [--accelerator-type T] [--version V] [--spot] [--queued]
    python launch/tpu.py [--dry-run] setup    NAME --zone Z (--repo URL | --source DIR)
    python launch/tpu.py [--dry-run] run      NAME --zone Z --config CFG --workdir gs://B/P [-- --config.k=v ...]
    python launch/tpu.py [--dry-run] relaunch NAME --zone Z --config CFG --workdir gs://B/P (--repo URL | --source DIR)
    python launch/tpu.py [--dry-run] logs     NAME --zone Z
    python launch/tpu.py [--dry-run] delete   NAME --zone Z [--queued]

Every subcommand also takes --project P. With --dry-run the gcloud commands are
printed (one per line, shell-quoted, copy-pasteable) instead of run.

Each command is built by a pure function returning an argv list; `execute`
prints or runs them. Commands run on every worker of the slice (--worker=all),
which is what a multi-host slice needs: every host runs the same `jaxadapt train`.

`relaunch` (run until done) loops: describe the TPU; if it is missing, PREEMPTED
or TERMINATED (queued: SUSPENDED, FAILED), delete and re-create it and run setup;
then run the training command. The trainer exits 0 both when training finished
and when a SIGTERM (e.g. a spot preemption notice) made it checkpoint and stop;
in the second case process 0 prints "stopped by signal at step N". So an attempt
counts as done when the run exits 0 AND no line of its streamed output contains
that message AND (optional) the `--done-check` shell command exits 0, e.g.
`--done-check 'gsutil -q stat gs://B/P/checkpoints/5000/commit_success.txt'`.
Otherwise it sleeps `--sleep` seconds and tries again, `--max-attempts` times.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time

PROG = 'tpu.py'
LIBTPU_FIND_LINKS = 'https://storage.googleapis.com/jax-releases/libtpu_releases.html'
REMOTE_DIR = '~/jaxadapt'
REMOTE_LOG = '~/jaxadapt.log'
STOP_MARKER = 'stopped by signal at step'
BAD_NODE_STATES = ('PREEMPTED', 'TERMINATED')
BAD_QUEUED_STATES = ('SUSPENDED', 'SUSPENDING', 'FAILED')
# Accelerator-type prefix -> TPU software (runtime) version for JAX.
RUNTIMES = (
    ('v6e', 'v2-alpha-tpuv6e'),
    ('v5p', 'v2-alpha-tpuv5'),
    ('v5litepod', 'v2-alpha-tpuv5-lite'),
    ('v5e', 'v2-alpha-tpuv5-lite'),
    ('v4', 'tpu-ubuntu2204-base'),
    ('v3', 'tpu-ubuntu2204-base'),
    ('v2', 'tpu-ubuntu2204-base'),
)


class UsageError(Exception):
  """Bad input: reported as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):

  def error(self, message):  # One line, not argparse's usage block.
    raise UsageError(f'{message} (see {self.prog} --help)')


# ---------------------------------------------------------------- helpers


def default_runtime(accelerator_type: str) -> str:
  for prefix, runtime in RUNTIMES:
    if accelerator_type.startswith(prefix + '-'):
      return runtime
  raise UsageError(f'no default runtime for accelerator type {accelerator_type!r}: pass --version')


def is_multihost(accelerator_type: str) -> bool:
  """Slices larger than 8 (cores for v2-v4/v5p, chips for v5e/v6e) span several hosts."""
  try:
    return int(accelerator_type.rsplit('-', 1)[1]) > 8
  except (IndexError, ValueError):
    return True


def _common(args) -> list[str]:
  flags = ['--zone', args.zone]
  if args.project:
    flags += ['--project', args.project]
  return flags


def _ssh(args, command: str, worker: str = 'all') -> list[str]:
  return (
      ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', args.name]
      + _common(args)
      + [f'--worker={worker}', '--command', command]
  )


# ---------------------------------------------------------------- command builders


def create_cmd(args) -> list[str]:
  runtime = args.version or default_runtime(args.accelerator_type)
  if args.queued:
    cmd = (
        [
            'gcloud',
            'compute',
            'tpus',
            'queued-resources',
            'create',
            args.name,
            '--node-id',
            args.name,
        ]
        + _common(args)
        + ['--accelerator-type', args.accelerator_type, '--runtime-version', runtime]
    )
  else:
    cmd = (
        ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', args.name]
        + _common(args)
        + ['--accelerator-type', args.accelerator_type, '--version', runtime]
    )
  return cmd + (['--spot'] if args.spot else [])


def delete_cmd(args) -> list[str]:
  if args.queued:  # --force also deletes the node the queued resource holds.
    return (
        ['gcloud', 'compute', 'tpus', 'queued-resources', 'delete', args.name]
        + _common(args)
        + ['--force', '--quiet']
    )
  return ['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', args.name] + _common(args) + ['--quiet']


def describe_cmd(args) -> list[str]:
  if args.queued:
    return (
        ['gcloud', 'compute', 'tpus', 'queued-resources', 'describe', args.name]
        + _common(args)
        + ['--format=value(state.state)']
    )
  return (
      ['gcloud', 'compute', 'tpus', 'tpu-vm', 'describe', args.name]
      + _common(args)
      + ['--format=value(state)']
  )


def setup_script(repo: str | None) -> str:
  """Shell run on every worker: dataset package, code (git), pip install with libtpu."""
  steps = [
      # Fashion-MNIST comes from the Debian/Ubuntu package; other datasets do not need it.
      '(sudo apt-get update -qq && sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq'
      ' dataset-fashion-mnist) || echo "setup: warning: dataset-fashion-mnist not installed"',
  ]
  if repo:
    steps.append(
        f'if [ -d {REMOTE_DIR}/.git ]; then git -C {REMOTE_DIR} pull --ff-only; '
        f'else git clone {shlex.quote(repo)} {REMOTE_DIR}; fi'
    )
  steps += [
      'python3 -m pip install -q --upgrade pip',
      f'python3 -m pip install -q -e {REMOTE_DIR} "jax[tpu]" -f {LIBTPU_FIND_LINKS}',
  ]
  return 'set -e; ' + '; '.join(steps)


def setup_cmds(args) -> list[list[str]]:
  cmds = []
  if args.source:  # Fresh copy: scp into an existing directory would nest it.
    cmds.append(_ssh(args, f'rm -rf {REMOTE_DIR}'))
    cmds.append(
        [
            'gcloud',
            'compute',
            'tpus',
            'tpu-vm',
            'scp',
            '--recurse',
            args.source,
            f'{args.name}:{REMOTE_DIR}',
        ]
        + _common(args)
        + ['--worker=all']
    )
  cmds.append(_ssh(args, setup_script(args.repo)))
  return cmds


def train_script(config: str, workdir: str, extra: list[str]) -> str:
  """Shell run on every worker: train, tee to ~/jaxadapt.log, keep the trainer's exit status."""
  train = shlex.join(['jaxadapt', 'train', '--config', config, '--workdir', workdir, *extra])
  return (
      f'export PATH="$HOME/.local/bin:$PATH"; cd {REMOTE_DIR} || exit 1; '
      f'{{ {train} 2>&1; echo $? > ~/.jaxadapt.rc; }} | tee -a {REMOTE_LOG}; '
      f'exit "$(cat ~/.jaxadapt.rc)"'
  )


def run_cmd(args) -> list[str]:
  return _ssh(args, train_script(args.config, args.workdir, args.extra))


def logs_cmd(args) -> list[str]:
  return _ssh(args, f'tail -f {REMOTE_LOG}', worker=args.worker)


# ---------------------------------------------------------------- execution


def execute(cmds, dry_run: bool) -> int:
  """Prints (dry run) or runs the commands in order; stops at the first failure.

  A command is an argv list, or a string run by the shell (a user's --done-check).
  """
  for cmd in cmds:
    if dry_run:
      print(cmd if isinstance(cmd, str) else shlex.join(cmd), flush=True)
      continue
    rc = _call(cmd)
    if rc:
      return rc
  return 0


def _call(cmd, capture: bool = False):
  try:
    if capture:
      return subprocess.run(cmd, capture_output=True, text=True)
    return subprocess.call(cmd, shell=isinstance(cmd, str))
  except FileNotFoundError:
    raise UsageError(
        f'{cmd[0]} not found: install the Google Cloud CLI '
        '(https://cloud.google.com/sdk/docs/install) or use --dry-run'
    )


def _note(message: str) -> None:
  print(f'{PROG}: {message}', file=sys.stderr, flush=True)


def tpu_state(args) -> str | None:
  """The node state (queued: the queued resource's state), or None if it does not exist."""
  result = _call(describe_cmd(args), capture=True)
  if result.returncode:
    if 'NOT_FOUND' in result.stderr or 'not found' in result.stderr.lower():
      return None
    last = (result.stderr.strip().splitlines() or ['no message'])[-1]
    raise RuntimeError(f'describe failed (exit {result.returncode}): {last}')
  return result.stdout.strip() or None


def _needs_recreate(state: str | None, queued: bool) -> bool:
  return state is None or state in (BAD_QUEUED_STATES if queued else BAD_NODE_STATES)


def _is_ready(state: str | None, queued: bool) -> bool:
  return state == ('ACTIVE' if queued else 'READY')


def wait_ready(args) -> str | None:
  """Polls until the TPU is ready, gone/preempted, or --ready-timeout passes; returns the state."""
  deadline = time.monotonic() + args.ready_timeout
  while True:
    state = tpu_state(args)
    if _is_ready(state, args.queued) or _needs_recreate(state, args.queued):
      return state
    if time.monotonic() > deadline:
      return state
    _note(f'{args.name} is {state}; waiting {args.poll}s')
    time.sleep(args.poll)


def run_streaming(cmd: list[str]) -> tuple[int, bool]:
  """Runs `cmd`, echoing its output; returns (exit status, whether the trainer was stopped)."""
  stopped = False
  try:
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors='replace',
        bufsize=1,
    )
  except FileNotFoundError:
    raise UsageError(f'{cmd[0]} not found: install the Google Cloud CLI or use --dry-run')
  for line in proc.stdout:
    sys.stdout.write(line)
    sys.stdout.flush()
    stopped = stopped or STOP_MARKER in line
  return proc.wait(), stopped


def relaunch(args) -> int:
  recover = [delete_cmd(args), create_cmd(args), *setup_cmds(args)]
  if args.dry_run:
    print(shlex.join(describe_cmd(args)))
    state = args.assume_state
    print(f'# state: {state or "missing"} (simulated)')
    if _needs_recreate(state, args.queued):
      execute(recover[1:2] if state is None else recover[:2], dry_run=True)
      if args.queued:
        print(f'# poll until {args.name} is ACTIVE: ' + shlex.join(describe_cmd(args)))
      execute(recover[2:], dry_run=True)
    print(shlex.join(run_cmd(args)))
    print(f"# done when the run exits 0 and prints no '{STOP_MARKER}' line")
    if args.done_check:
      print(args.done_check)
    print(
        f'# dry run: one simulated attempt of at most {args.max_attempts}, ' f'{args.sleep}s apart'
    )
    return 0

  for attempt in range(1, args.max_attempts + 1):
    _note(f'attempt {attempt}/{args.max_attempts}')
    try:
      state = wait_ready(args)
      if _needs_recreate(state, args.queued):
        _note(f'{args.name} is {state or "missing"}: re-creating it')
        if state is not None:
          _call(delete_cmd(args))  # Failure is fine: maybe it is already gone.
        if execute([create_cmd(args)], dry_run=False) == 0:
          state = wait_ready(args)
        if _is_ready(state, args.queued):
          if execute(setup_cmds(args), dry_run=False):
            state = 'SETUP_FAILED'
      if _is_ready(state, args.queued):
        rc, stopped = run_streaming(run_cmd(args))
        if rc == 0 and not stopped:
          if not args.done_check or _call(args.done_check) == 0:
            _note(f'run complete after {attempt} attempt(s)')
            return 0
          _note('run exited 0 but --done-check failed')
        else:
          _note(f'run exited {rc}' + (' after being stopped by a signal' if stopped else ''))
      else:
        _note(f'{args.name} not ready ({state})')
    except RuntimeError as e:
      _note(str(e))
    if attempt < args.max_attempts:
      _note(f'retrying in {args.sleep}s')
      time.sleep(args.sleep)
  _note(f'giving up after {args.max_attempts} attempts')
  return 1


# ---------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
  common = _Parser(add_help=False, allow_abbrev=False)
  common.add_argument('name', help='TPU (and queued-resource) name')
  common.add_argument('--zone', help='e.g. us-central2-b (v4), us-west4-a (v5e); required')
  common.add_argument('--project', help='GCP project (default: gcloud config)')
  common.add_argument(
      '--dry-run',
      action='store_true',
      default=argparse.SUPPRESS,
      help='print the commands instead of running them',
  )
  queued = _Parser(add_help=False, allow_abbrev=False)
  queued.add_argument(
      '--queued',
      action='store_true',
      help='the TPU is a queued resource (queued-resources create/delete)',
  )
  make = _Parser(add_help=False, allow_abbrev=False)
  make.add_argument('--accelerator-type', default='v5litepod-8', help='default: %(default)s')
  make.add_argument('--version', help='TPU software version (default: from the accelerator type)')
  make.add_argument('--spot', action='store_true', help='spot (preemptible) capacity')
  code = _Parser(add_help=False, allow_abbrev=False)
  src = code.add_mutually_exclusive_group()
  src.add_argument('--repo', help='git URL to clone on every worker')
  src.add_argument('--source', help='local directory to scp to every worker (a clean checkout)')
  train = _Parser(add_help=False, allow_abbrev=False)
  train.add_argument('--config', help='config file, relative to the repo root; required')
  train.add_argument('--workdir', help='gs://BUCKET/PATH shared by all workers; required')

  p = _Parser(
      prog=PROG,
      allow_abbrev=False,
      description=__doc__.split('\n\n')[0],
      epilog='Arguments after `--` (and --config.KEY=VALUE) go to `jaxadapt train`.',
  )
  p.add_argument(
      '--dry-run', action='store_true', help='print the commands instead of running them'
  )
  sub = p.add_subparsers(dest='command', required=True, metavar='COMMAND')
  sub.add_parser(
      'create', parents=[common, queued, make], help='create a TPU VM or queued resource'
  )
  sub.add_parser(
      'setup',
      parents=[common, code],
      help='copy/clone the code and pip install it with jax[tpu] on every worker',
  )
  passthrough = 'Arguments after `--` (and --config.KEY=VALUE) go to `jaxadapt train`.'
  sub.add_parser(
      'run',
      parents=[common, train],
      help='train on every worker, streaming logs',
      epilog=passthrough,
  )
  r = sub.add_parser(
      'relaunch',
      parents=[common, queued, make, code, train],
      epilog=passthrough,
      help='run until done: re-create + set up the TPU when preempted',
  )
  r.add_argument('--max-attempts', type=int, default=20, help='default: %(default)s')
  r.add_argument(
      '--sleep', type=int, default=60, help='seconds between attempts (default: %(default)s)'
  )
  r.add_argument(
      '--done-check', help='extra shell command that must exit 0 for the run to count as done'
  )
  r.add_argument(
      '--poll', type=int, default=30, help='seconds between state checks (default: %(default)s)'
  )
  r.add_argument(
      '--ready-timeout',
      type=int,
      default=3600,
      help='max seconds to wait for the TPU to be ready (default: %(default)s)',
  )
  r.add_argument(
      '--assume-state',
      default='READY',
      type=lambda s: None if s == 'missing' else s,
      help='dry run only: simulated state (READY, PREEMPTED, missing, ...)',
  )
  lg = sub.add_parser('logs', parents=[common], help='follow ~/jaxadapt.log on the workers')
  lg.add_argument('--worker', default='all', help='all, or one worker index (default: all)')
  sub.add_parser('delete', parents=[common, queued], help='delete the TPU VM or queued resource')
  return p


def parse(argv: list[str]) -> argparse.Namespace:
  extra: list[str] = []
  if '--' in argv:
    i = argv.index('--')
    argv, extra = argv[:i], argv[i + 1 :]
  args, unknown = parser().parse_known_args(argv)
  for arg in unknown:
    if not (args.command in ('run', 'relaunch') and arg.startswith('--config.') and '=' in arg):
      raise UsageError(f'unrecognized argument {arg!r} (pass jaxadapt options after --)')
  args.extra = unknown + extra
  if extra and args.command not in ('run', 'relaunch'):
    raise UsageError(f'{args.command} takes no arguments after --')
  _validate(args)
  return args


def _validate(args) -> None:
  if not args.zone:
    raise UsageError(
        f'{args.command}: --zone is required (e.g. --zone us-central2-b for v4, '
        '--zone us-west4-a for v5e)'
    )
  if hasattr(args, 'accelerator_type') and not args.version:
    default_runtime(args.accelerator_type)
  if args.command == 'setup' and not (args.repo or args.source):
    raise UsageError('setup: pass --repo URL (git clone) or --source DIR (scp)')
  if args.command == 'relaunch' and not (args.repo or args.source):
    raise UsageError('relaunch: pass --repo URL or --source DIR to set up a re-created TPU')
  if args.command in ('run', 'relaunch'):
    for flag in ('config', 'workdir'):
      if not getattr(args, flag):
        raise UsageError(f'{args.command}: --{flag} is required')
    if not args.workdir.startswith('gs://'):
      where = (
          'is lost when the TPU is preempted'
          if args.command == 'relaunch'
          else 'is not shared across the workers of a multi-host slice'
      )
      if args.command == 'relaunch':
        raise UsageError(
            f'relaunch: --workdir {args.workdir} is local: it {where}; use gs://BUCKET/PATH'
        )
      _note(
          f'warning: --workdir {args.workdir} is local to each worker: it {where} '
          'and is lost with the TPU; use gs://BUCKET/PATH'
      )
  if args.command == 'relaunch' and args.max_attempts < 1:
    raise UsageError('relaunch: --max-attempts must be >= 1')


def main(argv: list[str] | None = None) -> int:
  try:
    args = parse(sys.argv[1:] if argv is None else list(argv))
    if args.command == 'create':
      return execute([create_cmd(args)], args.dry_run)
    if args.command == 'setup':
      return execute(setup_cmds(args), args.dry_run)
    if args.command == 'run':
      return execute([run_cmd(args)], args.dry_run)
    if args.command == 'relaunch':
      return relaunch(args)
    if args.command == 'logs':
      return execute([logs_cmd(args)], args.dry_run)
    if args.command == 'delete':
      return execute([delete_cmd(args)], args.dry_run)
    raise AssertionError(args.command)
  except UsageError as e:
    print(f'{PROG}: error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f'{PROG}: interrupted (the remote run may still be going: see `logs`)', file=sys.stderr)
    return 130


if __name__ == '__main__':
  sys.exit(main())
