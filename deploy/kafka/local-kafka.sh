#!/usr/bin/env bash
# Run a real single-node Apache Kafka 4.x broker (KRaft, broker + controller in one process) from the
# official Maven Central jars, on loopback, for development, tests, the demo and benchmarks.
#
#   local-kafka.sh up       fetch jars once, format storage once, start, wait until a topic can be created
#   local-kafka.sh down     stop the broker started by `up` (by its pid) and wait until it has exited
#   local-kafka.sh status   exit 0 when our broker is running
#   local-kafka.sh fetch    only fetch the jars into the cache
#
# Settings (environment): KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_STATE_DIR
# (<project>/.local/kafka), KAFKA_LIBS_DIR (<project>/.cache/kafka-libs), KAFKA_HEAP (512m),
# PYTHON (the interpreter with confluent-kafka, used for the readiness check).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${KAFKA_PORT:-9092}"
cport="${KAFKA_CONTROLLER_PORT:-9093}"
state="${KAFKA_STATE_DIR:-$root/.local/kafka}"
libs="${KAFKA_LIBS_DIR:-$root/.cache/kafka-libs}"
heap="${KAFKA_HEAP:-512m}"
python="${PYTHON:-$root/.venv/bin/python}"
pidfile="$state/kafka.pid"
logfile="$state/kafka.log"

# shellcheck source=../lib/pidfile.sh
source "$here/../lib/pidfile.sh"

log() { printf 'local-kafka: %s\n' "$*" >&2; }

fetch() {
  if [ -f "$libs/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "Maven (mvn) is required to fetch the Kafka jars; install Maven and Java 17+"; exit 1; }
  log "fetching Apache Kafka jars into $libs (once)"
  rm -rf "$libs"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs" >&2
  touch "$libs/.complete"
}

write_config() {
  mkdir -p "$state/data"
  cat >"$state/server.properties" <<CFG
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$state/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
CFG
  cat >"$state/log4j2.properties" <<CFG
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $logfile
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
CFG
}

up() {
  if running; then log "already running (pid $(cat "$pidfile")) on 127.0.0.1:$port"; return 0; fi
  command -v java >/dev/null || { log "Java 17+ is required to run the Kafka broker"; exit 1; }
  fetch
  write_config
  if [ ! -f "$state/data/meta.properties" ]; then
    cluster_id="$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    java -cp "$libs/*" -Dlog4j2.configurationFile="$state/log4j2.properties" \
      kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$state/server.properties" >/dev/null
  fi
  log "starting on 127.0.0.1:$port (log: $logfile)"
  nohup java "-Xmx$heap" "-Xms$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$state/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$state/server.properties" >"$state/stdout.log" 2>&1 &
  echo $! >"$pidfile"
  if ! "$python" "$here/ready.py" "127.0.0.1:$port" 120; then
    log "broker did not become ready; last log lines:"
    tail -n 30 "$logfile" "$state/stdout.log" >&2 || true
    down
    exit 1
  fi
  log "ready on 127.0.0.1:$port"
}

down() { stop_by_pidfile broker; }

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) running ;;
  fetch) fetch ;;
  *) echo "usage: $0 up|down|status|fetch" >&2; exit 2 ;;
esac
