# Shared by deploy/kafka/local-kafka.sh and deploy/registry/local-registry.sh (sourced, not run): a
# server we started is known by its pid file and stopped by that pid, never by a process name, so
# nothing else on a shared machine is touched. The caller sets $pidfile and defines log().

# Exit status 0 when the process in $pidfile is alive.
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# Stop the process in $pidfile: SIGTERM, up to 30 s to exit, then SIGKILL. $1 names it in messages.
stop_by_pidfile() {
  local what="$1" pid
  if ! running; then rm -f "$pidfile"; log "not running"; return 0; fi
  pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then log "$what did not stop in 30 s; killing"; kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
  log "stopped"
}
