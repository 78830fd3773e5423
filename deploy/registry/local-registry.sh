#!/usr/bin/env bash
# Run a real Confluent-compatible Schema Registry on loopback for development, tests and the demo:
# Apicurio Registry 3.3 (Apache 2.0), the prebuilt Quarkus app that Maven Central ships as the `all`
# classifier of io.apicurio:apicurio-registry-app, with in-memory storage. Its Confluent API is at
# http://127.0.0.1:PORT/apis/ccompat/v7 (what KAFKA_SCHEMA_REGISTRY_URL points at).
#
#   local-registry.sh up       fetch the app once, start it, wait until it answers, set BACKWARD compatibility
#   local-registry.sh down     stop the registry started by `up` (by its pid) and wait until it has exited
#   local-registry.sh status   exit 0 when our registry is running
#   local-registry.sh fetch    only fetch the app into the cache
#   local-registry.sh url      print the URL clients use
#
# Settings (environment): REGISTRY_PORT (18081), REGISTRY_MANAGEMENT_PORT (18082), REGISTRY_STATE_DIR
# (<project>/.local/registry), REGISTRY_APP_DIR (<project>/.cache/registry), REGISTRY_HEAP (384m),
# PYTHON (python3; any Python 3 runs the readiness check), REGISTRY_JAVA (a java of version 21+; found
# on PATH or under /usr/lib/jvm otherwise).
#
# Why 3.3 and Java 21+: 3.0.9, the last release on Java 17, answers 500 (a StackOverflowError in its
# Avro canonicalizer, Apicurio issue 7023) when a schema holds a map of itself, as our JSON-value union
# does, so it cannot register schemas/segment_event.avsc at all.
set -euo pipefail

version="3.3.3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${REGISTRY_PORT:-18081}"
mport="${REGISTRY_MANAGEMENT_PORT:-18082}"
state="${REGISTRY_STATE_DIR:-$root/.local/registry}"
app="${REGISTRY_APP_DIR:-$root/.cache/registry}/apicurio-registry-app-$version"
heap="${REGISTRY_HEAP:-384m}"
python="${PYTHON:-python3}"
pidfile="$state/registry.pid"
logfile="$state/registry.log"
url="http://127.0.0.1:$port/apis/ccompat/v7"

# shellcheck source=../lib/pidfile.sh
source "$here/../lib/pidfile.sh"

log() { printf 'local-registry: %s\n' "$*" >&2; }

fetch() {
  if [ -f "$app/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "Maven (mvn) is required to fetch Apicurio Registry; install Maven"; exit 1; }
  log "fetching Apicurio Registry $version into $app (once, about 170 MB)"
  rm -rf "$app"
  mkdir -p "$app"
  # Run from the app folder: Maven without a project writes a stray `${project.basedir}` folder into
  # the working directory.
  if ! (cd "$app" && mvn -q -B dependency:unpack \
    "-Dartifact=io.apicurio:apicurio-registry-app:$version:tar.gz:all" -DoutputDirectory="$app" \
    >"$app.mvn.log" 2>&1); then
    cat "$app.mvn.log" >&2
    exit 1
  fi
  rm -f "$app.mvn.log"
  rm -rf "$app/\${project.basedir}"
  [ -f "$app/quarkus-run.jar" ] || { log "the unpacked app has no quarkus-run.jar"; exit 1; }
  touch "$app/.complete"
}

# The major version a java binary reports ("17", "25"), or nothing.
java_major() { "$1" -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print v[1]; exit}'; }

# A java of version 21 or newer: REGISTRY_JAVA, else `java` on PATH, else the newest under /usr/lib/jvm.
find_java() {
  if [ -n "${REGISTRY_JAVA:-}" ]; then echo "$REGISTRY_JAVA"; return 0; fi
  local best="" best_major=0 candidate major
  for candidate in "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
    [ -x "$candidate" ] || continue
    major="$(java_major "$candidate")"
    if [ "${major:-0}" -gt "$best_major" ]; then best="$candidate"; best_major="$major"; fi
  done
  if [ "$best_major" -lt 21 ]; then
    log "Apicurio Registry $version needs Java 21 or newer (found ${best_major:-none}); install one or set REGISTRY_JAVA"
    exit 1
  fi
  echo "$best"
}

# GET /subjects answers 200 once the app (storage included) is up; then set Confluent's default
# compatibility, BACKWARD (Apicurio's is NONE), so the local registry refuses what a user's would.
wait_ready() {
  "$python" - "$url" "$1" <<'PY'
import json, sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url + "/subjects", timeout=2) as answer:
            if answer.status == 200:
                break
    except OSError:
        pass
    time.sleep(0.25)
else:
    sys.exit(1)
body = json.dumps({"compatibility": "BACKWARD"}).encode()
request = urllib.request.Request(url + "/config", data=body, method="PUT",
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
with urllib.request.urlopen(request, timeout=10) as answer:
    sys.exit(0 if answer.status == 200 else 1)
PY
}

up() {
  if running; then log "already running (pid $(cat "$pidfile")) at $url"; return 0; fi
  local java
  java="$(find_java)"
  fetch
  mkdir -p "$state"
  : >"$logfile"
  log "starting Apicurio Registry $version at $url (log: $logfile)"
  # In-memory storage: the registry starts empty every time, as tests want. Quarkus' own log goes to
  # the file; the management port (health, metrics) is kept on loopback too.
  nohup "$java" "-Xmx$heap" -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dquarkus.http.host=127.0.0.1 "-Dquarkus.http.port=$port" \
    -Dquarkus.management.host=127.0.0.1 "-Dquarkus.management.port=$mport" \
    -Dquarkus.log.console.enable=false -Dquarkus.log.file.enable=true "-Dquarkus.log.file.path=$logfile" \
    -jar "$app/quarkus-run.jar" >"$state/stdout.log" 2>&1 &
  echo $! >"$pidfile"
  if ! wait_ready 120; then
    log "registry did not become ready; last log lines:"
    tail -n 30 "$logfile" "$state/stdout.log" >&2 || true
    down
    exit 1
  fi
  log "ready at $url"
}

down() { stop_by_pidfile registry; }

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) running ;;
  fetch) fetch ;;
  url) echo "$url" ;;
  *) echo "usage: $0 up|down|status|fetch|url" >&2; exit 2 ;;
esac
