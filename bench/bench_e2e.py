"""End-to-end benchmark: Kafka events -> messages accepted by the Twilio simulator, per second.

For each simulated latency (0, 50, 200 ms), side by side in one run against the same simulator
process (`kafka-twilio simulator --uvloop --validation schema`):
- raw HTTP ceiling: plain aiohttp (uvloop) posting the very form the service sends, to unique
  recipients, with the same number of requests in flight (CONSUMER_MAX_IN_FLIGHT, default 256);
- end to end: `python -m consumer.cli run --exit-when-idle 2` as its own process, consuming a fresh
  topic of Avro (single-object) events: decode, match, render, gates, de-duplication ledger, send,
  commit.
Throughput is what the simulator accepted (201) per second from its first to its last accepted
message (`received_at` of /_sim/messages), so start-up and the idle tail are not counted.

Then memory: the service's peak RSS (VmHWM) after running a bounded time against a backlog of 1M
records, side by side with a 100k backlog: with back-pressure (CONSUMER_MAX_BUFFERED) and librdkafka's
queued.max.messages.kbytes the peak must not grow with the backlog.

    .venv/bin/python bench/bench_e2e.py [--quick] [--latencies 0,50,200] [--messages N] [--compare-with DIR]

`--compare-with DIR` (or BENCH_COMPARE_WITH=DIR make bench) also runs the service of another checkout
(an earlier commit: `git worktree add DIR REV`) against the same simulator right after this one, and
reports this one's throughput as a ratio of it.

Kafka: KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092. Topics are created per run and deleted afterwards.
Writes bench/results/bench_e2e.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient
from harness import (
    BOOTSTRAP,
    MAPPING,
    ROOT,
    Events,
    ServiceProcess,
    arrival_rate,
    cpu_seconds,
    create_topics,
    delete_topics,
    phone,
    produce,
    raw_http,
    rendered_form,
    service_env,
)

# -- the simulator ------------------------------------------------------------------------------------


class Simulator:
    def __init__(self, port: int, latency_ms: float) -> None:
        cmd = [sys.executable, "-m", "consumer.cli", "simulator", "--port", str(port),
               "--latency-ms", str(latency_ms), "--validation", "schema", "--uvloop"]  # fmt: skip
        self.base = f"http://127.0.0.1:{port}"
        self.latency_ms = latency_ms
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if not self.proc.stdout.readline():
            raise SystemExit(f"simulator did not start: {' '.join(cmd)}")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=60) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        request = urllib.request.Request(self.base + "/_sim/reset", data=b"{}", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def accepted_rate(self) -> dict[str, float]:
        """Accepted messages per second from the first to the last `received_at`, and steady."""
        messages = self.get("/_sim/messages")
        rate = arrival_rate([datetime.fromisoformat(m["received_at"]).timestamp() for m in messages])
        return {k: rate[k] for k in ("accepted", "seconds", "msgs_per_s", "steady_msgs_per_s")}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# -- runs ---------------------------------------------------------------------------------------------


def run_service(
    sim: Simulator,
    admin: AdminClient,
    events: Events,
    count: int,
    in_flight: int,
    mappings: Path,
    log: Path,
    root: Path = ROOT,
) -> dict[str, Any]:
    """The service of the checkout at `root`, as its own process, on a fresh topic of `count` events."""
    run = uuid.uuid4().hex[:6]
    topic = f"bench-e2e-{run}"
    try:
        create_topics(admin, topic)
        produce(events, topic, count)
        sim.reset()
        sim_cpu = cpu_seconds(sim.proc.pid)
        env = service_env(sim.base, topic, run, mappings, in_flight)
        service = ServiceProcess(env, log, exit_when_idle_s=2.0, root=root)
        code = service.wait(timeout_s=60 + count / 200)
        e2e: dict[str, Any] = {"exit_code": code, **sim.accepted_rate()}
        e2e["simulator_cpu_us_per_msg"] = round((cpu_seconds(sim.proc.pid) - sim_cpu) / count * 1e6, 1)
        e2e["service_cpu_us_per_msg"] = round(service.cpu_s / count * 1e6, 1)  # includes start-up
        e2e["service_peak_rss_mb"] = round(service.mem.get("VmHWM", 0) / 1024, 1)
        if e2e["accepted"] != count:
            print(f"  WARNING: {e2e['accepted']} of {count} accepted; see {service.log.name}")
        return e2e
    finally:
        delete_topics(admin, [topic, f"bench-dlq-{run}", f"bench-sent-{run}"], group=f"bench-{run}")


def compare(
    sim: Simulator, admin: AdminClient, events: Events, count: int, in_flight: int, mappings: Path,
    log_dir: Path, other_root: Path, rounds: int, first: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """This checkout's service and `other_root`'s, alternating for `rounds` rounds on one simulator;
    the median of the per-round ratios (the machine is noisy: a ratio within a round moves less)."""
    ours, theirs = [first], []
    for n in range(rounds):
        if n:
            log = log_dir / f"service-{sim.latency_ms:g}ms-r{n}.log"
            ours.append(run_service(sim, admin, events, count, in_flight, mappings, log))
        log = log_dir / f"service-{sim.latency_ms:g}ms-compared-r{n}.log"
        theirs.append(run_service(sim, admin, events, count, in_flight, mappings, log, root=other_root))
        a, b = ours[-1], theirs[-1]
        print(f"    round {n + 1}: this {a['msgs_per_s']:.0f}/s {a['service_cpu_us_per_msg']:.0f} us/msg, "
              f"compared {b['msgs_per_s']:.0f}/s {b['service_cpu_us_per_msg']:.0f} us/msg")  # fmt: skip
    rate = [a["msgs_per_s"] / b["msgs_per_s"] for a, b in zip(ours, theirs, strict=True)]
    cpu = [
        a["service_cpu_us_per_msg"] / b["service_cpu_us_per_msg"] for a, b in zip(ours, theirs, strict=True)
    ]
    return {
        "compared": {"root": str(other_root), "msgs_per_s": [round(b["msgs_per_s"]) for b in theirs],
                     "cpu_us_per_msg": [b["service_cpu_us_per_msg"] for b in theirs]},
        "this": {"msgs_per_s": [round(a["msgs_per_s"]) for a in ours],
                 "cpu_us_per_msg": [a["service_cpu_us_per_msg"] for a in ours]},
        "vs_compared": round(statistics.median(rate), 3),
        "cpu_vs_compared": round(statistics.median(cpu), 3),
    }  # fmt: skip


def run_latency(
    latency_ms: float,
    count: int,
    in_flight: int,
    admin: AdminClient,
    mappings: Path,
    log_dir: Path,
    compare_with: Path | None = None,
    rounds: int = 1,
) -> dict[str, Any]:
    from urllib.parse import urlencode

    import uvloop

    run = uuid.uuid4().hex[:6]
    events = Events(run)
    sim = Simulator(18_200 + int(latency_ms), latency_ms)
    row: dict[str, Any] = {"latency_ms": latency_ms, "messages": count, "in_flight": in_flight}
    try:
        # Raw ceiling first, on the same simulator: the same form, each to a unique recipient.
        base_form = rendered_form(events)
        forms = [
            urlencode([(k, phone(count + i) if k == "To" else v) for k, v in base_form]).encode()
            for i in range(count)
        ]
        sim_cpu = cpu_seconds(sim.proc.pid)
        raw = uvloop.run(raw_http(sim.base, forms, in_flight))
        raw.update(sim.accepted_rate())
        raw["simulator_cpu_us_per_msg"] = round((cpu_seconds(sim.proc.pid) - sim_cpu) / count * 1e6, 1)
        # Then the service, as its own process (and the other checkout's, in the same run).
        log = log_dir / f"service-{int(latency_ms)}ms.log"
        e2e = run_service(sim, admin, events, count, in_flight, mappings, log)
        row.update(raw=raw, e2e=e2e, ratio=round(e2e["msgs_per_s"] / raw["msgs_per_s"], 3))
        if compare_with is not None:
            row.update(
                compare(sim, admin, events, count, in_flight, mappings, log_dir, compare_with, rounds, e2e)
            )
    finally:
        sim.stop()
    return row


def run_memory(
    backlog: int, seconds: float, in_flight: int, admin: AdminClient, mappings: Path, log_dir: Path
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    events = Events(run)
    topic = f"bench-rss-{run}"
    sim = Simulator(18_300, 50)
    try:
        create_topics(admin, topic)
        produce_s = produce(events, topic, backlog)
        env = service_env(sim.base, topic, run, mappings, in_flight)
        service = ServiceProcess(env, log_dir / f"service-rss-{backlog}.log", exit_when_idle_s=None)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and service.proc.poll() is None:
            service.sample()
            time.sleep(1.0)
        hwm = service.mem.get("VmHWM", 0)
        code = service.terminate()
        accepted = sim.get("/_sim/stats")["accepted"]
        samples = service.rss_samples
        return {
            "backlog": backlog, "run_s": seconds, "produce_s": round(produce_s, 1), "exit_code": code,
            "accepted": accepted, "peak_rss_mb": round(hwm / 1024, 1),
            "rss_mb_at_25_50_75_100pct": [round(samples[int(f * (len(samples) - 1))] / 1024, 1)
                                          for f in (0.25, 0.5, 0.75, 1.0)] if samples else [],
        }  # fmt: skip
    finally:
        sim.stop()
        delete_topics(admin, [topic, f"bench-dlq-{run}", f"bench-sent-{run}"], group=f"bench-{run}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small volumes (about a minute)")
    parser.add_argument("--latencies", default="0,50,200", help="simulated latencies, ms")
    parser.add_argument("--messages", type=int, help="events per latency (default 20000; quick 3000)")
    parser.add_argument("--in-flight", type=int, default=int(os.environ.get("CONSUMER_MAX_IN_FLIGHT", "256")))
    parser.add_argument("--backlogs", help="backlogs (default 100000,1000000; quick 20000,100000)")
    parser.add_argument("--rss-seconds", type=float, help="memory runs' duration (default 45; quick 15)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--compare-with",
        type=Path,
        default=os.environ.get("BENCH_COMPARE_WITH") or None,
        help="another checkout (an earlier commit) whose service runs in the same run ($BENCH_COMPARE_WITH)",
    )
    parser.add_argument(
        "--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "1")),
        help="with --compare-with: rounds per latency, alternating the two services ($BENCH_ROUNDS)",
    )  # fmt: skip
    args = parser.parse_args()
    count = args.messages or (3_000 if args.quick else 20_000)
    default_backlogs = "20000,100000" if args.quick else "100000,1000000"
    backlogs = [int(b) for b in (args.backlogs or default_backlogs).split(",")]
    rss_seconds = args.rss_seconds or (15.0 if args.quick else 45.0)
    latencies = [float(x) for x in args.latencies.split(",")]

    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.list_topics(timeout=10)  # fail fast without a broker
    log_dir = Path(tempfile.gettempdir()) / "kafka-twilio-bench"  # service logs, for a failed run
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        mappings = Path(tmp) / "mappings.yaml"
        mappings.write_text(MAPPING)
        rows = []
        for latency in latencies:
            print(f"latency {latency:g} ms: {count} events, {args.in_flight} in flight ...", flush=True)
            row = run_latency(
                latency, count, args.in_flight, admin, mappings, log_dir, args.compare_with, args.rounds
            )
            compared = (
                f"  vs compared {row['vs_compared']:.2f}, CPU {row['cpu_vs_compared']:.2f} (medians)"
                if "compared" in row
                else ""
            )
            print(f"  raw {row['raw']['msgs_per_s']:.0f}/s  e2e {row['e2e']['msgs_per_s']:.0f}/s  "
                  f"ratio {row['ratio']:.2f}{compared}", flush=True)  # fmt: skip
            rows.append(row)
        memory = []
        if not args.skip_memory:
            for backlog in backlogs:
                print(f"memory: backlog {backlog}, {rss_seconds:g} s ...", flush=True)
                memory.append(run_memory(backlog, rss_seconds, args.in_flight, admin, mappings, log_dir))
                print(f"  peak RSS {memory[-1]['peak_rss_mb']} MB", flush=True)

    goal_50 = next((r for r in rows if r["latency_ms"] == 50), None)
    result = {
        "bench": "bench_e2e",
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "in_flight": args.in_flight,
        "messages_per_latency": count,
        "throughput": rows,
        "memory": memory,
        "goals": {
            "msgs_per_s_at_50ms_ge_2000": goal_50 is not None and goal_50["e2e"]["msgs_per_s"] >= 2000,
            "ratio_ge_0.8_everywhere": all(r["ratio"] >= 0.8 for r in rows),
        },
        "wall_s": round(time.monotonic() - started, 1),
    }
    print(f"\n{'latency':>8} {'raw aiohttp/s':>14} {'e2e msgs/s':>11} {'e2e/raw':>8} {'steady e2e':>11} "
          f"{'svc CPU us/msg':>15} {'svc peak RSS':>13}")  # fmt: skip
    for r in rows:
        e = r["e2e"]
        print(f"{r['latency_ms']:>6g}ms {r['raw']['msgs_per_s']:>14.0f} {e['msgs_per_s']:>11.0f} "
              f"{r['ratio']:>8.2f} {e['steady_msgs_per_s']:>11.0f} {e['service_cpu_us_per_msg']:>15.0f} "
              f"{e['service_peak_rss_mb']:>10.0f} MB")  # fmt: skip
    if memory:
        print(f"\n{'backlog':>9} {'run s':>6} {'accepted':>9} {'peak RSS (VmHWM)':>17} "
              f"{'RSS over the run (MB)':>24}")  # fmt: skip
        for m in memory:
            print(f"{m['backlog']:>9} {m['run_s']:>6g} {m['accepted']:>9} {m['peak_rss_mb']:>14} MB "
                  f"{' '.join(str(x) for x in m['rss_mb_at_25_50_75_100pct']):>24}")  # fmt: skip
    print(f"\ngoals: {result['goals']}  ({result['wall_s']} s)")
    out = ROOT / "bench" / "results" / "bench_e2e.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
