#!/usr/bin/env bash
# Real components for the test suite: Azurite (HTTP, and HTTPS + OAuth), a moto S3 server and a
# PostgreSQL server, all on 127.0.0.1 with free ports, in a throw-away folder.
#
# Sourced by scripts/test.sh, which calls `components_start` (exports the BATCHPOINT_TEST_* variables)
# and `components_stop`. For developers it also runs on its own:
#
#   eval "$(bash scripts/components.sh env)"     # start everything, export its variables here
#   .venv/bin/python -m pytest tests/...          # run tests against it
#   bash scripts/components.sh stop "$BATCHPOINT_TEST_COMPONENTS_DIR"
#
# Needs what scripts/test.sh installs: .venv (moto_server), .cache/node (Azurite), PostgreSQL's
# server binaries (/usr/lib/postgresql/*/bin). Processes are stopped by PID, never by name.

_BP_COMPONENTS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Azurite's well-known development account.
BP_AZURITE_ACCOUNT=devstoreaccount1
BP_AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

_bp_log() { printf 'components: %s\n' "$*" >&2; }

# Print N distinct free loopback ports (all bound at once so they differ).
_bp_free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# True while PID runs (a zombie counts as gone).
_bp_alive() {
  local pid=$1 state
  [[ -n "$pid" ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ "$state" != Z ]]
}

_bp_fail() { # name logfile
  _bp_log "$1 failed to start; last lines of $2:"
  tail -n 30 "$2" >&2 2>/dev/null || true
  return 1
}

# Start a command in the background, output to LOG, its PID to PIDFILE. It is started from a
# subshell that exits at once, so it is no child of this shell: the shell never reports its death
# ("Terminated") and it outlives `bash components.sh env`.
_bp_spawn() { # pidfile log cmd...
  local pidfile=$1 log=$2; shift 2
  ( "$@" </dev/null >>"$log" 2>&1 & echo $! >"$pidfile" )
}

# Wait until 127.0.0.1:PORT accepts connections while the process in PIDFILE lives.
_bp_wait_port() { # name port pidfile log
  local name=$1 port=$2 pidfile=$3 log=$4 pid i
  pid=$(cat "$pidfile" 2>/dev/null || true)
  for ((i = 0; i < 600; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if [[ -n "$pid" ]] && ! _bp_alive "$pid"; then
      _bp_fail "$name (process exited)" "$log"; return 1
    fi
    sleep 0.1
  done
  _bp_fail "$name (no answer on port $port after 60 s)" "$log"
}

_bp_pg_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x "$d/initdb" ]] && { echo "$d"; return 0; }
  done
  return 1
}

components_start() {
  local root=$_BP_COMPONENTS_ROOT
  local azurite=$root/.cache/node/node_modules/.bin/azurite
  local moto=$root/.venv/bin/moto_server
  local pgbin ports W
  [[ -x "$azurite" ]] || { _bp_log "Azurite missing at $azurite (run scripts/test.sh once)"; return 1; }
  [[ -x "$moto" ]] || { _bp_log "moto_server missing at $moto (run scripts/test.sh once)"; return 1; }
  pgbin=$(_bp_pg_bin) || { _bp_log "PostgreSQL server binaries missing (apt-get install postgresql)"; return 1; }

  W=$(mktemp -d "${TMPDIR:-/tmp}/batchpoint-components.XXXXXX") || return 1
  chmod 755 "$W"
  export BATCHPOINT_TEST_COMPONENTS_DIR=$W
  echo "$pgbin" >"$W/pg_bin"

  # blob/queue/table for HTTP Azurite, blob/queue/table for HTTPS Azurite, moto, postgres
  read -r AZ_B AZ_Q AZ_T AZS_B AZS_Q AZS_T MOTO_P PG_P < <(_bp_free_ports 8) || return 1

  # --- self-signed certificate for the HTTPS Azurite, and a CA bundle = it + the system CAs
  if ! openssl req -newkey rsa:2048 -x509 -nodes -sha256 -days 30 -subj "/CN=localhost" \
        -keyout "$W/key.pem" -out "$W/cert.pem" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$W/openssl.log" 2>&1; then
    _bp_fail "openssl (certificate)" "$W/openssl.log"; return 1
  fi
  local sys_ca
  for sys_ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt ""; do
    [[ -z "$sys_ca" || -r "$sys_ca" ]] && break
  done
  cat "$W/cert.pem" ${sys_ca:+"$sys_ca"} >"$W/ca-bundle.pem"

  # --- start the servers that take a while first, in the background
  mkdir -p "$W/azurite" "$W/azurite-tls"
  local az_common=(--silent --disableTelemetry --skipApiVersionCheck --loose)
  _bp_spawn "$W/azurite.pid" "$W/azurite.log" "$azurite" "${az_common[@]}" \
    --location "$W/azurite" \
    --blobHost 127.0.0.1 --blobPort "$AZ_B" \
    --queueHost 127.0.0.1 --queuePort "$AZ_Q" \
    --tableHost 127.0.0.1 --tablePort "$AZ_T"
  _bp_spawn "$W/azurite-tls.pid" "$W/azurite-tls.log" "$azurite" "${az_common[@]}" \
    --oauth basic --cert "$W/cert.pem" --key "$W/key.pem" \
    --location "$W/azurite-tls" \
    --blobHost 127.0.0.1 --blobPort "$AZS_B" \
    --queueHost 127.0.0.1 --queuePort "$AZS_Q" \
    --tableHost 127.0.0.1 --tablePort "$AZS_T"
  _bp_spawn "$W/moto.pid" "$W/moto.log" "$moto" -H 127.0.0.1 -p "$MOTO_P"

  # --- PostgreSQL: own cluster in the folder, run as the postgres user, password auth on TCP
  local pg_pw pg_run=()
  pg_pw=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
  mkdir -p "$W/pgdata" "$W/pgsock"
  printf '%s' "$pg_pw" >"$W/pg_pw"
  chmod 700 "$W/pgdata"; chmod 600 "$W/pg_pw"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$W/pgdata" "$W/pgsock" "$W/pg_pw"
    pg_run=(runuser -u postgres --)
  fi
  echo "${pg_run[*]}" >"$W/pg_run"
  if ! "${pg_run[@]}" "$pgbin/initdb" -D "$W/pgdata" -U postgres --pwfile="$W/pg_pw" \
        --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --locale=C.UTF-8 --no-sync \
        >"$W/initdb.log" 2>&1; then
    _bp_fail "PostgreSQL initdb" "$W/initdb.log"; return 1
  fi
  if ! "${pg_run[@]}" "$pgbin/pg_ctl" -D "$W/pgdata" -l "$W/pgsock/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_P -k $W/pgsock -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >"$W/pg_ctl.log" 2>&1; then
    cat "$W/pgsock/server.log" >>"$W/pg_ctl.log" 2>/dev/null
    _bp_fail "PostgreSQL server" "$W/pg_ctl.log"; return 1
  fi
  if ! "${pg_run[@]}" "$pgbin/createdb" -h "$W/pgsock" -p "$PG_P" -U postgres batchpoint_test \
        >"$W/createdb.log" 2>&1; then
    _bp_fail "PostgreSQL createdb" "$W/createdb.log"; return 1
  fi

  _bp_wait_port "Azurite" "$AZ_B" "$W/azurite.pid" "$W/azurite.log" || return 1
  _bp_wait_port "Azurite (HTTPS)" "$AZS_B" "$W/azurite-tls.pid" "$W/azurite-tls.log" || return 1
  _bp_wait_port "moto server" "$MOTO_P" "$W/moto.pid" "$W/moto.log" || return 1

  local blob_url="http://127.0.0.1:$AZ_B/$BP_AZURITE_ACCOUNT"
  export BATCHPOINT_TEST_AZURITE_BLOB_URL=$blob_url
  export BATCHPOINT_TEST_AZURITE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=$BP_AZURITE_ACCOUNT;AccountKey=$BP_AZURITE_KEY;BlobEndpoint=$blob_url;QueueEndpoint=http://127.0.0.1:$AZ_Q/$BP_AZURITE_ACCOUNT;TableEndpoint=http://127.0.0.1:$AZ_T/$BP_AZURITE_ACCOUNT;"
  export BATCHPOINT_TEST_AZURITE_TLS_BLOB_URL="https://127.0.0.1:$AZS_B/$BP_AZURITE_ACCOUNT"
  export BATCHPOINT_TEST_CA_BUNDLE="$W/ca-bundle.pem"
  export SSL_CERT_FILE="$W/ca-bundle.pem"
  export REQUESTS_CA_BUNDLE="$W/ca-bundle.pem"
  export BATCHPOINT_TEST_S3_ENDPOINT="http://127.0.0.1:$MOTO_P"
  export BATCHPOINT_TEST_POSTGRES_URL="postgresql+psycopg://postgres:$pg_pw@127.0.0.1:$PG_P/batchpoint_test"
  export BATCHPOINT_TEST_COMPONENTS=1
}

# The names components_start exports (for `env` mode).
_BP_EXPORTED=(BATCHPOINT_TEST_COMPONENTS_DIR BATCHPOINT_TEST_AZURITE_BLOB_URL
  BATCHPOINT_TEST_AZURITE_CONNECTION_STRING BATCHPOINT_TEST_AZURITE_TLS_BLOB_URL
  BATCHPOINT_TEST_CA_BUNDLE SSL_CERT_FILE REQUESTS_CA_BUNDLE BATCHPOINT_TEST_S3_ENDPOINT
  BATCHPOINT_TEST_POSTGRES_URL BATCHPOINT_TEST_COMPONENTS)

# Stop what components_start started (in DIR, default $BATCHPOINT_TEST_COMPONENTS_DIR) and remove DIR.
components_stop() {
  local W=${1:-${BATCHPOINT_TEST_COMPONENTS_DIR:-}} pgbin pg_run=() name pid pids=() i
  [[ -n "$W" && -d "$W" ]] || return 0
  case "$(basename "$W")" in batchpoint-components.*) ;; *)
    _bp_log "refusing to stop/remove $W: not a components folder"; return 1 ;;
  esac
  if [[ -s "$W/pg_bin" && -f "$W/pgdata/postmaster.pid" ]]; then
    pgbin=$(cat "$W/pg_bin")
    read -r -a pg_run <"$W/pg_run" || true
    "${pg_run[@]}" "$pgbin/pg_ctl" -D "$W/pgdata" -m immediate -s -w -t 20 stop || true
  fi
  for name in azurite azurite-tls moto; do
    pid=$(cat "$W/$name.pid" 2>/dev/null || true)
    if [[ -n "$pid" ]] && _bp_alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    fi
  done
  for ((i = 0; i < 50; i++)); do
    local left=()
    for pid in "${pids[@]}"; do _bp_alive "$pid" && left+=("$pid"); done
    pids=("${left[@]}")
    ((${#pids[@]} == 0)) && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf -- "$W"
  if [[ "${BATCHPOINT_TEST_COMPONENTS_DIR:-}" == "$W" ]]; then
    unset "${_BP_EXPORTED[@]}"
  fi
}

# ---- run directly: env | stop DIR
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -uo pipefail
  case "${1:-}" in
    env)
      if ! components_start; then
        components_stop >/dev/null 2>&1
        exit 1
      fi
      for _v in "${_BP_EXPORTED[@]}"; do printf 'export %s=%q\n' "$_v" "${!_v}"; done
      printf '# stop with: bash %q stop "$BATCHPOINT_TEST_COMPONENTS_DIR"; unset %s\n' \
        "$_BP_COMPONENTS_ROOT/scripts/components.sh" "${_BP_EXPORTED[*]}"
      ;;
    stop)
      [[ -n "${2:-${BATCHPOINT_TEST_COMPONENTS_DIR:-}}" ]] || { echo "usage: $0 stop DIR" >&2; exit 2; }
      components_stop "${2:-}"
      ;;
    *)
      echo "usage: bash $0 env        start the components, print export lines" >&2
      echo "       bash $0 stop DIR   stop them (DIR = \$BATCHPOINT_TEST_COMPONENTS_DIR)" >&2
      exit 2
      ;;
  esac
fi
