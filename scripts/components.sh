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
#
# Ray: inside a loopback-only network namespace (and only there: Ray binds the machine's external
# address even when told 127.0.0.1), components_start also starts a Ray head and a second Ray
# worker node (token auth) and exports BATCHPOINT_TEST_RAY_ADDRESS. scripts/test.sh creates that
# namespace (netns_start: `unshare -n sleep`, lo up, checked to hold only lo) and runs the
# components and pytest in it; netns_stop ends what is left in it, the holder last.

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

# ---- the loopback-only network namespace (scripts/test.sh) and the Ray cluster in it

# True when this shell's network namespace has no interface but lo.
_bp_loopback_only() {
  [[ "$(ip -br addr 2>/dev/null | awk '{print $1}' | sort -u | tr '\n' ' ')" == "lo " ]]
}

# Create a network namespace holding only lo; BP_NETNS_PID is its holder (`unshare -n sleep`).
# The holder is started as a command of its own, so $! is the unshare process itself (in a list
# run in the background, $! would be a subshell's PID and nsenter would enter the host network).
netns_start() {
  local i ours
  unshare -n sleep 86400 </dev/null >/dev/null 2>&1 &
  BP_NETNS_PID=$!
  # out of the job table: its end (netns_stop's KILL) prints no "Killed" notice after pytest's summary
  disown "$BP_NETNS_PID"
  ours=$(readlink /proc/self/ns/net)
  for ((i = 0; i < 100; i++)); do  # until the holder is in a namespace of its own
    [[ "$(readlink "/proc/$BP_NETNS_PID/ns/net" 2>/dev/null)" != "$ours" ]] && break
    _bp_alive "$BP_NETNS_PID" || { _bp_log "unshare -n failed (needs root, or CAP_SYS_ADMIN)"; return 1; }
    sleep 0.05
  done
  if [[ "$(readlink "/proc/$BP_NETNS_PID/ns/net" 2>/dev/null)" == "$ours" ]]; then
    _bp_log "the namespace holder $BP_NETNS_PID is still in this shell's network namespace"; return 1
  fi
  nsenter -t "$BP_NETNS_PID" -n ip link set lo up || { _bp_log "cannot set lo up in the namespace"; return 1; }
  if ! nsenter -t "$BP_NETNS_PID" -n bash -c "$(declare -f _bp_loopback_only); _bp_loopback_only"; then
    _bp_log "the test namespace holds more than lo:"; nsenter -t "$BP_NETNS_PID" -n ip -br addr >&2
    return 1
  fi
  export BP_NETNS_PID
}

# End every process left in the namespace of BP_NETNS_PID (all started in it by this run), then
# the holder.
netns_stop() {
  local pid=${1:-${BP_NETNS_PID:-}} ns p left i
  [[ -n "$pid" ]] && _bp_alive "$pid" || return 0
  ns=$(readlink "/proc/$pid/ns/net" 2>/dev/null) || return 0
  [[ "$ns" != "$(readlink /proc/self/ns/net)" ]] || return 0
  for sig in TERM KILL; do
    left=()
    for p in /proc/[0-9]*; do
      p=${p#/proc/}
      [[ "$p" != "$pid" && "$(readlink "/proc/$p/ns/net" 2>/dev/null)" == "$ns" ]] && left+=("$p")
    done
    ((${#left[@]} == 0)) && break
    kill "-$sig" "${left[@]}" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      local alive=0
      for p in "${left[@]}"; do _bp_alive "$p" && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Start a Ray head and a worker node (2 CPUs each, token auth) in the background; _bp_ray_wait
# waits for both. Only in a loopback-only namespace; elsewhere Ray is left out (tests skip or fail).
BP_RAY_PORT=6379
_bp_ray_start() { # W
  local W=$1 ray=$_BP_COMPONENTS_ROOT/.venv/bin/ray
  [[ -x "$ray" ]] || { _bp_log "Ray is not installed in .venv: no Ray cluster"; return 0; }
  if ! _bp_loopback_only; then
    _bp_log "not in a loopback-only network namespace: no Ray cluster (scripts/test.sh starts one)"; return 0
  fi
  python3 -c 'import secrets; print(secrets.token_hex(32))' >"$W/ray-token" && chmod 600 "$W/ray-token"
  export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$W/ray-token
  # Ray starts its workers at niceness 15, which starves them on a machine running the rest of the
  # suite (and its neighbours); the local pool's workers run at 0
  export RAY_worker_niceness=0
  local common=(--block --node-ip-address=127.0.0.1 --num-cpus=2 --object-store-memory=200000000
    --disable-usage-stats)
  _bp_spawn "$W/ray-head.pid" "$W/ray-head.log" "$ray" start --head --port="$BP_RAY_PORT" \
    --dashboard-host=127.0.0.1 --dashboard-port=8265 --temp-dir="$W/ray" "${common[@]}"
  echo "${common[*]}" >"$W/ray-node.args"
}

_bp_ray_wait() { # W
  local W=$1 ray=$_BP_COMPONENTS_ROOT/.venv/bin/ray
  [[ -f "$W/ray-head.pid" ]] || return 0
  _bp_wait_port "Ray head" "$BP_RAY_PORT" "$W/ray-head.pid" "$W/ray-head.log" || return 1
  local common
  read -r -a common <"$W/ray-node.args"
  _bp_spawn "$W/ray-node.pid" "$W/ray-node.log" "$ray" start --address="127.0.0.1:$BP_RAY_PORT" "${common[@]}"
  if ! timeout 90 "$_BP_COMPONENTS_ROOT/.venv/bin/python" - "127.0.0.1:$BP_RAY_PORT" >"$W/ray-wait.log" 2>&1 <<'PY'
import sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False)
while sum(1 for n in ray.nodes() if n["Alive"]) < 2:
    time.sleep(0.2)
PY
  then
    cat "$W/ray-wait.log" >>"$W/ray-node.log"
    _bp_fail "Ray (head and worker node)" "$W/ray-node.log"; return 1
  fi
  export BATCHPOINT_TEST_RAY_ADDRESS="127.0.0.1:$BP_RAY_PORT"
  export BATCHPOINT_TEST_RAY_TOKEN_FILE="$W/ray-token"
  export BATCHPOINT_TEST_RAY_NODE_PIDFILE="$W/ray-node.pid"
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

  # --- start the servers that take a while first, in the background (Ray: in a namespace only)
  _bp_ray_start "$W" || return 1
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
  _bp_ray_wait "$W" || return 1

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
_BP_RAY_EXPORTED=(BATCHPOINT_TEST_RAY_ADDRESS BATCHPOINT_TEST_RAY_TOKEN_FILE BATCHPOINT_TEST_RAY_NODE_PIDFILE
  RAY_AUTH_MODE RAY_AUTH_TOKEN_PATH RAY_worker_niceness)

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
  for name in ray-node ray-head azurite azurite-tls moto; do  # Ray by its `ray start --block` PIDs
    pid=$(cat "$W/$name.pid" 2>/dev/null || true)
    if [[ -n "$pid" ]] && _bp_alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    fi
  done
  for ((i = 0; i < 100; i++)); do
    local left=()
    for pid in "${pids[@]}"; do _bp_alive "$pid" && left+=("$pid"); done
    pids=("${left[@]}")
    ((${#pids[@]} == 0)) && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf -- "$W"
  if [[ "${BATCHPOINT_TEST_COMPONENTS_DIR:-}" == "$W" ]]; then
    unset "${_BP_EXPORTED[@]}" "${_BP_RAY_EXPORTED[@]}"
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
      for _v in "${_BP_RAY_EXPORTED[@]}"; do
        if [[ -n "${!_v:-}" ]]; then printf 'export %s=%q\n' "$_v" "${!_v}"; fi
      done
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
