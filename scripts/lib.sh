# Shared by scripts/test.sh and scripts/demo.sh (sourced, not run). Set LOG and SCRIPT first.

say() { printf '%s: %s\n' "$SCRIPT" "$*"; }

# run DESCRIPTION CMD... : output to the log; on failure show the log's tail and stop.
run() {
  local what=$1; shift
  printf '\n=== %s: %s\n' "$what" "$*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    say "FAILED: $what (last lines of $LOG follow)" >&2
    tail -n 40 "$LOG" >&2
    exit 1
  fi
}
