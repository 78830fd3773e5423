"""Latency benchmark: how long a one-time code takes from its event to Twilio's door.

At steady rates (100 and 1,000 events/s by default), JSON events are produced one by one (no linger),
each carrying its produce time (`properties.ref`, microseconds since the epoch) that the mapping puts in
the message body; the service runs as its own process and sends to `bench/minimal_server.py` (its own
process), which reads the time back at request arrival. Reported: p50, p90, p99, p99.9 and max of
event produced → request arrived, after one second of warm-up; and, in the same run, Kafka's own
produce → consume latency measured by a bare confluent-kafka consumer at the same rate (on a topic of
its own, right after the service's run: beside it, its fetches would load the broker the service
uses), the floor under any consumer; and the service's CPU per message.

    .venv/bin/python bench/bench_latency.py [--quick] [--rates 100,1000] [--seconds 20] [--compare-with DIR]

With --compare-with DIR (a `git worktree` of an earlier commit), DIR's service runs each rate right
after this one's, on the same broker and server.

Writes bench/results/bench_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from harness import (
    BOOTSTRAP,
    DEFAULT_SERVICE_SID,
    ROOT,
    MinimalServer,
    ServiceProcess,
    cpu_seconds,
    create_topics,
    delete_topics,
    service_env,
    write_result,
)

MAPPING = textwrap.dedent(
    f"""
    version: 1
    mappings:
      - id: otp
        trigger: {{event: OTP Requested}}
        channel: sms
        recipient: {{sources: [properties.phone]}}
        sender: {{messaging_service: {DEFAULT_SERVICE_SID}}}
        content: {{body: "Your code is {{{{ properties.code }}}} (ref {{{{ properties.ref }}}})"}}
        policies: {{consent: allow_unknown}}
    """
)
PERCENTILES = (50, 90, 99, 99.9)


def event(run: str, n: int) -> bytes:
    return json.dumps({
        "type": "track", "event": "OTP Requested", "messageId": f"otp-{run}-{n}", "userId": f"user-{n}",
        "timestamp": datetime.now(UTC).isoformat(),
        "properties": {"phone": f"+1415{2_000_000 + n % 8_000_000:07d}", "code": f"{n % 1_000_000:06d}",
                       "ref": str(time.time_ns() // 1000)},
    }).encode()  # fmt: skip


def produce_steady(topic: str, run: str, start: int, count: int, rate: float) -> None:
    """`count` events at `rate` per second, each sent at once (no linger), on schedule."""
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 0})
    began = time.perf_counter()
    for i in range(count):
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        n = start + i
        producer.produce(topic, key=f"user-{n}".encode(), value=event(run, n))
        producer.poll(0)
    producer.flush(30)


class KafkaFloor(threading.Thread):
    """A bare consumer on the same topic: produce -> consume latency, Kafka's part alone."""

    def __init__(self, topic: str, run: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"floor-{run}",
                                  "auto.offset.reset": "latest", "enable.auto.commit": False})  # fmt: skip
        self.consumer.subscribe([topic])
        self.latencies_us: list[int] = []
        self.measuring = False
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            message = self.consumer.poll(0.05)  # one at a time: consume(n) would wait to fill n
            if message is not None and message.error() is None and self.measuring:
                ref = int(json.loads(message.value())["properties"]["ref"])
                self.latencies_us.append(time.time_ns() // 1000 - ref)
        self.consumer.close()


def summary_ms(latencies_us: list[int]) -> dict[str, float]:
    if not latencies_us:
        return {}
    ordered = sorted(latencies_us)
    out = {
        f"p{p:g}": round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] / 1000, 2)
        for p in PERCENTILES
    }
    out["max"] = round(ordered[-1] / 1000, 2)
    out["mean"] = round(statistics.fmean(ordered) / 1000, 2)
    return out


def floor_ms(rate: float, seconds: float, admin: AdminClient) -> dict[str, float]:
    """Kafka's own produce -> consume latency at `rate`, on a topic of its own, with no service running:
    measured beside the service, the bare consumer's fetches would load the broker the service uses
    (on two cores, every process here shares the same CPU)."""
    run = uuid.uuid4().hex[:6]
    topic = f"bench-floor-{run}"
    floor: KafkaFloor | None = None
    try:
        create_topics(admin, topic)
        floor = KafkaFloor(topic, run)
        floor.start()
        produce_steady(topic, run, 0, int(rate), rate)  # warm-up, as for the service
        floor.measuring = True
        produce_steady(topic, run, int(rate), int(rate * seconds), rate)
        time.sleep(0.5)  # the last records' fetch
        return summary_ms(floor.latencies_us)
    finally:
        if floor is not None:
            floor.done.set()
            floor.join(timeout=10)
        delete_topics(admin, [topic], group=f"floor-{run}")


def run_rate(
    rate: float, seconds: float, admin: AdminClient, mappings: Path, log_dir: Path, root: Path = ROOT
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    topic = f"bench-latency-{run}"
    server = MinimalServer(record=True)
    service: ServiceProcess | None = None
    try:
        create_topics(admin, topic)
        env = {**service_env(server.base, topic, run, mappings, 256), "CONSUMER_EVENT_ENCODING": "json"}
        log = log_dir / f"service-latency-{rate:g}{'' if root == ROOT else '-compared'}.log"
        service = ServiceProcess(env, log, exit_when_idle_s=None, root=root)
        warm = int(rate)  # one second of warm-up: connections opened, code paths warm
        produce_steady(topic, run, 0, warm, rate)
        wait_for(server, warm, service)
        server.call("/_reset")
        count = int(rate * seconds)
        cpu_before = cpu_seconds(service.proc.pid)
        produce_steady(topic, run, warm, count, rate)
        wait_for(server, count, service)
        cpu_us = (cpu_seconds(service.proc.pid) - cpu_before) / count * 1e6
        stats = server.call("/_stats")
        return {
            "rate_per_s": rate, "events": count, "event_to_request_ms": summary_ms(stats["latencies_us"]),
            "service_cpu_us_per_msg": round(cpu_us, 1),
        }  # fmt: skip
    finally:
        if service is not None and service.proc.poll() is None:
            service.terminate()
        server.stop()
        delete_topics(admin, [topic, f"bench-dlq-{run}", f"bench-sent-{run}"], group=f"bench-{run}")


def wait_for(server: MinimalServer, count: int, service: ServiceProcess, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while server.call("/_stats")["count"] < count:
        if service.proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the service did not send {count} messages; see {service.log.name}")
        time.sleep(0.2)


def p99_under(rows: list[dict[str, Any]], rate: float, ms: float) -> bool:
    return any(r["rate_per_s"] == rate and r["event_to_request_ms"]["p99"] < ms for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s per rate")
    parser.add_argument("--rates", default="100,1000", help="events per second")
    parser.add_argument("--seconds", type=float, help="measured seconds per rate (default 20; quick 5)")
    parser.add_argument(
        "--compare-with", type=Path, default=os.environ.get("BENCH_COMPARE_WITH") or None,
        help="another checkout (an earlier commit) whose service runs each rate after this one's",
    )  # fmt: skip
    args = parser.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.list_topics(timeout=10)
    log_dir = Path(tempfile.gettempdir()) / "kafka-twilio-bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mappings = Path(tmp) / "mappings.yaml"
        mappings.write_text(MAPPING)
        for rate in (float(r) for r in args.rates.split(",")):
            print(f"rate {rate:g}/s for {seconds:g} s ...", flush=True)
            rows.append(run_rate(rate, seconds, admin, mappings, log_dir))
            rows[-1]["kafka_floor_ms"] = floor_ms(rate, seconds, admin)
            if args.compare_with is not None:
                other = run_rate(rate, seconds, admin, mappings, log_dir, root=args.compare_with)
                rows[-1]["compared"] = {"root": str(args.compare_with), **other}
            r = rows[-1]
            print(f"  event -> request {r['event_to_request_ms']}\n  kafka alone      {r['kafka_floor_ms']}\n"
                  f"  service CPU {r['service_cpu_us_per_msg']} us/msg", flush=True)  # fmt: skip
            if "compared" in r:
                c = r["compared"]
                print(f"  compared: event -> request {c['event_to_request_ms']}", flush=True)
                print(f"  compared: service CPU {c['service_cpu_us_per_msg']} us/msg", flush=True)
    goals = {
        "p99_under_15ms_at_100": p99_under(rows, 100, 15),
        "p99_under_25ms_at_1000": p99_under(rows, 1000, 25),
    }
    print(f"goals: {goals}")
    write_result("bench_latency", {"seconds_per_rate": seconds, "rates": rows, "goals": goals,
                                   "wall_s": round(time.monotonic() - started, 1)})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
