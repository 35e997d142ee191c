"""launch/tpu.py: the exact gcloud commands printed by --dry-run, and its input errors."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
V5E = ['my-tpu', '--zone', 'us-west4-a']
TRAIN = ['--config', 'configs/fashion_mnist/scratch.py', '--workdir', 'gs://b/runs/x']
SSH = 'gcloud compute tpus tpu-vm ssh my-tpu --zone us-west4-a --worker=all --command '
INSTALL = (
    'python3 -m pip install -q --upgrade pip; python3 -m pip install -q -e ~/jaxadapt '
    '"jax[tpu]" -f https://storage.googleapis.com/jax-releases/libtpu_releases.html'
)
APT = (
    'set -e; (sudo apt-get update -qq && sudo env DEBIAN_FRONTEND=noninteractive apt-get '
    'install -y -qq dataset-fashion-mnist) || echo "setup: warning: dataset-fashion-mnist '
    'not installed"; '
)
CLONE = (
    'if [ -d ~/jaxadapt/.git ]; then git -C ~/jaxadapt pull --ff-only; '
    'else git clone https://github.com/me/jaxadapt.git ~/jaxadapt; fi; '
)
RUN = (
    SSH + '\'export PATH="$HOME/.local/bin:$PATH"; cd ~/jaxadapt || exit 1; '
    '{ jaxadapt train --config configs/fashion_mnist/scratch.py --workdir gs://b/runs/x%s '
    '2>&1; echo $? > ~/.jaxadapt.rc; } | tee -a ~/jaxadapt.log; exit "$(cat ~/.jaxadapt.rc)"\''
)
DESCRIBE = "gcloud compute tpus tpu-vm describe my-tpu --zone us-west4-a '--format=value(state)'"
DONE = "# done when the run exits 0 and prints no 'stopped by signal at step' line"


def tpu(*args):
  return subprocess.run(
      [sys.executable, 'launch/tpu.py', *args], cwd=ROOT, capture_output=True, text=True, timeout=30
  )


def dry(*args):
  result = tpu('--dry-run', *args)
  assert result.returncode == 0, result.stderr
  return result.stdout.splitlines()


def test_create_defaults_to_v5e():
  assert dry('create', *V5E) == [
      'gcloud compute tpus tpu-vm create my-tpu --zone us-west4-a '
      '--accelerator-type v5litepod-8 --version v2-alpha-tpuv5-lite'
  ]


def test_create_v4_spot_with_project():
  assert dry(
      'create',
      'my-tpu',
      '--zone',
      'us-central2-b',
      '--accelerator-type',
      'v4-8',
      '--spot',
      '--project',
      'p',
  ) == [
      'gcloud compute tpus tpu-vm create my-tpu --zone us-central2-b --project p '
      '--accelerator-type v4-8 --version tpu-ubuntu2204-base --spot'
  ]


def test_create_queued_spot():
  assert dry('create', *V5E, '--queued', '--spot') == [
      'gcloud compute tpus queued-resources create my-tpu --node-id my-tpu --zone us-west4-a '
      '--accelerator-type v5litepod-8 --runtime-version v2-alpha-tpuv5-lite --spot'
  ]


def test_setup_from_repo():
  assert dry('setup', *V5E, '--repo', 'https://github.com/me/jaxadapt.git') == [
      SSH + "'" + APT + CLONE + INSTALL + "'"
  ]


def test_setup_from_source_dir():
  assert dry('setup', *V5E, '--source', '.') == [
      SSH + "'rm -rf ~/jaxadapt'",
      "gcloud compute tpus tpu-vm scp --recurse . 'my-tpu:~/jaxadapt' --zone us-west4-a --worker=all",
      SSH + "'" + APT + INSTALL + "'",
  ]


def test_run_passes_overrides_through():
  assert dry(
      'run', *V5E, *TRAIN, '--config.optim.lr=0.05', '--', '--config.num_steps=100', '--quiet'
  ) == [RUN % ' --config.optim.lr=0.05 --config.num_steps=100 --quiet']


def test_run_dry_run_flag_after_subcommand():
  assert dry('run', *V5E, *TRAIN) == tpu('run', *V5E, *TRAIN, '--dry-run').stdout.splitlines()


def test_relaunch_simulates_one_attempt():
  assert dry(
      'relaunch',
      *V5E,
      *TRAIN,
      '--repo',
      'https://github.com/me/jaxadapt.git',
      '--max-attempts',
      '3',
      '--done-check',
      'gsutil -q stat gs://b/runs/x/done',
      '--',
      '--config.seed=1',
  ) == [
      DESCRIBE,
      '# state: READY (simulated)',
      RUN % ' --config.seed=1',
      DONE,
      'gsutil -q stat gs://b/runs/x/done',
      '# dry run: one simulated attempt of at most 3, 60s apart',
  ]


def test_relaunch_recreates_a_preempted_tpu():
  assert dry(
      'relaunch',
      *V5E,
      *TRAIN,
      '--repo',
      'https://github.com/me/jaxadapt.git',
      '--spot',
      '--assume-state',
      'PREEMPTED',
  ) == [
      DESCRIBE,
      '# state: PREEMPTED (simulated)',
      'gcloud compute tpus tpu-vm delete my-tpu --zone us-west4-a --quiet',
      'gcloud compute tpus tpu-vm create my-tpu --zone us-west4-a '
      '--accelerator-type v5litepod-8 --version v2-alpha-tpuv5-lite --spot',
      SSH + "'" + APT + CLONE + INSTALL + "'",
      RUN % '',
      DONE,
      '# dry run: one simulated attempt of at most 20, 60s apart',
  ]


def test_delete():
  assert dry('delete', *V5E) == [
      'gcloud compute tpus tpu-vm delete my-tpu --zone us-west4-a --quiet'
  ]
  assert dry('delete', *V5E, '--queued') == [
      'gcloud compute tpus queued-resources delete my-tpu --zone us-west4-a --force --quiet'
  ]


def test_logs():
  assert dry('logs', *V5E) == [SSH + "'tail -f ~/jaxadapt.log'"]


@pytest.mark.parametrize(
    'argv, message',
    [
        (['create', 'my-tpu'], 'create: --zone is required'),
        (['run', *V5E, '--config', 'c.py'], 'run: --workdir is required'),
        (['setup', *V5E], 'setup: pass --repo URL'),
        (
            ['create', *V5E, '--accelerator-type', 'v9-8'],
            "no default runtime for accelerator type 'v9-8'",
        ),
        (['run', *V5E, *TRAIN, '--bogus'], "unrecognized argument '--bogus'"),
        (
            ['relaunch', *V5E, '--config', 'c.py', '--workdir', '/tmp/x', '--repo', 'r'],
            'relaunch: --workdir /tmp/x is local',
        ),
    ],
)
def test_bad_input_is_one_line_and_nonzero(argv, message):
  result = tpu('--dry-run', *argv)
  assert result.returncode == 2
  assert result.stdout == ''
  lines = result.stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith('tpu.py: error: ') and message in lines[0], lines


def test_local_workdir_warns_for_run():
  result = tpu('--dry-run', 'run', *V5E, '--config', 'c.py', '--workdir', '/tmp/x')
  assert result.returncode == 0
  assert 'warning: --workdir /tmp/x is local to each worker' in result.stderr


FAKE_GCLOUD = r"""#!/bin/sh
n=$(cat "$FAKE_DIR/n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$FAKE_DIR/n"
echo "$1 $2 $3 $4 $5" >> "$FAKE_DIR/log"
case "$*" in
  *describe*) if [ $n -le 1 ]; then echo "ERROR: NOT_FOUND" >&2; exit 1; fi; echo READY ;;
  *"jaxadapt train"*) if [ $n -le 6 ]; then echo "stopped by signal at step 5; checkpoint saved"; fi ;;
esac
"""


def test_relaunch_loop_recreates_then_reruns_until_not_stopped(tmp_path):
  """Against a fake gcloud: missing TPU -> create + setup + run (stopped) -> rerun (done)."""
  (tmp_path / 'gcloud').write_text(FAKE_GCLOUD)
  (tmp_path / 'gcloud').chmod(0o755)
  env = {'PATH': f'{tmp_path}:/usr/bin:/bin', 'FAKE_DIR': str(tmp_path)}
  result = subprocess.run(
      [
          sys.executable,
          'launch/tpu.py',
          'relaunch',
          *V5E,
          *TRAIN,
          '--repo',
          'r',
          '--sleep',
          '0',
          '--poll',
          '0',
      ],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=30,
  )
  assert result.returncode == 0, result.stderr
  assert 'run complete after 2 attempt(s)' in result.stderr
  assert (tmp_path / 'log').read_text().splitlines() == [
      'compute tpus tpu-vm describe my-tpu',
      'compute tpus tpu-vm create my-tpu',
      'compute tpus tpu-vm describe my-tpu',
      'compute tpus tpu-vm ssh my-tpu',  # setup
      'compute tpus tpu-vm ssh my-tpu',  # run 1: stopped by signal
      'compute tpus tpu-vm describe my-tpu',
      'compute tpus tpu-vm ssh my-tpu',
  ]  # run 2: done
