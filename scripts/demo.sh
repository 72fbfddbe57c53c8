#!/usr/bin/env bash
# The demo: bash scripts/demo.sh [run_demo.py args, e.g. --sdk]
#
# On a fresh machine it creates .venv (python3 -m venv) and installs the package with its
# scikit-learn and azure extras (adlfs: Azure Blob is the first storage), pinned by
# constraints.txt (output in .cache/demo-setup.log; skipped once installed). Then it runs
# examples/heart/run_demo.py: trains the heart classifier, registers it, creates the endpoint and
# deployment, invokes it on the unlabeled heart data with the embedded local server (under
# BATCHPOINT_HOME, default ~/.batchpoint), waits for the job and downloads the predictions. Works
# from any folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

mkdir -p .cache
LOG="$ROOT/.cache/demo-setup.log"

SCRIPT=demo.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# --- Python: .venv with the package (editable), scikit-learn and the azure extra, pinned by constraints.txt
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c '' >/dev/null 2>&1; then
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "Batchpoint needs Python 3.11 or newer as python3 (found: $(python3 --version 2>&1 || echo none))" >&2
    exit 1
  fi
  say "creating .venv"
  : >"$LOG"
  rm -rf .venv
  run "python3 -m venv .venv" python3 -m venv .venv
fi
HASH="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
STAMP=".venv/.demo-installed-$HASH-sklearn-azure"
# scripts/test.sh's stamp for the same files means the test extras, a superset, are installed
if [[ ! -f "$STAMP" && ! -f ".venv/.installed-$HASH" ]] ||
   ! compgen -G '.venv/lib/python3*/site-packages/batchpoint-*.dist-info' >/dev/null; then
  say "installing Python packages into .venv (a minute or two; log: .cache/demo-setup.log)"
  rm -f .venv/.demo-installed-*
  run "pip install" .venv/bin/python -m pip install --quiet --disable-pip-version-check --progress-bar off \
    -c constraints.txt -e '.[sklearn,azure]'
  touch "$STAMP"
fi

# --- bubblewrap: the server runs each worker's scoring code in a bwrap sandbox (docs/security.md,
# "Scoring code is fenced"); without it jobs are refused, so install it (Debian/Ubuntu) when missing
if ! command -v bwrap >/dev/null 2>&1 && [[ "${BATCHPOINT_WORKERS__ISOLATION:-bwrap}" != none ]]; then
  if command -v apt-get >/dev/null 2>&1 && { [[ $(id -u) -eq 0 ]] || sudo -n true 2>/dev/null; }; then
    say "installing bubblewrap (apt-get), which fences the scoring code"
    sudo_() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi; }
    run "apt-get update" sudo_ apt-get -o DPkg::Lock::Timeout=300 update -qq
    run "apt-get install bubblewrap" sudo_ env DEBIAN_FRONTEND=noninteractive \
      apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends bubblewrap
  else
    say "bubblewrap (bwrap) is not installed and cannot be installed here: install it (apt-get install bubblewrap," >&2
    say "dnf install bubblewrap), or run the demo unfenced with BATCHPOINT_WORKERS__ISOLATION=none" >&2
    exit 1
  fi
fi

# --- the heart classifier demo
.venv/bin/python examples/heart/run_demo.py "$@"
