#!/usr/bin/env bash
# THE test command: bash scripts/test.sh [pytest args...]   (BATCHPOINT_TEST_PROCESSES: test processes, default 2)
#
# On a fresh machine it installs what the tests need (.venv with the package and its test extras,
# Ray among them; Azurite under .cache/node, PostgreSQL's server from Debian), checks the layers
# (import-linter), ruff and docs/cli.md, then creates a loopback-only network namespace and, inside
# it, starts the real components (scripts/components.sh: Azurite, moto, PostgreSQL, a Ray head and
# a second Ray worker node) and runs pytest; it stops them by PID, the namespace's holder last,
# and exits with pytest's exit code.
# Install output goes to .cache/test-setup.log; pytest's summary is the last line printed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

AZURITE_VERSION=3.35.0
mkdir -p .cache
LOG="$ROOT/.cache/test-setup.log"
[[ "${1:-}" == --in-netns ]] || : >"$LOG"  # the second pass (below) appends to the same log
T0=$SECONDS

SCRIPT=test.sh
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo -n "$@"; fi
}

# The second pass: the components (Azurite, moto, PostgreSQL, a Ray head and worker node) and
# pytest, run by the first pass inside a loopback-only network namespace (see the end).
components_and_pytest() {
  # shellcheck source=scripts/components.sh
  source "$ROOT/scripts/components.sh"
  cleanup() { components_stop >/dev/null 2>&1 || true; }
  trap cleanup EXIT
  trap 'cleanup; exit 130' INT
  trap 'cleanup; exit 143' TERM
  printf '\n=== starting components\n' >>"$LOG"
  if ! components_start 2>>"$LOG"; then
    say "FAILED: starting the test components (last lines of $LOG follow)" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
  say "ready in $((SECONDS - T0)) s (Azurite, Azurite HTTPS, moto, PostgreSQL, Ray head + worker node; loopback-only network namespace); running pytest"

  # --- pytest; its summary line is the last thing printed. Two test processes (pytest-xdist): most
  # tests wait on servers, workers and components more than they compute. tests/conftest.py keeps a
  # file's tests in one process and the Ray files together in one; -n 0 after the command runs one.
  set +e
  .venv/bin/python -m pytest -n "${BATCHPOINT_TEST_PROCESSES:-2}" "$@"
  rc=$?
  set -e
  cleanup
  trap - EXIT INT TERM
  exit "$rc"
}
if [[ "${1:-}" == --in-netns ]]; then
  shift
  components_and_pytest "$@"
fi

# --- Python: .venv with the package (editable) and its test extras, pinned by constraints.txt
if [[ ! -x .venv/bin/python ]] || ! .venv/bin/python -c '' >/dev/null 2>&1; then
  say "creating .venv"
  rm -rf .venv
  run "python3 -m venv .venv" python3 -m venv .venv
fi
STAMP=".venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [[ ! -f "$STAMP" ]] || ! compgen -G '.venv/lib/python3*/site-packages/batchpoint-*.dist-info' >/dev/null; then
  say "installing Python packages into .venv (log: .cache/test-setup.log)"
  rm -f .venv/.installed-*
  run "pip install" .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off \
    -c constraints.txt -e '.[test]'
  touch "$STAMP"
fi

# --- static checks: the layers (import-linter contracts in pyproject.toml) and ruff
if ! .venv/bin/lint-imports --no-cache >>"$LOG" 2>&1; then
  say "FAILED: an import breaks the layers (import-linter; the contracts are in pyproject.toml):" >&2
  sed -n '/Broken contracts/,$p' "$LOG" >&2
  exit 1
fi
if ! .venv/bin/ruff check --quiet src tests bench examples docs/gen_cli.py >&2; then
  say "FAILED: ruff check (fix the lines above, or run .venv/bin/ruff check --fix)" >&2
  exit 1
fi
if ! .venv/bin/python docs/gen_cli.py --check >&2; then
  say "FAILED: docs/cli.md does not match the CLI's --help texts" >&2
  exit 1
fi
say "layers (import-linter), ruff and docs/cli.md: clean"

# --- Azurite from npm, in .cache/node
AZ_PKG=.cache/node/node_modules/azurite/package.json
if [[ ! -x .cache/node/node_modules/.bin/azurite ]] ||
   ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$AZ_PKG" 2>/dev/null; then
  say "installing azurite@$AZURITE_VERSION into .cache/node"
  mkdir -p .cache/node
  run "npm install azurite" npm install --prefix .cache/node --no-audit --no-fund \
    --loglevel=error "azurite@$AZURITE_VERSION"
fi

# --- PostgreSQL server binaries (Debian package)
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  say "installing PostgreSQL (apt-get)"
  run "apt-get update" as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
  run "apt-get install postgresql" as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends postgresql
fi

# --- Chromium for the web page's browser test (tests/server/test_web_ui.py; Playwright from the
# test extra drives it: Playwright's own browser download is not reachable)
if [[ ! -x /usr/bin/chromium ]]; then
  say "installing chromium (apt-get)"
  run "apt-get update" as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
  run "apt-get install chromium" as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium
fi

# --- bubblewrap: every worker runs scoring code in a bwrap sandbox (src/batchpoint/engines/sandbox.py,
# docs/security.md "Scoring code is fenced"); tests/engines/test_worker_isolation.py needs it
if ! command -v bwrap >/dev/null 2>&1; then
  say "installing bubblewrap (apt-get)"
  run "apt-get update" as_root apt-get -o DPkg::Lock::Timeout=300 update -qq
  run "apt-get install bubblewrap" as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends bubblewrap
fi

# --- environments (issue 11 A): the wheels the environment tests serve from a local package
# index on 127.0.0.1 (tests/fixtures/local_index.py), fetched here from PyPI with their upload
# times, since the tests themselves have no internet; cached in .cache/env-index (~320 MB), and
# uv's cache in .cache/uv stays warm between runs
if ! .venv/bin/python tests/fixtures/local_index_fetch.py .cache/env-index >>"$LOG" 2>&1; then
  say "FAILED: fetching the environment tests' wheels from PyPI (last lines of $LOG follow)" >&2
  tail -n 20 "$LOG" >&2
  exit 1
fi

# --- components and pytest, in a loopback-only network namespace: Ray binds the machine's
# external address even when told 127.0.0.1, and tests may only send traffic to loopback. This
# script runs itself again in the namespace (--in-netns: components_and_pytest above); what is
# left in the namespace is ended after it, its holder last.
# shellcheck source=scripts/components.sh
source "$ROOT/scripts/components.sh"
if ! netns_start 2>>"$LOG"; then
  say "FAILED: creating the loopback-only network namespace (unshare -n; needs root). Last lines of $LOG:" >&2
  tail -n 10 "$LOG" >&2
  netns_stop >/dev/null 2>&1 || true
  exit 1
fi
trap 'netns_stop >/dev/null 2>&1 || true' EXIT
trap 'netns_stop >/dev/null 2>&1 || true; exit 130' INT
trap 'netns_stop >/dev/null 2>&1 || true; exit 143' TERM
set +e
nsenter -t "$BP_NETNS_PID" -n bash "$ROOT/scripts/test.sh" --in-netns "$@"
rc=$?
set -e
netns_stop >/dev/null 2>&1 || true
trap - EXIT INT TERM
exit "$rc"
