"""End-to-end throughput against a minimal HTTP server, with plain aiohttp and twilio-python as peers.

The simulator validates every request against Twilio's spec, and on two cores that work competes with
whatever is measured; `bench/minimal_server.py` (its own process, uvloop) answers with as little CPU as
a server can. At each latency (0 and 50 ms by default), 256 in flight, in rounds whose order rotates:
- the service: a fresh topic of N unique Avro events, the service as its own process (decode, match,
  render, intent and sent ledger writes, offsets), until it has sent them all;
- plain aiohttp posting the same N requests (the form the service renders, each to its own recipient),
  one ClientSession, TCPConnector(limit=256), 256 workers;
- the official twilio-python async client creating the same N messages (its aiohttp session replaced
  by one with the same pool size: aiohttp's default is 100).
Every rate is measured at the server, from the requests' arrival times (steady: the middle 80%), so
the three are timed by the same clock; the ratios are per round, against that round's aiohttp run, and
the table shows their median. CPU per message: the service process's over the steady window (start-up
excluded), or this process's over its whole run for a peer.

    .venv/bin/python bench/bench_minimal.py [--quick] [--latencies 0,50] [--messages 10000] [--rounds 3]
                                            [--compare-with DIR]

With --compare-with DIR (a `git worktree` of an earlier commit), DIR's service runs in the same rounds:
its rate and CPU per message beside this one's.

Writes bench/results/bench_minimal.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from confluent_kafka.admin import AdminClient
from harness import (
    BOOTSTRAP,
    MAPPING,
    ROOT,
    Events,
    MinimalServer,
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
    twilio_python_client,
    write_result,
)

SERVICE, AIOHTTP, TWILIO_PYTHON = "kafka-twilio (whole pipeline)", "plain aiohttp", "twilio-python async"
COMPARED = "kafka-twilio, compared checkout"


def run_service(
    server: MinimalServer, admin: AdminClient, count: int, in_flight: int, mappings: Path, log: Path,
    root: Path = ROOT,
) -> dict[str, Any]:  # fmt: skip
    run = uuid.uuid4().hex[:6]
    topic = f"bench-min-{run}"
    try:
        create_topics(admin, topic)
        produce(Events(run), topic, count)
        server.call("/_reset")
        env = service_env(server.base, topic, run, mappings, in_flight)
        broker = broker_pid()
        broker_cpu = cpu_seconds(broker) if broker else 0.0
        service = ServiceProcess(env, log, exit_when_idle_s=2.0, root=root)
        code = service.wait(timeout_s=60 + count / 200)
        broker_cpu = cpu_seconds(broker) - broker_cpu if broker else 0.0
        out: dict[str, Any] = {"exit_code": code, **arrival_rate(server.call("/_stats")["arrivals"])}
        # The steady window's CPU alone: start-up (imports, restoring, the group join) excluded.
        steady_cpu = service.cpu_between(out["steady_from"], out["steady_to"])
        out["cpu_us_per_msg"] = round(steady_cpu / max(out["steady_count"], 1) * 1e6, 1)
        out["cpu_us_per_msg_with_startup"] = round(service.cpu_s / count * 1e6, 1)
        # The local broker shares the machine: its CPU per message (fetches, two ledger writes) is part
        # of what the pipeline costs here, and what plain aiohttp does not pay.
        out["broker_cpu_us_per_msg"] = round(broker_cpu / count * 1e6, 1)
        return out
    finally:
        delete_topics(admin, [topic, f"bench-dlq-{run}", f"bench-sent-{run}"], group=f"bench-{run}")


def broker_pid() -> int | None:
    """The local Kafka broker's process (a JVM running kafka.Kafka), when one runs on this machine."""
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"kafka.Kafka" in (proc / "cmdline").read_bytes():
                    return int(proc.name)
            except OSError:
                continue
    return None


def run_peer(
    name: str, server: MinimalServer, params: list[list[tuple[str, str]]], in_flight: int
) -> dict[str, Any]:
    import uvloop

    server.call("/_reset")
    cpu = time.process_time()
    if name == AIOHTTP:
        uvloop.run(raw_http(server.base, [urlencode(p).encode() for p in params], in_flight))
    else:
        uvloop.run(twilio_python(server.base, params, in_flight))
    out: dict[str, Any] = arrival_rate(server.call("/_stats")["arrivals"])
    out["cpu_us_per_msg"] = round((time.process_time() - cpu) / len(params) * 1e6, 1)
    return out


async def twilio_python(base: str, params: list[list[tuple[str, str]]], in_flight: int) -> None:
    client, http = await twilio_python_client(base, in_flight)
    items = iter(params)

    async def worker() -> None:
        for form in items:
            f = dict(form)
            await client.messages.create_async(
                to=f["To"], messaging_service_sid=f["MessagingServiceSid"], body=f["Body"]
            )

    try:
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    finally:
        await http.close()


def run_latency(
    latency_ms: float,
    count: int,
    in_flight: int,
    rounds: int,
    admin: AdminClient,
    mappings: Path,
    log_dir: Path,
    compare_with: Path | None = None,
) -> dict[str, Any]:
    server = MinimalServer(latency_ms)
    base_form = rendered_form(Events("xxxxxx"))
    params = [[(k, phone(count + i) if k == "To" else v) for k, v in base_form] for i in range(count)]
    order = [SERVICE, AIOHTTP, TWILIO_PYTHON] + ([COMPARED] if compare_with is not None else [])
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    try:
        for n in range(rounds):
            for name in order[n % len(order) :] + order[: n % len(order)]:
                if name in (SERVICE, COMPARED):
                    tag = "-compared" if name == COMPARED else ""
                    log = log_dir / f"service-minimal-{latency_ms:g}ms-r{n}{tag}.log"
                    root = compare_with if name == COMPARED and compare_with is not None else ROOT
                    runs[name].append(run_service(server, admin, count, in_flight, mappings, log, root))
                else:
                    runs[name].append(run_peer(name, server, params, in_flight))
            line = "  ".join(f"{k}: {v[-1]['steady_msgs_per_s']:.0f}/s {v[-1]['cpu_us_per_msg']:.0f} us/msg"
                             for k, v in runs.items())  # fmt: skip
            print(f"  round {n + 1}: {line}", flush=True)
    finally:
        server.stop()
    base = runs[AIOHTTP]
    summary = {}
    for name, results in runs.items():
        ratios = [r["steady_msgs_per_s"] / b["steady_msgs_per_s"] for r, b in zip(results, base, strict=True)]
        summary[name] = {
            "steady_msgs_per_s": [r["steady_msgs_per_s"] for r in results],
            "cpu_us_per_msg": [r["cpu_us_per_msg"] for r in results],
            "vs_aiohttp_median": round(statistics.median(ratios), 3),
            "vs_aiohttp_range": [round(min(ratios), 3), round(max(ratios), 3)],
            "accepted": [r["accepted"] for r in results],
            **({"broker_cpu_us_per_msg": [r["broker_cpu_us_per_msg"] for r in results]}
               if "broker_cpu_us_per_msg" in results[0] else {}),
        }  # fmt: skip
    service_vs_twilio = [
        a["steady_msgs_per_s"] / b["steady_msgs_per_s"]
        for a, b in zip(runs[SERVICE], runs[TWILIO_PYTHON], strict=True)
    ]
    summary[SERVICE]["vs_twilio_python_median"] = round(statistics.median(service_vs_twilio), 3)
    if compare_with is not None:
        cpu = [
            a["cpu_us_per_msg"] / b["cpu_us_per_msg"]
            for a, b in zip(runs[SERVICE], runs[COMPARED], strict=True)
        ]
        summary[SERVICE]["cpu_vs_compared_median"] = round(statistics.median(cpu), 3)
        summary[COMPARED]["root"] = str(compare_with)
    return {"latency_ms": latency_ms, "messages": count, "in_flight": in_flight, "clients": summary}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 messages, 2 rounds")
    parser.add_argument("--latencies", default="0,50", help="the server's answer delay, ms")
    parser.add_argument("--messages", type=int, help="messages per run (default 10000; quick 3000)")
    parser.add_argument("--rounds", type=int, help="rounds per latency (default 3; quick 2)")
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument(
        "--compare-with", type=Path, default=os.environ.get("BENCH_COMPARE_WITH") or None,
        help="another checkout (an earlier commit) whose service runs in the same rounds",
    )  # fmt: skip
    args = parser.parse_args()
    count = args.messages or (3_000 if args.quick else 10_000)
    rounds = args.rounds or (2 if args.quick else 3)
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.list_topics(timeout=10)  # fail fast without a broker
    log_dir = Path(tempfile.gettempdir()) / "kafka-twilio-bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mappings = Path(tmp) / "mappings.yaml"
        mappings.write_text(MAPPING)
        for latency in (float(x) for x in args.latencies.split(",")):
            print(
                f"latency {latency:g} ms: {count} messages, {args.in_flight} in flight, {rounds} rounds",
                flush=True,
            )
            rows.append(
                run_latency(
                    latency, count, args.in_flight, rounds, admin, mappings, log_dir, args.compare_with
                )
            )
    print(
        f"\n{'latency':>8} {'client':<30} {'steady msg/s (rounds)':>24} {'vs aiohttp':>11} {'CPU us/msg':>11}"
    )
    for row in rows:
        for name, c in row["clients"].items():
            rates = " ".join(f"{r:.0f}" for r in c["steady_msgs_per_s"])
            print(f"{row['latency_ms']:>6g}ms {name:<30} {rates:>24} {c['vs_aiohttp_median']:>11.2f} "
                  f"{statistics.median(c['cpu_us_per_msg']):>11.0f}")  # fmt: skip
    by_latency = {r["latency_ms"]: r["clients"][SERVICE] for r in rows}
    goals = {}
    if 50 in by_latency:
        goals["at_50ms_ge_0.9_aiohttp"] = by_latency[50]["vs_aiohttp_median"] >= 0.9
        goals["at_50ms_ge_1.0_twilio_python"] = by_latency[50]["vs_twilio_python_median"] >= 1.0
    if 0 in by_latency:
        goals["at_0ms_ge_0.75_aiohttp"] = by_latency[0]["vs_aiohttp_median"] >= 0.75
    wall_s = round(time.monotonic() - started, 1)
    print(f"\ngoals: {goals}  ({wall_s} s)")
    write_result("bench_minimal", {"rows": rows, "goals": goals, "wall_s": wall_s})
    return 0


if __name__ == "__main__":
    sys.exit(main())
